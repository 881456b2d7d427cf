"""Learned models shipped with syngraph, stored as plain arrays (never pickles)."""
