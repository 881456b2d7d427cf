"""What a step costs on a volume: the per-voxel costs ``bench/pipeline.py`` measured, and the estimate
``syngraph plan`` prints from them.

``costs.json`` (next to this module, written by ``bench/pipeline.py --write-costs``) holds, per step,
a straight line through the benchmark's smallest and largest dataset: CPU seconds and peak memory
(MB, all processes) as ``fixed + per_mvx * MVx``, plus where and how it was measured. ``MVx`` counts
the voxels the step's work scales with (its ``unit``, :data:`UNITS`): full-resolution voxels, except
skeletons, which trace a volume downsampled to the skeleton resolution (``skeleton_mvx``: the
same volume at 16 nm and at 8 nm has 4x fewer full-resolution voxels but as many skeleton voxels),
and init, which segments and meshes every organelle layer besides the supervoxels (``layer_mvx``:
MVx times the layers it reads; the demo has three organelle maps, pinky40 none).
A step's expected wall time on ``workers`` processes is its fixed part (process start, reductions)
plus its per-voxel part spread over ``min(workers, blocks)`` (steps that do not work in blocks get one).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COSTS_PATH = Path(__file__).with_name("costs.json")
#: what each step's work scales with (default ``"mvx"``: full-resolution MVx)
UNITS = {"skeletons": "skeleton_mvx", "init": "layer_mvx"}


def unit_of(step: str) -> str:
    return UNITS.get(step, "mvx")


def work_units(mvx: float, skeleton_downsample: tuple[int, int, int], init_layers: int = 1) -> dict[str, float]:
    """The volume in each unit of :data:`UNITS`: full-resolution MVx, MVx at the skeleton
    resolution (``skeleton_downsample``: ``SkeletonParams.downsample_for`` the voxel size) and MVx
    times the layers init reads (``init_layers``: sv and the organelle layers).

    >>> work_units(64.0, (2, 2, 1), init_layers=4)
    {'mvx': 64.0, 'skeleton_mvx': 16.0, 'layer_mvx': 256.0}
    """
    return {"mvx": mvx, "skeleton_mvx": mvx / math.prod(skeleton_downsample), "layer_mvx": mvx * init_layers}


@dataclass(frozen=True)
class StepCost:
    """``cpu_s = cpu_s_fixed + cpu_s_per_mvx * MVx``; ``peak_mb = peak_mb_fixed + peak_mb_per_mvx * MVx``,
    with MVx counted in ``unit`` (see :data:`UNITS`)."""

    cpu_s_fixed: float
    cpu_s_per_mvx: float
    peak_mb_fixed: float
    peak_mb_per_mvx: float
    unit: str = "mvx"


@dataclass(frozen=True)
class Estimate:
    step: str
    cpu_s: float
    wall_s: float
    peak_mb: float
    parallel: int


def fit_line(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float]:
    """``(fixed, per_x)`` of the line through two measurements. A cost that does not grow with
    the size is the larger of the two, fixed; a negative intercept is clipped to 0.

    >>> fit_line(1, 3, 3, 7)
    (1.0, 2.0)
    >>> fit_line(1, 5, 3, 3)
    (5, 0.0)
    """
    slope = (y1 - y0) / (x1 - x0) if x1 != x0 else 0.0
    if slope <= 0:
        return max(y0, y1), 0.0
    return max(0.0, y1 - slope * x1), slope


def fit_costs(points: dict[str, list[tuple[float, float, float]]]) -> dict[str, StepCost]:
    """Per step, from ``[(MVx in the step's unit, cpu_s, peak_mb), ...]`` of two or more datasets:
    the lines through the smallest and the largest."""
    out = {}
    for step, pts in points.items():
        (x0, c0, m0), (x1, c1, m1) = min(pts), max(pts)
        cf, cp = fit_line(x0, c0, x1, c1)
        mf, mp = fit_line(x0, m0, x1, m1)
        out[step] = StepCost(round(cf, 3), round(cp, 5), round(mf, 1), round(mp, 4), unit_of(step))
    return out


def load_costs(path: str | Path = COSTS_PATH) -> tuple[dict[str, StepCost], dict[str, Any]]:
    """The per-step costs and the table's ``measured`` record (machine, datasets, date)."""
    raw = json.loads(Path(path).read_text())
    return {k: StepCost(**v) for k, v in raw["steps"].items()}, raw.get("measured", {})


def estimate(step: str, cost: StepCost, mvx: float, workers: int, blocks: int | None) -> Estimate:
    """The expected CPU s, wall s and peak memory of ``step`` on ``mvx`` MVx (in ``cost.unit``) with
    ``workers`` processes over ``blocks`` blocks (None: not blockwise)."""
    parallel = max(1, min(workers, blocks or 1))
    work = cost.cpu_s_per_mvx * mvx
    return Estimate(step, cost.cpu_s_fixed + work, cost.cpu_s_fixed + work / parallel,
                    cost.peak_mb_fixed + cost.peak_mb_per_mvx * mvx, parallel)


def n_blocks(shape_xyz: tuple[int, int, int], block_xyz: tuple[int, int, int]) -> int:
    from syngraph.bbox import BBox
    from syngraph.engine.blocks import grid_shape

    return math.prod(grid_shape(BBox.from_shape(shape_xyz), block_xyz))
