"""Step ``init``: organelle instances, object properties, meshes and organelle-to-supervoxel overlap."""

from syngraph.steps.init.run import run_init
from syngraph.steps.init.validate import InitInputError

__all__ = ["InitInputError", "run_init"]
