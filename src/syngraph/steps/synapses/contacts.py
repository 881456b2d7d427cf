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


def first_of_runs(sorted_values: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal values in a sorted array."""
    if len(sorted_values) == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])


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
    # contact voxel entries in the core: one row per (voxel, pair)
    entry_xyz: np.ndarray  # (E, 3) int64
    entry_pair: np.ndarray  # (E,) int64 index into pairs
    entry_flat: np.ndarray  # (E,) int64 flat index into the read array
    # faces owned by this block: one row per face
    face_pair: np.ndarray  # (F,) int64
    face_lo_flat: np.ndarray  # (F,) int64 flat index of the lower voxel in the read array
    face_hi_flat: np.ndarray  # (F,) int64
    face_area_nm2: np.ndarray  # (F,) float64
    face_axis: np.ndarray  # (F,) int8 axis of the face normal (0 x, 1 y, 2 z)


def _in_box(coords: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.all((coords >= lo) & (coords < hi), axis=1)


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
    """
    shape = np.array(sv.shape)
    lo = np.asarray(core_start_local)
    hi = np.asarray(core_stop_local)
    flat = sv.reshape(-1, order="C")
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    vs = np.asarray(voxel_size_nm, dtype=np.float64)
    face_area = np.array([vs[1] * vs[2], vs[0] * vs[2], vs[0] * vs[1]])

    f_a, f_b, f_lo, f_hi, f_axis = [], [], [], [], []
    for ax in range(3):
        sl_lo = [slice(None)] * 3
        sl_hi = [slice(None)] * 3
        sl_lo[ax] = slice(0, shape[ax] - 1)
        sl_hi[ax] = slice(1, shape[ax])
        a = sv[tuple(sl_lo)]
        b = sv[tuple(sl_hi)]
        mask = (a != b) & (a != 0) & (b != 0)
        idx = np.nonzero(mask)
        if len(idx[0]) == 0:
            continue
        lo_flat = np.ravel_multi_index(idx, sv.shape).astype(np.int64)
        va, vb = a[idx], b[idx]
        f_a.append(np.minimum(va, vb))
        f_b.append(np.maximum(va, vb))
        f_lo.append(lo_flat)
        f_hi.append(lo_flat + strides[ax])
        f_axis.append(np.full(len(lo_flat), ax, np.int8))
    g_vox, g_a, g_b = gap_partners(sv, gap_search_vx, vs)
    if not f_a and not len(g_vox):
        return _empty()
    def cat(parts: list[np.ndarray], dt: type) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dt)

    fa, fb = cat(f_a, np.uint64), cat(f_b, np.uint64)
    flo, fhi = cat(f_lo, np.int64), cat(f_hi, np.int64)
    fax = cat(f_axis, np.int8)
    n_f = len(fa)
    pairs, pair_index = unique_pairs(np.concatenate([fa, g_a]), np.concatenate([fb, g_b]))
    pair_of_face, pair_of_gap = pair_index[:n_f], pair_index[n_f:]

    # contact voxel entries (voxel, pair) on both sides of every face in the read region, and the
    # voxels that face another supervoxel across a gap
    e_flat = np.concatenate([flo, fhi, g_vox])
    e_pair = np.concatenate([pair_of_face, pair_of_face, pair_of_gap]).astype(np.int64)
    n_pairs = len(pairs)
    key = fastremap.unique(e_flat * n_pairs + e_pair)
    for _ in range(dilations):
        key = _dilate(key, n_pairs, flat, pairs, shape, strides)
    e_flat = key // n_pairs
    e_pair = key % n_pairs
    coords = np.stack(np.unravel_index(e_flat, sv.shape), axis=1).astype(np.int64)
    keep = _in_box(coords, lo, hi)
    e_flat, e_pair, coords = e_flat[keep], e_pair[keep], coords[keep]

    # faces owned by this block: lower voxel in the core
    lo_coords = np.stack(np.unravel_index(flo, sv.shape), axis=1)
    own = _in_box(lo_coords, lo, hi)
    fpair, flo, fhi, fax = pair_of_face[own], flo[own], fhi[own], fax[own]
    n_faces = np.zeros((n_pairs, 3), np.int64)
    np.add.at(n_faces, (fpair, fax), 1)
    area = n_faces @ face_area

    # per-pair voxel stats
    size = np.bincount(e_pair, minlength=n_pairs).astype(np.int64)
    present = (size > 0) | (n_faces.sum(1) > 0)
    bmin = np.full((n_pairs, 3), np.iinfo(np.int64).max, np.int64)
    bmax = np.full((n_pairs, 3), np.iinfo(np.int64).min, np.int64)
    np.minimum.at(bmin, e_pair, coords)
    np.maximum.at(bmax, e_pair, coords + 1)
    rep = np.zeros((n_pairs, 3), np.int64)
    sums = np.zeros((n_pairs, 3), np.int64)
    if len(e_pair):
        np.add.at(sums, e_pair, coords)
        mean = sums / np.maximum(size, 1)[:, None]
        d2 = ((coords - mean[e_pair]) ** 2 * (vs**2)).sum(1)
        background = flat[e_flat] == 0  # prefer voxels of the two supervoxels over the cleft
        order = np.lexsort((e_flat, d2, background, e_pair))
        first = order[first_of_runs(e_pair[order])]
        rep[e_pair[first]] = coords[first]
    origin = np.asarray(read_origin, np.int64)
    # re-index to the pairs present in this block's core
    remap = np.cumsum(present) - 1
    return BlockContacts(
        pairs=pairs[present].astype(UINT64),
        n_faces=n_faces[present],
        area_nm2=area[present],
        size_vx=size[present],
        bbox_min=np.where(size[present, None] > 0, bmin[present] + origin, 0),
        bbox_max=np.where(size[present, None] > 0, bmax[present] + origin, 0),
        rep=rep[present] + origin,
        coord_sum=sums[present] + size[present, None] * origin,
        entry_xyz=coords + origin,
        entry_pair=remap[e_pair],
        entry_flat=e_flat,
        face_pair=remap[fpair],
        face_lo_flat=flo,
        face_hi_flat=fhi,
        face_area_nm2=face_area[fax],
        face_axis=fax,
    )


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
    border = np.zeros_like(fg)
    for ax in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        border[tuple(lo)] |= fg[tuple(lo)] & ~fg[tuple(hi)]
        border[tuple(hi)] |= fg[tuple(hi)] & ~fg[tuple(lo)]
    vox = np.flatnonzero(border)
    if not len(vox):
        return empty
    coords = np.stack(np.unravel_index(vox, sv.shape), axis=1)
    own = flat[vox]
    best_d = np.full(len(vox), np.inf)
    best_id = np.zeros(len(vox), np.uint64)
    for ax in range(3):
        for step in (-1, 1):
            alive = np.ones(len(vox), bool)
            for k in range(1, search_vx[ax] + 1):
                c = coords[:, ax] + step * k
                alive &= (c >= 0) & (c < shape[ax])
                idx = np.flatnonzero(alive)
                if not len(idx):
                    break
                val = flat[vox[idx] + step * k * strides[ax]]
                d = k * voxel_size_nm[ax]
                hit = val != 0
                other = hit & (val != own[idx])
                better = other & ((d < best_d[idx]) | ((d == best_d[idx]) & (val < best_id[idx])))
                best_d[idx[better]] = d
                best_id[idx[better]] = val[better]
                alive[idx[hit]] = False  # the walk stops at the first non-background voxel
    found = best_id != 0
    a, b = own[found], best_id[found]
    return vox[found], np.minimum(a, b), np.maximum(a, b)


