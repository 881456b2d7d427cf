"""Demo tissue with full ground truth: ``synthesize(out_dir, shape_xyz, seed)``.

See docs/synth.md for what is modelled, the layers and tables written, and the parameters.
"""

from syngraph.synth.generate import SynthError, SynthReport, synthesize
from syngraph.synth.params import SynthParams
from syngraph.synth.tissue import CELL_TYPES, Tissue, build_tissue

__all__ = ["CELL_TYPES", "SynthError", "SynthParams", "SynthReport", "Tissue", "build_tissue", "synthesize"]
