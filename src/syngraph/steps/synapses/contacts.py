"""Contact sites between supervoxels in one block: faces, contact voxels, synaptic voxels (pure numpy).

A *face* is the shared square between two 6-adjacent voxels of different non-zero supervoxels; its
area is the product of the voxel size along the two other axes (e.g. 10x25 nm^2 for a face normal to
x at 10x10x25 nm). A block owns the faces whose lower voxel lies in its core, so every face is counted
exactly once over all blocks. The *contact voxels* of a pair are the voxels on both sides of its faces,
grown ``dilations`` times (6-connected) into voxels of either partner or background, the reference's
thickening across the cleft; a block owns the contact voxels in its core.
"""

from __future__ import annotations

from dataclasses import dataclass

import fastremap
import numpy as np

from syngraph.steps.label_runs import first_of_equal, first_of_runs, group_order

UINT64 = np.uint64


def unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique rows of ``(a, b)`` (uint64) and the row index of each input pair.

    Ids are renumbered to dense ranks first so one int64 key holds a pair (numpy's ``unique`` with
    ``axis=0`` or on large int64 arrays is 10-20x slower than fastremap here).
    """
    ids = fastremap.unique(np.concatenate([a, b]))
    ra = np.searchsorted(ids, a).astype(np.int64)
    rb = np.searchsorted(ids, b).astype(np.int64)
    keys, inverse = fastremap.unique(ra * len(ids) + rb, return_inverse=True)
    pairs = np.stack([ids[keys // len(ids)], ids[keys % len(ids)]], axis=1)
    return pairs, np.asarray(inverse).reshape(-1)


def merge_sorted(parts: list[np.ndarray]) -> np.ndarray:
    """The concatenation of sorted int64 arrays, sorted (timsort merges the runs, in place).

    Empties ``parts`` so that the runs are freed before the sort."""
    merged = np.concatenate(parts)
    parts.clear()
    merged.sort(kind="stable")
    return merged


@dataclass
class BlockContacts:
    """Contacts of one block (coordinates are global voxels, XYZ)."""

    pairs: np.ndarray  # (P, 2) uint64, sv_a < sv_b
    n_faces: np.ndarray  # (P, 3) int64, faces normal to x, y, z owned by this block
    area_nm2: np.ndarray  # (P,) float64
    size_vx: np.ndarray  # (P,) int64 contact voxels in the core (after thickening)
    bbox_min: np.ndarray  # (P, 3) int64
    bbox_max: np.ndarray  # (P, 3) int64, exclusive
    rep: np.ndarray  # (P, 3) int64, a contact voxel of the pair nearest the pair's mean
    coord_sum: np.ndarray  # (P, 3) int64 sum of the contact voxel coordinates (for the centre of mass)
    # contact voxel entries in the core: one row per (voxel, pair), sorted by voxel then pair
    entry_pair: np.ndarray  # (E,) int64 index into pairs
    entry_flat: np.ndarray  # (E,) int64 flat index into the read array
    # faces owned by this block: one row per face
    face_pair: np.ndarray  # (F,) int64
    face_lo_flat: np.ndarray  # (F,) int64 flat index of the lower voxel in the read array
    face_hi_flat: np.ndarray  # (F,) int64
    face_area_nm2: np.ndarray  # (F,) float64
    face_axis: np.ndarray  # (F,) int8 axis of the face normal (0 x, 1 y, 2 z)
    read_shape: tuple[int, int, int] = (0, 0, 0)
    read_origin: tuple[int, int, int] = (0, 0, 0)

    def xyz_of(self, flat_index: np.ndarray) -> np.ndarray:
        """Global XYZ voxel coordinates (int64, (N, 3)) of flat indices into the read array."""
        local = np.stack(np.unravel_index(flat_index, self.read_shape), axis=1).astype(np.int64)
        return local + np.asarray(self.read_origin, np.int64)


def _axis_coord(flat_index: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Coordinate along ``axis`` of C-order flat indices into an array of ``shape``."""
    stride = int(np.prod(shape[axis + 1:], dtype=np.int64))
    c = flat_index // stride if stride > 1 else flat_index
    return c % shape[axis] if axis > 0 else c


def _edge_codes(shape: tuple[int, ...]) -> np.ndarray:
    """Flattened uint8 flags of the voxels on the array's faces: bit ``2 * axis`` at the low end of
    ``axis``, bit ``2 * axis + 1`` at the high end (one gather replaces three divisions)."""
    codes = np.zeros(shape, np.uint8)
    for ax in range(3):
        low, high = [slice(None)] * 3, [slice(None)] * 3
        low[ax], high[ax] = 0, -1
        codes[tuple(low)] |= np.uint8(1 << (2 * ax))
        codes[tuple(high)] |= np.uint8(1 << (2 * ax + 1))
    return codes.reshape(-1)


