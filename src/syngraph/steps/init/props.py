"""Object properties accumulated over blocks: size, bounding box, centre of mass, a voxel inside.

:func:`block_props` measures the pieces of every object in one block (global voxel coordinates);
:func:`reduce_props` sums sizes and coordinate sums, unions bounding boxes and keeps, as ``rep``,
the piece representative nearest to the object's centre of mass. A piece's representative is its
centroid voxel when that voxel belongs to the piece, else the piece voxel nearest to the centroid,
so ``rep`` always lies inside the object (the reference uses the first voxel met in a scan).
"""

from __future__ import annotations

import cc3d
import fastremap
import numpy as np
import pyarrow as pa

PIECE_COLUMNS = ("id", "size_vx", "bbox_min", "bbox_max", "sum", "rep")


def _nearest_voxel(labels: np.ndarray, label: int, c: np.ndarray) -> np.ndarray:
    """Index of the voxel of ``labels == label`` nearest to point ``c``, searched in windows
    around ``c`` that double in size (only the window is compared, never the whole bbox)."""
    shape = np.array(labels.shape)
    ci = np.clip(np.rint(c).astype(np.int64), 0, shape - 1)
    r = 2
    while True:
        lo = np.maximum(ci - r, 0)
        hi = np.minimum(ci + r + 1, shape)
        pts = np.argwhere(labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] == label)
        full = (lo == 0).all() and (hi == shape).all()
        if len(pts):
            pts = pts + lo
            d2 = ((pts - c) ** 2).sum(1)
            best = int(np.argmin(d2))
            # any voxel outside the window is farther than r - 0.5 from c
            if d2[best] <= (r - 0.5) ** 2 or full:
                return pts[best]
        if full:
            raise ValueError(f"label {label} not found")
        r *= 2


def block_props(labels: np.ndarray, offset_vx: tuple[int, int, int] = (0, 0, 0)) -> pa.Table:
    """Per-id measures of the pieces in one XYZ block (coordinates global via ``offset_vx``).

    Returns columns ``id`` (uint64), ``size_vx``, ``bbox_min_{x,y,z}_vx``, ``bbox_max_{x,y,z}_vx``
    (max exclusive), ``sum_{x,y,z}`` (float64 coordinate sums), ``rep_{x,y,z}_vx``.

    >>> a = np.zeros((4, 3, 2), np.uint64); a[1:3, 0, 0] = 7
    >>> t = block_props(a, (10, 0, 0)).to_pydict()
    >>> t["id"], t["size_vx"], t["bbox_min_x_vx"], t["bbox_max_x_vx"], t["sum_x"], t["rep_x_vx"]
    ([7], [2], [11], [13], [23.0], [12])
    """
    off = np.asarray(offset_vx, np.int64)
    ren, remap = fastremap.renumber(labels, in_place=False, preserve_zero=True)
    n = len(remap) - (1 if 0 in remap else 0)
    if n == 0:
        return _empty_table()
    st = cc3d.statistics(ren, no_slice_conversion=True)
    counts = np.asarray(st["voxel_counts"][1 : n + 1], np.int64)
    cents = np.asarray(st["centroids"][1 : n + 1], np.float64)
    boxes = np.asarray(st["bounding_boxes"][1 : n + 1], np.int64)
    bmin = boxes[:, 0::2]
    bmax = boxes[:, 1::2] + 1
    reps = np.empty((n, 3), np.int64)
    ci = np.rint(cents).astype(np.int64)
    ci = np.clip(ci, bmin, bmax - 1)
    hit = ren[ci[:, 0], ci[:, 1], ci[:, 2]] == np.arange(1, n + 1)
    reps[hit] = ci[hit]
    for k in np.flatnonzero(~hit):
        sl = tuple(slice(a, b) for a, b in zip(bmin[k], bmax[k], strict=True))
        reps[k] = _nearest_voxel(ren[sl], k + 1, cents[k] - bmin[k]) + bmin[k]
    ids = np.zeros(n, np.uint64)
    for k, v in remap.items():
        if v:
            ids[v - 1] = k
    sums = cents * counts[:, None]
    return pa.table(
        {
            "id": ids,
            "size_vx": counts,
            **{f"bbox_min_{a}_vx": bmin[:, i] + off[i] for i, a in enumerate("xyz")},
            **{f"bbox_max_{a}_vx": bmax[:, i] + off[i] for i, a in enumerate("xyz")},
            **{f"sum_{a}": sums[:, i] + counts * off[i] for i, a in enumerate("xyz")},
            **{f"rep_{a}_vx": reps[:, i] + off[i] for i, a in enumerate("xyz")},
        }
    )


