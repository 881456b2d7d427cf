"""Organelle instance segmentation of one block (or a whole volume): pure numpy.

probability map -> threshold -> opening -> closing -> connected components, or (when erosions are
configured) a seeded watershed: seeds are the components of the eroded mask, grown back over the
distance transform inside the mask.

Morphology uses the reference's anisotropic kernel (:func:`aniso_structure`) and exact binary
erosion/dilation with a zero border (as ``scipy.ndimage.binary_erosion`` with ``border_value=0``).
Every operation is local, so a block read with the halo of :func:`morph_halo` gives exactly the
whole-volume result in its core.
"""

from __future__ import annotations

from typing import Literal

import cc3d
import numpy as np

Connectivity = Literal[6, 18, 26]


def aniso_structure(voxel_size_nm: tuple[float, float, float]) -> np.ndarray:
    """The reference's morphology kernel for an XYZ voxel size (``get_aniso_struct``).

    The middle z-slice is a diamond of radius ``aniso = vz // vx`` (clipped to 1..2) and the
    slices z +- 1 hold only the centre voxel.

    >>> aniso_structure((10, 10, 25)).sum(), aniso_structure((10, 10, 25)).shape
    (np.int64(15), (5, 5, 3))
    >>> int(aniso_structure((8, 8, 8)).sum())
    7
    """
    vx, _, vz = voxel_size_nm
    r = int(min(max(vz // vx, 1), 2))
    n = 2 * r + 1
    st = np.zeros((n, n, 3), bool)
    ii, jj = np.meshgrid(np.arange(n) - r, np.arange(n) - r, indexing="ij")
    st[:, :, 1] = (np.abs(ii) + np.abs(jj)) <= r
    st[r, r, :] = True
    return st


def structure_radius(structure: np.ndarray) -> tuple[int, int, int]:
    """Reach of one erosion/dilation with ``structure`` along x, y, z (voxels)."""
    return tuple(s // 2 for s in structure.shape)  # type: ignore[return-value]


def morph_halo(
    voxel_size_nm: tuple[float, float, float], opening: int, closing: int, erosions: int
) -> tuple[int, int, int]:
    """Halo (voxels, XYZ) after which a block's core equals the whole-volume result.

    >>> morph_halo((10, 10, 25), 1, 1, 4)
    (16, 16, 8)
    """
    n_ops = 2 * opening + 2 * closing + erosions
    return tuple(r * n_ops for r in structure_radius(aniso_structure(voxel_size_nm)))  # type: ignore[return-value]


def _offsets(structure: np.ndarray) -> list[tuple[int, int, int]]:
    c = np.array(structure.shape) // 2
    return [tuple(int(v) for v in (o - c)) for o in np.argwhere(structure)]


def _shifted_reduce(mask: np.ndarray, structure: np.ndarray, op: Literal["and", "or"]) -> np.ndarray:
    """out[p] = AND/OR over offsets o of mask[p + o], with False outside the array."""
    r = structure_radius(structure)
    pad = np.zeros(tuple(s + 2 * q for s, q in zip(mask.shape, r, strict=True)), bool)
    inner = tuple(slice(q, q + s) for q, s in zip(r, mask.shape, strict=True))
    pad[inner] = mask
    out = np.ones(mask.shape, bool) if op == "and" else np.zeros(mask.shape, bool)
    for o in _offsets(structure):
        src = pad[tuple(slice(q + d, q + d + s) for q, d, s in zip(r, o, mask.shape, strict=True))]
        if op == "and":
            np.logical_and(out, src, out=out)
        else:
            np.logical_or(out, src, out=out)
    return out


def erode(mask: np.ndarray, structure: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Binary erosion with a zero border (= scipy's ``binary_erosion(border_value=0)``)."""
    out = mask
    for _ in range(iterations):
        out = _shifted_reduce(out, structure, "and")
    return out


def dilate(mask: np.ndarray, structure: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Binary dilation with a symmetric ``structure`` (= scipy's ``binary_dilation``)."""
    out = mask
    for _ in range(iterations):
        out = _shifted_reduce(out, structure, "or")
    return out


def foreground(
    prob: np.ndarray,
    threshold: float,
    value_range: float,
    structure: np.ndarray,
    opening: int = 1,
    closing: int = 1,
) -> np.ndarray:
    """Threshold (``prob > threshold * value_range``), then open and close ``n`` iterations each.

    >>> p = np.zeros((7, 7, 3), np.uint8); p[1:6, 1:6, :] = 200; p[0, 0, 0] = 255
    >>> m = foreground(p, 0.5, 255, aniso_structure((10, 10, 10)), opening=1, closing=0)
    >>> int(m.sum()), bool(m[0, 0, 0])
    (39, False)
    """
    if prob.dtype == bool:
        mask = prob.copy()
    else:
        mask = prob > threshold * value_range
    if opening:
        mask = dilate(erode(mask, structure, opening), structure, opening)
    if closing:
        mask = erode(dilate(mask, structure, closing), structure, closing)
    return mask


def label_components(mask: np.ndarray, connectivity: Connectivity = 6, return_n: bool = False):
    """Connected components of a binary mask: uint32 ids 1..n in raster (x-fastest) order
    (and ``n`` with ``return_n=True``)."""
    out = cc3d.connected_components(
        mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8, copy=False),
        connectivity=connectivity, out_dtype=np.uint32, return_N=return_n,
    )
    return out


def watershed_components(
    mask: np.ndarray,
    seeds: np.ndarray,
    voxel_size_nm: tuple[float, float, float],
) -> np.ndarray:
    """Grow ``seeds`` (ids, 0 = none) over ``-EDT(mask)`` inside ``mask`` (6-connected flooding).

    Mask voxels no seed reaches stay 0. The distance transform is anisotropic (nm) and treats the
    array border as not background, so a crop that keeps one voxel of background around an object
    (or the volume border) gives the same result as the whole volume.
    """
    import edt
    from skimage.segmentation import watershed

    if not seeds.any():
        return np.zeros(mask.shape, seeds.dtype)
    dist = edt.edt(np.asfortranarray(mask.astype(np.uint8)), anisotropy=voxel_size_nm, black_border=False)
    # skimage mixes memory orders wrongly for Fortran-ordered masks: hand it C-ordered arrays
    out = watershed(
        np.ascontiguousarray(-dist), markers=np.ascontiguousarray(seeds), mask=np.ascontiguousarray(mask),
        connectivity=1,
    )
    return out.astype(seeds.dtype, copy=False)


def watershed_per_component(
    comps: np.ndarray,
    seeds: np.ndarray,
    voxel_size_nm: tuple[float, float, float],
) -> np.ndarray:
    """The seeded watershed of each mask component on its own: :func:`watershed_components` run on
    the component's bounding box grown by one voxel (clipped to the array), with only that
    component as the mask and only its seeds.

    ``comps`` are the 26-connected components of the mask (any ids, 0 = background). Flooding
    never leaves a component, and the distance to the background of a component's voxel is decided
    inside that box (along each axis the first voxel outside the component is background), so a
    component's labels depend on nothing outside it: not on the other components in the array
    (whose floods would otherwise break equal-distance ties differently) nor on where the array was
    cut, as long as the box fits. The work is the components' boxes, not the array.
    """
    import fastremap

    out = np.zeros(comps.shape, seeds.dtype)
    if not seeds.any():
        return out
    local, _ = fastremap.renumber(comps, preserve_zero=True)
    seeded = fastremap.unique(local[seeds != 0])
    boxes = cc3d.statistics(local)["bounding_boxes"]
    for k in seeded[seeded != 0]:
        box = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(boxes[int(k)], comps.shape, strict=True))
        m = local[box] == k
        ws = watershed_components(m, np.where(m, seeds[box], 0), voxel_size_nm)
        out[box][m] = ws[m]
    return out


def size_filter_relabel(labels: np.ndarray, min_size_vx: int) -> np.ndarray:
    """Drop ids with fewer than ``min_size_vx`` voxels; renumber the rest 1..n by first voxel in
    x-fastest raster order, as cc3d numbers components (uint64).

    >>> size_filter_relabel(np.array([[[5]], [[0]], [[3]], [[3]]]), 2).ravel().tolist()
    [0, 0, 1, 1]
    """
    import fastremap

    ids, counts = fastremap.unique(labels, return_counts=True)
    small = ids[(ids != 0) & (counts < min_size_vx)]
    out = fastremap.mask(labels, small) if len(small) else labels
    # fastremap.renumber numbers ids in the order it meets them in memory: Fortran = x fastest
    out, _ = fastremap.renumber(np.asfortranarray(out).astype(np.uint64), in_place=True, preserve_zero=True)
    return out.astype(np.uint64, copy=False)


def segment_volume(
    prob: np.ndarray,
    *,
    threshold: float,
    value_range: float,
    voxel_size_nm: tuple[float, float, float],
    min_size_vx: int,
    min_seed_vx: int = 10,
    opening: int = 1,
    closing: int = 1,
    erosions: int = 0,
    connectivity: Connectivity = 6,
) -> np.ndarray:
    """Whole-array organelle instances (uint64, 0 = background), the oracle for the blockwise run.

    Connected components when ``erosions == 0``, otherwise the seeded watershed, where a mask
    component (26-connected) left without a seed becomes one object. Objects smaller
    than ``min_size_vx`` voxels are dropped and ids are renumbered 1..n by first voxel.

    >>> p = np.zeros((12, 6, 4), np.uint8); p[1:5, 1:5, 1:3] = 255; p[7:11, 1:5, 1:3] = 255
    >>> lab = segment_volume(p, threshold=0.5, value_range=255, voxel_size_nm=(8, 8, 8),
    ...                      min_size_vx=1, opening=0, closing=0)
    >>> sorted(np.unique(lab).tolist()), int((lab == 2).sum())
    ([0, 1, 2], 32)
    """
    st = aniso_structure(voxel_size_nm)
    mask = foreground(prob, threshold, value_range, st, opening, closing)
    if erosions == 0:
        labels = label_components(mask, connectivity)
    else:
        seeds = label_components(erode(mask, st, erosions), connectivity)
        import fastremap

        ids, counts = fastremap.unique(seeds, return_counts=True)
        small = ids[(counts < min_seed_vx) & (ids != 0)]
        if len(small):
            seeds = fastremap.mask(seeds, small)
        # each mask component (26-connected) floods on its own; one without a surviving seed
        # becomes one object
        comps = label_components(mask, 26)
        labels = watershed_per_component(comps, seeds, voxel_size_nm)
        seeded = fastremap.unique(comps[seeds != 0])
        lut = np.arange(1, int(comps.max()) + 2, dtype=np.uint64) + np.uint64(labels.max())
        lut[0] = 0
        lut[seeded] = 0
        labels = np.where(labels == 0, lut[comps], labels)
    return size_filter_relabel(labels, min_size_vx)
