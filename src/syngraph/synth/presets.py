"""Named tissue variants of the demo generator (``syngraph synth --preset NAME``, docs/synth.md).

A preset is a voxel size, a scaling of the neurites (radius; the number of cables follows from the
volume fractions, so thinner neurites are also denser), an astrocyte fraction, map noise and blur,
and whether the organelle maps (``mi``, ``vc``) are inputs of the project. The truth is always
complete: a preset without organelle maps still renders them into ``volumes.zarr`` (and
``gt/organelles.parquet``) but leaves them out of ``syngraph.toml``'s layers, as on data that has
only a segmentation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from syngraph.synth.params import SynthParams

# lengths scaled with the neurites: radii, myelin, contacts, mitochondria
_SCALED = ("dendrite_r_min_nm", "myelin_thickness_nm", "contact_overlap_nm", "mito_len_nm", "spine_neck_len_nm")


@dataclass(frozen=True)
class Preset:
    description: str
    voxel_size_nm: tuple[float, float, float] = (10.0, 10.0, 25.0)
    radius_scale: float = 1.0  # every cable radius (and the lengths in _SCALED)
    astrocyte_frac: float | None = None  # None: the default's
    white_noise: float | None = None  # map noise (fraction of full scale); None: the default's
    edge_width_nm: float | None = None  # map blur (logistic edge width); None: the default's
    organelle_maps: bool = True  # mi and vc are project layers
    bend_substeps: int = 1  # SynthParams.bend_substeps: > 1 bends cables smoothly

    def params(self, base: SynthParams | None = None) -> SynthParams:
        """``base`` (default :class:`SynthParams`) changed as this preset says."""
        p = base or SynthParams()
        upd: dict = {}
        if self.radius_scale != 1.0:
            s = self.radius_scale
            for f in dataclasses.fields(p):
                v = getattr(p, f.name)
                if f.name.endswith("_r_nm") or f.name in _SCALED:
                    upd[f.name] = tuple(x * s for x in v) if isinstance(v, tuple) else v * s
        if self.bend_substeps != 1:
            upd["bend_substeps"] = self.bend_substeps
        for name in ("astrocyte_frac", "white_noise", "edge_width_nm"):
            if getattr(self, name) is not None:
                upd[name] = getattr(self, name)
        return dataclasses.replace(p, **upd)


PRESETS: dict[str, Preset] = {
    "default": Preset("the demo tissue: mouse cortex at 10x10x25 nm"),
    "mouse-sstem": Preset("mouse cortex, serial-section TEM at 4x4x40 nm", (4.0, 4.0, 40.0),
                          white_noise=0.05, edge_width_nm=16.0),
    "mouse-coarse": Preset("mouse cortex at 32x32x40 nm (a coarse overview)", (32.0, 32.0, 40.0)),
    "fly-fib": Preset("fly neuropil, isotropic FIB-SEM at 8 nm: neurites half as thick (and denser), "
                      "few glia", (8.0, 8.0, 8.0), radius_scale=0.5, astrocyte_frac=0.01,
                      white_noise=0.05, edge_width_nm=10.0),
    "fly-fib-10nm": Preset("as fly-fib at 10 nm isotropic", (10.0, 10.0, 10.0), radius_scale=0.5,
                           astrocyte_frac=0.01, white_noise=0.05),
    "no-astrocytes": Preset("the demo tissue without astrocytes", astrocyte_frac=0.0),
    "astrocyte-rich": Preset("the demo tissue with three times the astrocytes", astrocyte_frac=0.18),
    "labels-only": Preset("the demo tissue without organelle maps (mi, vc are not project layers)",
                          organelle_maps=False),
    "smooth-bends": Preset("the demo tissue with cables that bend smoothly (radius of curvature >= 4 "
                           "segments / turn angle) instead of kinking between straight segments",
                           bend_substeps=4),
    "noisy": Preset("the demo tissue with noisier, blurrier maps", white_noise=0.12, edge_width_nm=30.0),
}


def get_preset(name: str) -> Preset:
    from syngraph.synth.generate import SynthError

    if name not in PRESETS:
        raise SynthError(f"--preset {name!r}: unknown; presets are {', '.join(PRESETS)}")
    return PRESETS[name]
