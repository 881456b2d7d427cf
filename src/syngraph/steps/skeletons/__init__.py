"""Step ``skeletons``: TEASAR skeletons per cell (kimimaro), joined exactly across blocks, with myelin.

Modules: :mod:`.teasar` (one block), :mod:`.join` (exact joins), :mod:`.postprocess` (thinning,
dust, ticks), :mod:`.myelin` (per-node myelin, :func:`path_window_vote`), :mod:`.run` (the step).
"""

from syngraph.steps.skeletons.myelin import path_window_vote
from syngraph.steps.skeletons.run import run_skeletons

__all__ = ["path_window_vote", "run_skeletons"]
