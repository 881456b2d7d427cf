"""Parameters of the demo tissue (the one place their defaults live; all lengths in nm).

The defaults aim at cortical neuropil at EM resolution. ``*_frac`` are target volume fractions
of each kind of cable (the number of cables that enter the volume is derived from them, so the
tissue has the same density at every volume size); ``*_r_nm`` are radius ranges (uniform).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DEMO_SEED = 31415  # the default seed of `syngraph synth`, `syngraph demo` and synthesize(); never tuned on

Range = tuple[float, float]


@dataclass(frozen=True)
class SynthParams:
    # density (volume fractions of the kinds of cable entering the volume)
    spiny_dendrite_frac: float = 0.16
    smooth_dendrite_frac: float = 0.06
    excitatory_axon_frac: float = 0.12
    inhibitory_axon_frac: float = 0.05
    modulatory_axon_frac: float = 0.012
    myelinated_axon_frac: float = 0.05
    astrocyte_frac: float = 0.06
    fragments_per_1000um2: float = 60.0  # tiny border stubs per 1000 um^2 of volume surface
    somata_per_1000um3: float = 2.0
    expansion_nm: float = 25.0  # every cell owns the voxels within this distance of its surface
    # somata
    soma_r_nm: Range = (2000.0, 3500.0)
    soma_sv_pieces: tuple[int, int] = (3, 6)
    primary_dendrites: tuple[int, int] = (4, 7)
    # dendrites
    spiny_dendrite_r_nm: Range = (350.0, 650.0)
    smooth_dendrite_r_nm: Range = (300.0, 550.0)
    soma_dendrite_r_nm: Range = (700.0, 900.0)
    dendrite_r_min_nm: float = 280.0
    dendrite_taper_per_um: float = 0.03  # fractional radius loss per um of cable
    dendrite_branch_per_um: float = 0.08
    # spines (excitatory dendrites)
    spine_neck_r_nm: Range = (50.0, 90.0)
    spine_neck_len_nm: Range = (300.0, 1200.0)
    spine_head_r_nm: Range = (200.0, 350.0)
    free_spines_per_um: float = 0.5
    # axons
    excitatory_axon_r_nm: Range = (55.0, 100.0)
    inhibitory_axon_r_nm: Range = (70.0, 140.0)
    modulatory_axon_r_nm: Range = (45.0, 65.0)
    myelinated_axon_r_nm: Range = (200.0, 320.0)
    myelin_thickness_nm: Range = (120.0, 220.0)
    axon_branch_per_um: float = 0.05
    bouton_r_nm: Range = (230.0, 400.0)
    varicosity_r_nm: Range = (200.0, 280.0)
    min_bouton_spacing_nm: float = 1200.0
    # synapses
    synapses_per_um3: float = 0.9  # target density of synapse sites (cortex: ~1 per um^3)
    spine_synapse_frac: float = 0.85  # of the sites on spiny dendrites
    contact_overlap_nm: Range = (60.0, 120.0)
    sj_half_thickness_nm: Range = (30.0, 40.0)
    terminal_branch_len_nm: Range = (400.0, 1600.0)
    # astrocytes
    astrocyte_r_nm: Range = (55.0, 130.0)
    astrocyte_branch_per_um: float = 1.5
    # astrocytic lamellae: an astrocyte owns the free extracellular space whose nearest cell surface
    # is its own, up to this distance (thin sheets that fill the gaps between neurites)
    astrocyte_fill_nm: float = 150.0
    # "nearest": the free space whose nearest cell surface is the astrocyte's (Euclidean; default);
    # "geodesic": all free space within astrocyte_fill_nm of an astrocyte along paths through free
    # space, so lamellae reach into the gaps between neurites and touch them
    astrocyte_fill: str = "nearest"
    # bends: every growth step of a cable lays this many pieces of its segment length whose
    # direction turns gradually (radius of curvature substeps * segment / turn angle); 1: straight
    # segments meeting at kinks (the demo's tissue)
    bend_substeps: int = 1
    # supervoxels
    sv_stretch_nm: Range = (1000.0, 3000.0)
    spine_own_sv_p: float = 0.5
    # organelles
    mito_r_nm: Range = (100.0, 200.0)
    mito_len_nm: Range = (600.0, 1800.0)
    mito_gap_nm: Range = (200.0, 900.0)
    soma_mito_fill: float = 0.05
    # probability maps
    edge_width_nm: float = 12.0  # logistic width of object edges in the maps
    wobble_nm: float = 12.0  # amplitude of smooth boundary noise
    white_noise: float = 0.035  # std of per-voxel noise (fraction of full scale)
    speckle_per_um3: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.astrocyte_fill not in ("nearest", "geodesic"):
            raise ValueError(f'astrocyte_fill must be "nearest" or "geodesic", got {self.astrocyte_fill!r}')
        if int(self.bend_substeps) != self.bend_substeps or self.bend_substeps < 1:
            raise ValueError(f"bend_substeps must be an integer >= 1, got {self.bend_substeps!r}")

    def speckle(self) -> dict[str, float]:
        return self.speckle_per_um3 or {"mi": 3.0, "vc": 3.0, "sj": 2.0}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
