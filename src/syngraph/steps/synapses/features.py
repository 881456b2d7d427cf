"""Per-synapse neighbourhood features: vesicle cloud and mitochondria voxels on each side.

For a synapse between cells A and B with centre c, the vesicle evidence of side A is the number of
voxels of A within ``vc_distance_nm`` of c whose vc probability exceeds the vc threshold (likewise
mitochondria within ``mi_distance_nm``). The presynaptic side is the side with more vesicle voxels;
``direction_conf = |vc_a - vc_b| / (vc_a + vc_b)`` (0 when neither side has any).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from syngraph.bbox import BBox
from syngraph.io.volume import open_layer
from syngraph.steps.synapses.cluster import map_to_cells


@dataclass(frozen=True)
class SynapseChunk:
    """A batch of synapses whose neighbourhoods one task measures."""

    id: int
    synapse_index: np.ndarray  # (n,) int64
    centre_vx: np.ndarray  # (n, 3) int64
    cells: np.ndarray  # (n, 2) uint64 (cell a, cell b)


def side_counts(
    sv: np.ndarray,
    prob: np.ndarray,
    threshold_raw: float,
    centre_local: np.ndarray,
    voxel_size_nm: np.ndarray,
    radius_nm: float,
    cells: tuple[int, int],
    sv_ids: np.ndarray,
    cell_ids: np.ndarray,
) -> tuple[int, int, float, float]:
    """Voxels above threshold of each of the two cells within ``radius_nm``, and their min distances."""
    grids = np.ogrid[tuple(slice(0, s) for s in sv.shape)]
    d2 = sum(((g - c) * v) ** 2 for g, c, v in zip(grids, centre_local, voxel_size_nm, strict=True))
    near = (d2 <= radius_nm**2) & (prob > threshold_raw) & (sv != 0)
    if not near.any():
        return 0, 0, float("inf"), float("inf")
    cell = map_to_cells(sv[near], sv_ids, cell_ids)
    dist = np.sqrt(np.broadcast_to(d2, sv.shape)[near])
    out = []
    for c in cells:
        m = cell == c
        out.append((int(m.sum()), float(dist[m].min()) if m.any() else float("inf")))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def features_task(chunk: SynapseChunk, workdir: str, params: dict[str, Any]) -> pa.Table:
    """vc and mi voxel counts per side for the synapses of one chunk."""
    s2c = pq.read_table(f"{workdir}/tables/sv_to_cell.parquet").sort_by("sv_id")
    sv_ids = s2c["sv_id"].to_numpy()
    cell_ids = s2c["cell_id"].to_numpy()
    vs = np.asarray(params["voxel_size_nm"], np.float64)
    sv_layer = open_layer(workdir, "sv")
    vol = sv_layer.bbox
    rows: dict[str, list[Any]] = {k: [] for k in ("synapse_index",)}
    results: dict[str, list[float]] = {}
    for si, c, cells in zip(chunk.synapse_index, chunk.centre_vx, chunk.cells, strict=True):
        rows["synapse_index"].append(int(si))
        for name in ("vc", "mi"):
            layer = params.get(f"{name}_layer")
            radius = params[f"{name}_distance_nm"]
            if not layer:
                vals = (0, 0, float("inf"), float("inf"))
            else:
                r_vx = np.ceil(radius / vs).astype(int)
                box = BBox(tuple(c - r_vx), tuple(c + r_vx + 1)).intersect(vol)
                sv = sv_layer.read(box)
                prob = open_layer(workdir, layer).read(box)
                vals = side_counts(sv, prob, params[f"{name}_threshold_raw"],
                                   c - np.asarray(box.start), vs, radius,
                                   (int(cells[0]), int(cells[1])), sv_ids, cell_ids)
            for key, v in zip((f"{name}_a_vx", f"{name}_b_vx", f"{name}_a_dist_nm", f"{name}_b_dist_nm"),
                              vals, strict=True):
                results.setdefault(key, []).append(v)
    table = {"synapse_index": np.asarray(rows["synapse_index"], np.int64)}
    for k, v in results.items():
        table[k] = np.asarray(v, np.float64 if "dist" in k else np.int64)
    return pa.table(table)