def _dilate(
    key: np.ndarray,
    n_pairs: int,
    flat: np.ndarray,
    pairs: np.ndarray,
    shape: np.ndarray,
    strides: np.ndarray,
) -> np.ndarray:
    """One 6-connected dilation of the (voxel, pair) set into voxels of either partner or background."""
    vox = key // n_pairs
    pair = key % n_pairs
    coords = np.stack(np.unravel_index(vox, tuple(shape)), axis=1)
    new = [key]
    for ax in range(3):
        for step in (-1, 1):
            c = coords[:, ax] + step
            ok = (c >= 0) & (c < shape[ax])
            nb = vox[ok] + step * strides[ax]
            p = pair[ok]
            lab = flat[nb]
            allowed = (lab == 0) | (lab == pairs[p, 0]) | (lab == pairs[p, 1])
            new.append(nb[allowed] * n_pairs + p[allowed])
    return fastremap.unique(np.concatenate(new))


def _empty() -> BlockContacts:
    z = np.zeros(0, np.int64)
    z3 = np.zeros((0, 3), np.int64)
    return BlockContacts(
        pairs=np.zeros((0, 2), UINT64), n_faces=z3, area_nm2=np.zeros(0), size_vx=z,
        bbox_min=z3, bbox_max=z3, rep=z3, coord_sum=z3, entry_xyz=z3, entry_pair=z, entry_flat=z,
        face_pair=z, face_lo_flat=z, face_hi_flat=z, face_area_nm2=np.zeros(0), face_axis=np.zeros(0, np.int8),
    )
