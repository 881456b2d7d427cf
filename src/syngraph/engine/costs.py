"""What a step costs on a volume: the per-voxel costs ``bench/pipeline.py`` measured, and the estimate
``syngraph plan`` prints from them.

``costs.json`` (next to this module, written by ``bench/pipeline.py --write-costs``) holds, per step,
a straight line through the benchmark's smallest and largest dataset: CPU seconds and peak memory
(MB, all processes) as ``fixed + per_mvx * MVx``, plus where and how it was measured. A step's
expected wall time on ``workers`` processes is its fixed part (process start, reductions) plus its
per-voxel part spread over ``min(workers, blocks)`` (steps that do not work in blocks get one).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COSTS_PATH = Path(__file__).with_name("costs.json")


@dataclass(frozen=True)
class StepCost:
    """``cpu_s = cpu_s_fixed + cpu_s_per_mvx * MVx``; ``peak_mb = peak_mb_fixed + peak_mb_per_mvx * MVx``."""

    cpu_s_fixed: float
    cpu_s_per_mvx: float
    peak_mb_fixed: float
    peak_mb_per_mvx: float


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
    """Per step, from ``[(mvx, cpu_s, peak_mb), ...]`` of two or more datasets: the lines through
    the smallest and the largest."""
    out = {}
    for step, pts in points.items():
        (x0, c0, m0), (x1, c1, m1) = min(pts), max(pts)
        cf, cp = fit_line(x0, c0, x1, c1)
        mf, mp = fit_line(x0, m0, x1, m1)
        out[step] = StepCost(round(cf, 3), round(cp, 5), round(mf, 1), round(mp, 4))
    return out


def load_costs(path: str | Path = COSTS_PATH) -> tuple[dict[str, StepCost], dict[str, Any]]:
    """The per-step costs and the table's ``measured`` record (machine, datasets, date)."""
    raw = json.loads(Path(path).read_text())
    return {k: StepCost(**v) for k, v in raw["steps"].items()}, raw.get("measured", {})


def estimate(step: str, cost: StepCost, mvx: float, workers: int, blocks: int | None) -> Estimate:
    """The expected CPU s, wall s and peak memory of ``step`` on ``mvx`` MVx with ``workers``
    processes over ``blocks`` blocks (None: not blockwise)."""
    parallel = max(1, min(workers, blocks or 1))
    work = cost.cpu_s_per_mvx * mvx
    return Estimate(step, cost.cpu_s_fixed + work, cost.cpu_s_fixed + work / parallel,
                    cost.peak_mb_fixed + cost.peak_mb_per_mvx * mvx, parallel)


def n_blocks(shape_xyz: tuple[int, int, int], block_xyz: tuple[int, int, int]) -> int:
    from syngraph.bbox import BBox
    from syngraph.engine.blocks import grid_shape

    return math.prod(grid_shape(BBox.from_shape(shape_xyz), block_xyz))