def _box_mask(shape: tuple[int, ...], lo, hi) -> np.ndarray:
    """Flattened mask of the voxels of an array of ``shape`` that lie in the box ``[lo, hi)``
    (indexing it by flat indices needs no per-entry division)."""
    box = np.zeros(shape, bool)
    box[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return box.reshape(-1)


def block_faces(sv: np.ndarray) -> list[np.ndarray]:
    """Flat indices of the lower voxels of the faces normal to x, y and z (each sorted).

    A face joins two 6-adjacent voxels of different non-zero supervoxels; found by comparing the
    array with itself shifted by one voxel along each axis (memory speed, no per-voxel work).
    """
    out = []
    fg = sv != 0
    mask = np.empty(sv.shape, bool)
    for ax in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        m = mask[lo]
        np.not_equal(sv[lo], sv[hi], out=m)
        m &= fg[lo]
        m &= fg[hi]
        edge = [slice(None)] * 3
        edge[ax] = -1
        mask[tuple(edge)] = False  # the last plane has no upper neighbour
        out.append(np.flatnonzero(mask))
    return out


def block_contacts(
    sv: np.ndarray,
    core_start_local: tuple[int, int, int],
    core_stop_local: tuple[int, int, int],
    read_origin: tuple[int, int, int],
    voxel_size_nm: tuple[float, float, float],
    dilations: int = 0,
    gap_search_vx: tuple[int, int, int] = (0, 0, 0),
) -> BlockContacts:
    """Find the contacts of a block.

    ``sv`` is the XYZ supervoxel array of the block's read region (core plus a halo of at least
    ``dilations + max(1, gap_search_vx)`` voxels per axis where the volume continues: a contact
    voxel that far out can dilate into the core after its own gap search); ``core_*_local`` locate
    the core inside it; ``read_origin`` is the global voxel of ``sv[0, 0, 0]``. ``gap_search_vx`` (XYZ
    half-widths, e.g. 6, 6, 3 for the reference's 13x13x7 window) also pairs each voxel that borders
    background with the nearest other supervoxel across the gap along the six axis directions.

    Every (voxel, pair) set is kept as one sorted int64 key ``(voxel * n_pairs + pair) * 2``: adding one
    neighbour offset to all of it keeps it sorted, so each dilation is a merge of sorted runs.
    """
    sv = np.ascontiguousarray(sv)
    shape = tuple(int(s) for s in sv.shape)
    lo, hi = tuple(core_start_local), tuple(core_stop_local)
    flat = sv.reshape(-1)
    strides = (shape[1] * shape[2], shape[2], 1)
    vs = np.asarray(voxel_size_nm, dtype=np.float64)
    face_area = np.array([vs[1] * vs[2], vs[0] * vs[2], vs[0] * vs[1]])
    origin = tuple(int(o) for o in read_origin)

    face_lo = block_faces(sv)
    flo = np.concatenate(face_lo)
    fhi = np.concatenate([f + strides[ax] for ax, f in enumerate(face_lo)])
    fax = np.repeat(np.arange(3, dtype=np.int8), [len(f) for f in face_lo])
    g_vox, g_a, g_b = gap_partners(sv, gap_search_vx, vs)
    if not len(flo) and not len(g_vox):
        return _empty(shape, origin)
    va, vb = flat[flo], flat[fhi]
    n_f = len(flo)
    pairs, pair_index = unique_pairs(np.concatenate([np.minimum(va, vb), g_a]),
                                     np.concatenate([np.maximum(va, vb), g_b]))
    del va, vb, g_a, g_b
    pair_of_face, pair_of_gap = pair_index[:n_f].astype(np.int64), pair_index[n_f:].astype(np.int64)
    n_pairs = len(pairs)

    # contact voxel entries (voxel, pair) on both sides of every face in the read region, and the
    # voxels that face another supervoxel across a gap; each part below is sorted by voxel
    runs, start = [], 0
    for ax, f in enumerate(face_lo):
        p = pair_of_face[start:start + len(f)]
        runs += [f * n_pairs + p, (f + strides[ax]) * n_pairs + p]
        start += len(f)
    runs.append(g_vox * n_pairs + pair_of_gap)
    key = merge_sorted(runs)
    key = key[first_of_equal(key)] * 2
    del g_vox, pair_of_gap, pair_index
    frontier = key
    edges = _edge_codes(shape) if dilations else None
    for _ in range(dilations):
        key, frontier = _dilate(key, frontier, n_pairs, flat, edges, pairs, strides)
    del frontier, edges
    e_flat, e_pair = np.divmod(key, 2 * n_pairs)
    del key
    e_pair >>= 1
    in_core = _box_mask(shape, lo, hi)
    keep = in_core[e_flat]
    e_flat, e_pair = e_flat[keep], e_pair[keep]

    # faces owned by this block: lower voxel in the core
    own = in_core[flo]
    fpair, flo, fhi, fax = pair_of_face[own], flo[own], fhi[own], fax[own]
    n_faces = np.bincount(fpair * 3 + fax, minlength=3 * n_pairs).reshape(n_pairs, 3).astype(np.int64)
    area = n_faces @ face_area

    size, bmin, bmax, sums, rep = pair_stats(e_flat, e_pair, n_pairs, flat, shape, vs)
    present = (size > 0) | (n_faces.sum(1) > 0)
    o = np.asarray(origin, np.int64)
    remap = np.cumsum(present) - 1
    has = size[present, None] > 0
    return BlockContacts(
        pairs=pairs[present].astype(UINT64),
        n_faces=n_faces[present],
        area_nm2=area[present],
        size_vx=size[present],
        bbox_min=np.where(has, bmin[present] + o, 0),
        bbox_max=np.where(has, bmax[present] + o, 0),
        rep=rep[present] + o,
        coord_sum=sums[present] + size[present, None] * o,
        entry_pair=remap[e_pair],
        entry_flat=e_flat,
        face_pair=remap[fpair],
        face_lo_flat=flo,
        face_hi_flat=fhi,
        face_area_nm2=face_area[fax],
        face_axis=fax,
        read_shape=shape,
        read_origin=origin,
    )


def pair_stats(
    e_flat: np.ndarray, e_pair: np.ndarray, n_pairs: int, flat: np.ndarray, shape: tuple[int, ...],
    vs: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Per pair: voxel count, bbox (exclusive max), coordinate sums and the representative voxel.

    The representative is the pair's voxel nearest (in nm) to the pair's mean, preferring voxels of
    the two supervoxels over background, ties to the lowest flat index. Entries (sorted by voxel)
    are grouped by pair with a linear radix sort; the reductions then run over contiguous runs.
    """
    size = np.bincount(e_pair, minlength=n_pairs).astype(np.int64)
    bmin = np.full((n_pairs, 3), np.iinfo(np.int64).max, np.int64)
    bmax = np.full((n_pairs, 3), np.iinfo(np.int64).min, np.int64)
    sums = np.zeros((n_pairs, 3), np.int64)
    rep = np.zeros((n_pairs, 3), np.int64)
    if not len(e_pair):
        return size, bmin, bmax, sums, rep
    order = group_order(e_pair, n_pairs)
    g_flat = e_flat[order]
    del order
    present = np.flatnonzero(size)
    starts = np.r_[0, np.cumsum(size[present])[:-1]]
    group = np.repeat(np.arange(len(present), dtype=np.int32), size[present])
    d2 = np.zeros(len(g_flat))
    for ax in range(3):
        c = _axis_coord(g_flat, shape, ax)
        bmin[present, ax] = np.minimum.reduceat(c, starts)
        bmax[present, ax] = np.maximum.reduceat(c, starts) + 1
        sums[present, ax] = np.add.reduceat(c, starts)
        mean = sums[present, ax] / size[present]
        t = mean[group]
        np.subtract(c, t, out=t)  # c - mean, in place
        del c
        t **= 2
        t *= vs[ax] ** 2
        d2 += t  # summed over x, y, z in this order
    del t
    background = (flat[g_flat] == 0).view(np.int8)  # prefer voxels of the two supervoxels
    best_bg = np.minimum.reduceat(background, starts)
    d2[background != best_bg[group]] = np.inf
    best_d2 = np.minimum.reduceat(d2, starts)
    hit = np.flatnonzero(d2 == best_d2[group])
    first = hit[first_of_runs(group[hit])]  # in each group, entries are in flat index order
    rep[present] = np.stack(np.unravel_index(g_flat[first], shape), axis=1)
    return size, bmin, bmax, sums, rep


def gap_partners(
    sv: np.ndarray, search_vx: tuple[int, int, int], voxel_size_nm: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxels that border background and see another supervoxel across it.

    From each non-zero voxel with a background 6-neighbour, walk up to ``search_vx[axis]`` voxels
    through background along each of the six axis directions; the first non-zero voxel of another
    supervoxel is a candidate, and the nearest candidate in nm wins (ties: the smaller id).
    Returns (flat index of the voxel, sv_a, sv_b) with sv_a < sv_b.
    """
    empty = (np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.uint64))
    if not any(search_vx):
        return empty
    shape = np.array(sv.shape)
    flat = sv.reshape(-1)
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    fg = sv != 0
    bg = ~fg
    border = np.zeros_like(fg)
    for ax in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        border[lo] |= fg[lo] & bg[hi]
        border[hi] |= fg[hi] & bg[lo]
    del fg, bg
    vox = np.flatnonzero(border)
    del border
    if not len(vox):
        return empty
    own = flat[vox]
    best_d = np.full(len(vox), np.inf)
    best_id = np.zeros(len(vox), np.uint64)
    for ax in range(3):
        coord = _axis_coord(vox, tuple(shape), ax)
        for step in (-1, 1):
            # the walkers still in background: their index into vox and their current position
            idx = np.arange(len(vox))
            pos = vox.copy()
            for k in range(1, search_vx[ax] + 1):
                c = coord[idx] + step * k
                inside = (c >= 0) & (c < shape[ax])
                idx, pos = idx[inside], pos[inside]
                if not len(idx):
                    break
                pos += step * strides[ax]
                val = flat[pos]
                d = k * voxel_size_nm[ax]
                hit = val != 0
                other = np.flatnonzero(hit & (val != own[idx]))
                o_idx, o_val = idx[other], val[other]
                better = (d < best_d[o_idx]) | ((d == best_d[o_idx]) & (o_val < best_id[o_idx]))
                best_d[o_idx[better]] = d
                best_id[o_idx[better]] = o_val[better]
                miss = ~hit  # the walk stops at the first non-background voxel
                idx, pos = idx[miss], pos[miss]
    found = best_id != 0
    a, b = own[found], best_id[found]
    return vox[found], np.minimum(a, b), np.maximum(a, b)


def _dilate(
    key: np.ndarray,
    frontier: np.ndarray,
    n_pairs: int,
    flat: np.ndarray,
    edges: np.ndarray,
    pairs: np.ndarray,
    strides: tuple[int, int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """One 6-connected dilation of the (voxel, pair) key set into voxels of either partner or background.

    Only the ``frontier`` (keys added by the previous dilation) can reach new voxels; ``edges`` are
    the array's face flags (``_edge_codes``). Candidates get
    the key's low bit set, so after the merge an existing key sorts before its duplicate candidate:
    the first of each run is kept, and the kept candidates are the next frontier.
    Returns the grown key set and its frontier (both sorted, low bit clear).
    """
    m = 2 * n_pairs
    vox, pair = np.divmod(frontier, m)
    pair >>= 1
    part_a, part_b = pairs[:, 0][pair], pairs[:, 1][pair]
    del pair
    n = len(frontier)
    nb, lab = np.empty(n, np.int64), np.empty(n, flat.dtype)
    ok, allowed, same = np.empty(n, bool), np.empty(n, bool), np.empty(n, bool)
    code, bit = edges.take(vox), np.empty(n, np.uint8)
    parts = [key]
    for ax in range(3):
        for step in (-1, 1):
            offset = step * strides[ax]
            np.add(vox, offset, out=nb)
            np.bitwise_and(code, np.uint8(1 << (2 * ax + (step > 0))), out=bit)
            np.equal(bit, 0, out=ok)
            np.take(flat, nb, out=lab, mode="clip")
            np.equal(lab, 0, out=allowed)
            allowed |= np.equal(lab, part_a, out=same)
            allowed |= np.equal(lab, part_b, out=same)
            allowed &= ok
            cand = frontier[allowed]
            cand += offset * m + 1
            parts.append(cand)
    del vox, part_a, part_b, nb, lab, code
    merged = merge_sorted(parts)
    merged = merged[first_of_equal(merged >> 1)]
    new = (merged & 1).astype(bool)
    merged[new] -= 1
    return merged, merged[new]


def _empty(shape: tuple[int, ...], origin: tuple[int, ...]) -> BlockContacts:
    z = np.zeros(0, np.int64)
    z3 = np.zeros((0, 3), np.int64)
    return BlockContacts(
        pairs=np.zeros((0, 2), UINT64), n_faces=z3, area_nm2=np.zeros(0), size_vx=z,
        bbox_min=z3, bbox_max=z3, rep=z3, coord_sum=z3, entry_pair=z, entry_flat=z,
        face_pair=z, face_lo_flat=z, face_hi_flat=z, face_area_nm2=np.zeros(0), face_axis=np.zeros(0, np.int8),
        read_shape=shape, read_origin=origin,
    )