def _empty_table() -> pa.Table:
    cols: dict[str, pa.Array] = {"id": pa.array([], pa.uint64()), "size_vx": pa.array([], pa.int64())}
    for pre in ("bbox_min_", "bbox_max_"):
        for a in "xyz":
            cols[pre + a + "_vx"] = pa.array([], pa.int64())
    for a in "xyz":
        cols["sum_" + a] = pa.array([], pa.float64())
    for a in "xyz":
        cols["rep_" + a + "_vx"] = pa.array([], pa.int64())
    return pa.table(cols)


def reduce_props(pieces: pa.Table) -> pa.Table:
    """Combine piece tables (any order) into one row per id, sorted by id.

    Columns: ``id``, ``size_vx``, ``bbox_min_{x,y,z}_vx``, ``bbox_max_{x,y,z}_vx``, ``rep_{x,y,z}_vx``,
    ``com_{x,y,z}_vx`` (float64).
    """
    if pieces.num_rows == 0:
        empty = _empty_table()
        cols = {k: empty.column(k) for k in empty.column_names if not k.startswith("sum_")}
        cols.update({f"com_{a}_vx": pa.array([], pa.float64()) for a in "xyz"})
        return pa.table(cols)
    col = {name: pieces.column(name).to_numpy() for name in pieces.column_names}
    ids = col["id"].astype(np.uint64)
    # deterministic order regardless of piece order: sort by (id, rep)
    order = np.lexsort((col["rep_z_vx"], col["rep_y_vx"], col["rep_x_vx"], ids))
    col = {k: v[order] for k, v in col.items()}
    ids = ids[order]
    uniq, start = np.unique(ids, return_index=True)
    size = np.add.reduceat(col["size_vx"].astype(np.int64), start) if len(ids) else np.zeros(0, np.int64)
    out: dict[str, np.ndarray] = {"id": uniq, "size_vx": size}
    for a in "xyz":
        out[f"bbox_min_{a}_vx"] = np.minimum.reduceat(col[f"bbox_min_{a}_vx"], start) if len(ids) else np.zeros(0, np.int64)
    for a in "xyz":
        out[f"bbox_max_{a}_vx"] = np.maximum.reduceat(col[f"bbox_max_{a}_vx"], start) if len(ids) else np.zeros(0, np.int64)
    com = np.stack(
        [np.add.reduceat(col[f"sum_{a}"], start) / size if len(ids) else np.zeros(0) for a in "xyz"], axis=1
    )
    # representative: the piece rep nearest to the object's centre of mass
    obj = np.repeat(np.arange(len(uniq)), np.diff(np.append(start, len(ids))))
    reps = np.stack([col[f"rep_{a}_vx"] for a in "xyz"], axis=1)
    d2 = ((reps - com[obj]) ** 2).sum(1) if len(ids) else np.zeros(0)
    best = np.lexsort((np.arange(len(ids)), d2, obj))
    first = best[np.searchsorted(obj[best], np.arange(len(uniq)))] if len(ids) else np.zeros(0, np.int64)
    for i, a in enumerate("xyz"):
        out[f"rep_{a}_vx"] = reps[first, i] if len(ids) else np.zeros(0, np.int64)
    for i, a in enumerate("xyz"):
        out[f"com_{a}_vx"] = com[:, i] if len(ids) else np.zeros(0)
    return pa.table(out)
