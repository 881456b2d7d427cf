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
) -> BlockContacts:
    """Find the contacts of a block.

    ``sv`` is the XYZ supervoxel array of the block's read region (core plus a halo of at least
    ``dilations + 1`` voxels where the volume continues); ``core_*_local`` locate the core inside it;
    ``read_origin`` is the global voxel of ``sv[0, 0, 0]``.
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
    if not f_a:
        return _empty()
    fa = np.concatenate(f_a)
    fb = np.concatenate(f_b)
    flo = np.concatenate(f_lo)
    fhi = np.concatenate(f_hi)
    fax = np.concatenate(f_axis)
    pairs, pair_of_face = unique_pairs(fa, fb)

    # contact voxel entries (voxel, pair) on both sides of every face in the read region
    e_flat = np.concatenate([flo, fhi])
    e_pair = np.concatenate([pair_of_face, pair_of_face]).astype(np.int64)
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
