"""Checks of the step's inputs, run before any segmentation block (errors name layer, file and fix)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from syngraph.errors import InputError
from syngraph.io.volume import Layer


class InitInputError(InputError):
    """An input of the init step is missing or unusable."""


DEFAULT_RANGE = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0}


def map_stats(prob: np.ndarray, threshold_value: float) -> dict[str, float]:
    """min, max, NaN count and count above ``threshold_value`` of one block of a map."""
    if prob.dtype.kind == "f":
        nan = int(np.isnan(prob).sum())
        finite = prob[~np.isnan(prob)] if nan else prob
    else:
        nan, finite = 0, prob
    return {
        "min": float(finite.min()) if finite.size else 0.0,
        "max": float(finite.max()) if finite.size else 0.0,
        "n_nan": nan,
        "n_fg": int((prob > threshold_value).sum()),
        "n": int(prob.size),
    }


@dataclass(frozen=True)
class MapCheck:
    layer: str
    path: str
    kind: str
    value_range: float
    threshold_value: float


def check_stats(checks: list[MapCheck], stats: pa.Table) -> None:
    """Raise :class:`InitInputError` for NaNs, out-of-range values, all-zero or all-foreground maps."""
    problems = []
    for c in checks:
        t = stats.filter(pa.compute.equal(stats.column("layer"), c.layer))
        if t.num_rows == 0:
            continue
        mn = float(np.min(t.column("min").to_numpy()))
        mx = float(np.max(t.column("max").to_numpy()))
        nan = int(np.sum(t.column("n_nan").to_numpy()))
        fg = int(np.sum(t.column("n_fg").to_numpy()))
        n = int(np.sum(t.column("n").to_numpy()))
        where = f"layer '{c.layer}' ({c.path})"
        if nan:
            problems.append(
                f"{where}: {nan} NaN values in a float map; replace them (e.g. with 0) and re-import"
            )
        if c.kind == "probability" and (mn < 0 or mx > c.value_range):
            problems.append(
                f"{where}: values in [{mn:g}, {mx:g}] lie outside the declared range [0, {c.value_range:g}]; "
                f"re-import with the right value range (uint8 maps: 0-255, float maps: 0-1)"
            )
        if mx == 0:
            problems.append(
                f"{where}: the map is all zero, so no object can be found; check that the right file "
                f"was imported, or remove '{c.layer}' from [layers] in syngraph.toml"
            )
        elif fg == n:
            problems.append(
                f"{where}: every voxel is above the threshold {c.threshold_value:g} (all foreground); "
                f"check the map's value range or raise organelles.{c.layer}.threshold"
            )
    if problems:
        raise InitInputError("init: bad input\n  " + "\n  ".join(problems))


def check_layer_match(sv: Layer, other: Layer, role: str) -> None:
    a, b = sv.info, other.info
    if tuple(a.shape_xyz) != tuple(b.shape_xyz):
        raise InitInputError(
            f"{role} layer '{b.name}' ({other.path}) has shape {list(b.shape_xyz)} (XYZ) but the "
            f"supervoxel layer '{a.name}' has {list(a.shape_xyz)}; all layers must cover the same "
            f"voxels: re-import '{b.name}' at the supervoxels' resolution and extent"
        )
    if not np.allclose(a.voxel_size_nm, b.voxel_size_nm):
        raise InitInputError(
            f"{role} layer '{b.name}' ({other.path}) has voxel size {list(b.voxel_size_nm)} nm but the "
            f"supervoxel layer '{a.name}' has {list(a.voxel_size_nm)} nm; re-import it with the same "
            f"voxel size (downsample/upsample the map to the supervoxels' resolution)"
        )
