"""Voxel overlap of organelle instances with cell supervoxels.

:func:`block_overlap` counts, in one block, the voxels of every (organelle id, supervoxel id) pair
where both are non-zero; :func:`reduce_overlap` sums the blocks and adds
``ratio = overlap_vx / organelle size`` (as the reference's ``mapping_ratios``).
"""

from __future__ import annotations

import fastremap
import numpy as np
import pyarrow as pa

OVERLAP_SCHEMA = pa.schema(
    [
        ("organelle_layer", pa.string()),
        ("organelle_id", pa.uint64()),
        ("sv_id", pa.uint64()),
        ("overlap_vx", pa.int64()),
        ("ratio", pa.float64()),
    ]
)


def block_overlap(organelles: np.ndarray, sv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(organelle_id, sv_id, overlap_vx) of all pairs in one block, sorted by (organelle, sv).

    >>> o = np.array([[[1, 1, 2, 0]]], np.uint64); s = np.array([[[5, 6, 6, 6]]], np.uint64)
    >>> [a.tolist() for a in block_overlap(o, s)]
    [[1, 1, 2], [5, 6, 6], [1, 1, 1]]
    """
    m = (organelles != 0) & (sv != 0)
    if not m.any():
        z = np.zeros(0, np.uint64)
        return z, z.copy(), np.zeros(0, np.int64)
    o = organelles[m]
    s = sv[m]
    o_r, o_map = fastremap.renumber(o, in_place=True, preserve_zero=False)
    s_r, s_map = fastremap.renumber(s, in_place=True, preserve_zero=False)
    o_inv = np.zeros(len(o_map) + 1, np.uint64)
    o_inv[np.fromiter(o_map.values(), np.int64, len(o_map))] = np.fromiter(o_map.keys(), np.uint64, len(o_map))
    s_inv = np.zeros(len(s_map) + 1, np.uint64)
    s_inv[np.fromiter(s_map.values(), np.int64, len(s_map))] = np.fromiter(s_map.keys(), np.uint64, len(s_map))
    ns = np.int64(len(s_map) + 1)
    key = o_r.astype(np.int64) * ns + s_r.astype(np.int64)
    if (len(o_map) + 1) * int(ns) <= 4 * len(key) + 2**16:  # dense key space: count directly
        cnt = np.bincount(key)
        keys = np.flatnonzero(cnt)
        counts = cnt[keys]
    else:  # np.unique takes a slow hash path on int arrays (numpy 2.4): fastremap's is sort-free
        keys, counts = fastremap.unique(key, return_counts=True)
    oid, sid = o_inv[keys // ns], s_inv[keys % ns]
    order = np.lexsort((sid, oid))
    return oid[order], sid[order], counts[order].astype(np.int64)


def reduce_overlap(
    layer: str,
    organelle_id: np.ndarray,
    sv_id: np.ndarray,
    overlap_vx: np.ndarray,
    sizes_id: np.ndarray,
    sizes_vx: np.ndarray,
) -> pa.Table:
    """Sum per-block counts of one organelle layer into the overlap table (sorted by ids)."""
    organelle_id = np.asarray(organelle_id, np.uint64)
    sv_id = np.asarray(sv_id, np.uint64)
    if len(organelle_id) == 0:
        return OVERLAP_SCHEMA.empty_table()
    order = np.lexsort((sv_id, organelle_id))
    oid, sid, cnt = organelle_id[order], sv_id[order], np.asarray(overlap_vx, np.int64)[order]
    new = np.ones(len(oid), bool)
    new[1:] = (oid[1:] != oid[:-1]) | (sid[1:] != sid[:-1])
    start = np.flatnonzero(new)
    oid, sid, cnt = oid[start], sid[start], np.add.reduceat(cnt, start)
    sizes_id = np.asarray(sizes_id, np.uint64)
    size = np.asarray(sizes_vx, np.int64)[np.searchsorted(sizes_id, oid)]
    return pa.table(
        {
            "organelle_layer": pa.array([layer] * len(oid), pa.string()),
            "organelle_id": oid,
            "sv_id": sid,
            "overlap_vx": cnt,
            "ratio": cnt / size,
        },
        schema=OVERLAP_SCHEMA,
    )
