"""Exports in the formats labs already use (Parquet, CAVE, neuPrint, SyConn's conn_mat.csv)."""
