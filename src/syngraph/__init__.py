"""syngraph: from a dense volume-EM segmentation to a synaptic wiring diagram."""

__version__ = "0.1.0"

from syngraph.project import Project, open  # noqa: E402,A004

__all__ = ["Project", "__version__", "open"]
