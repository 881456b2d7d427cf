"""Step ``compartments``: soma, dendritic shaft, spine neck/head, axon and boutons per skeleton node.

Modules: :mod:`.features` (node features), :mod:`.smooth` (the reference's smoothing),
:mod:`.train` (fitting from labelled points or demo truth), :mod:`.run` (the step).
"""

from syngraph.steps.compartments.run import run_compartments

__all__ = ["run_compartments"]
