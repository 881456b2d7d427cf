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


#: decoded storage chunks a features task keeps per layer (256 MiB of uint64 sv at 128x128x64 chunks;
#: an mi neighbourhood of 1000 nm spans up to ~18 chunks, so about two neighbourhoods); tasks get
#: spatially sorted synapses, so neighbours share most chunks (``chunk_order``)
CACHE_CHUNKS = 32


def chunk_order(centres_vx: np.ndarray, chunks_xyz: tuple[int, int, int]) -> np.ndarray:
    """Synapse order by the storage chunk of the centre (z, then y, then x), so a task's synapses lie
    near each other and their neighbourhoods decode the same chunks.

    >>> chunk_order(np.array([[130, 0, 0], [5, 0, 70], [7, 3, 1]]), (128, 128, 64)).tolist()
    [2, 0, 1]
    """
    key = np.asarray(centres_vx) // np.asarray(chunks_xyz)
    return np.lexsort((key[:, 0], key[:, 1], key[:, 2]))


def features_task(chunk: SynapseChunk, workdir: str, params: dict[str, Any]) -> pa.Table:
    """vc and mi voxel counts per side for the synapses of one chunk. Each layer is opened once
    with a cache of decoded chunks, and ``sv`` is read once per synapse (the larger neighbourhood)."""
    s2c = pq.read_table(f"{workdir}/tables/sv_to_cell.parquet").sort_by("sv_id")
    sv_ids = s2c["sv_id"].to_numpy()
    cell_ids = s2c["cell_id"].to_numpy()
    vs = np.asarray(params["voxel_size_nm"], np.float64)

    def _open(name: str) -> Any:
        lay = open_layer(workdir, name)
        return lay.cached(CACHE_CHUNKS * np.prod(lay.info.chunks_xyz) * lay.dtype.itemsize / 2**20)

    sv_layer = _open("sv")
    vol = sv_layer.bbox
    probs = {n: _open(params[f"{n}_layer"]) for n in ("vc", "mi") if params.get(f"{n}_layer")}
    r_vx = {n: np.ceil(params[f"{n}_distance_nm"] / vs).astype(int) for n in probs}
    r_max = np.max(list(r_vx.values()), axis=0) if r_vx else None
    rows: dict[str, list[Any]] = {k: [] for k in ("synapse_index",)}
    results: dict[str, list[float]] = {}
    for si, c, cells in zip(chunk.synapse_index, chunk.centre_vx, chunk.cells, strict=True):
        rows["synapse_index"].append(int(si))
        if r_max is not None:  # sv once, over the larger neighbourhood
            outer = BBox(tuple(c - r_max), tuple(c + r_max + 1)).intersect(vol)
            sv_outer = sv_layer.read(outer)
        for name in ("vc", "mi"):
            radius = params[f"{name}_distance_nm"]
            if name not in probs:
                vals = (0, 0, float("inf"), float("inf"))
            else:
                box = BBox(tuple(c - r_vx[name]), tuple(c + r_vx[name] + 1)).intersect(vol)
                sv = sv_outer[box.local_slices(outer)]
                prob = probs[name].read(box)
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
