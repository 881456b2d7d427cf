"""Exact global ids across blocks: provisional ids, face equivalences, csgraph resolution.

Each block labels its core independently and stores *provisional* ids ``(block_id + 1) << 32 | local``
(unique across blocks without knowing the other blocks' counts). Objects that touch across a block
face are merged: :func:`face_pairs` lists the provisional id pairs that are neighbours (for the
configured connectivity) across one face, and :func:`resolve` joins them with
``scipy.sparse.csgraph.connected_components``, sums the pieces' sizes, drops merged objects under the
minimum size and numbers the rest 1..n in order of their smallest provisional id (deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOCAL_BITS = 32


def provisional(labels: np.ndarray, block_id: int) -> np.ndarray:
    """Block-local ids (0 = background) -> provisional uint64 ids unique across blocks.

    >>> provisional(np.array([0, 1, 2], np.uint32), 0).tolist()
    [0, 4294967297, 4294967298]
    """
    out = labels.astype(np.uint64)
    nz = out != 0
    out[nz] |= np.uint64((block_id + 1) << LOCAL_BITS)
    return out


def _shifts(connectivity: int) -> list[tuple[int, int]]:
    s = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]
    if connectivity == 6:
        return [(0, 0)]
    if connectivity == 18:
        return [(a, b) for a, b in s if abs(a) + abs(b) <= 1]
    return s


def face_pairs(slab: np.ndarray, axis: int, connectivity: int) -> np.ndarray:
    """Pairs (k, 2) of non-zero ids that are neighbours across the face between the two planes
    of ``slab`` (shape 2 along ``axis``).

    >>> s = np.zeros((2, 3, 1), np.uint64); s[0, 0, 0] = 5; s[1, 1, 0] = 9
    >>> face_pairs(s, 0, 6).tolist(), face_pairs(s, 0, 26).tolist()
    ([], [[5, 9]])
    """
    a = np.moveaxis(slab, axis, 0)
    p0, p1 = a[0], a[1]
    n0, n1 = p0.shape
    out = []
    for d0, d1 in _shifts(connectivity):
        s0 = (slice(max(0, -d0), n0 - max(0, d0)), slice(max(0, -d1), n1 - max(0, d1)))
        s1 = (slice(max(0, d0), n0 - max(0, -d0)), slice(max(0, d1), n1 - max(0, -d1)))
        u, v = p0[s0], p1[s1]
        m = (u != 0) & (v != 0)
        if m.any():
            out.append(np.stack([u[m], v[m]], axis=1))
    if not out:
        return np.zeros((0, 2), np.uint64)
    pairs = np.concatenate(out).astype(np.uint64)
    return np.unique(pairs, axis=0)


@dataclass(frozen=True)
class Resolved:
    """Result of :func:`resolve`: provisional id -> final id (0 = dropped), and per final id
    (index i is id i + 1) its size and bounding box."""

    src: np.ndarray  # uint64, sorted provisional ids
    dst: np.ndarray  # uint64 final ids (0 = dropped)
    size_vx: np.ndarray  # int64 per final id
    bbox_min: np.ndarray  # (n, 3) int64
    bbox_max: np.ndarray  # (n, 3) int64


def resolve(
    ids: np.ndarray,
    sizes: np.ndarray,
    pairs: np.ndarray,
    min_size_vx: int = 0,
    bbox_min: np.ndarray | None = None,
    bbox_max: np.ndarray | None = None,
) -> Resolved:
    """Merge pieces (provisional ``ids`` with their ``sizes``) joined by ``pairs`` into objects.

    Objects with a merged size under ``min_size_vx`` map to 0; the others get ids 1..n ordered by
    their smallest provisional id.

    >>> r = resolve(np.array([10, 11, 20], np.uint64), np.array([3, 4, 2]), np.array([[20, 10]], np.uint64), 4)
    >>> r.src.tolist(), r.dst.tolist(), r.size_vx.tolist()
    ([10, 11, 20], [1, 2, 1], [5, 4])
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids = np.asarray(ids, np.uint64)
    order = np.argsort(ids, kind="stable")
    src = ids[order]
    if len(src) and np.any(src[1:] == src[:-1]):
        raise ValueError("resolve: provisional ids are not unique")
    sizes = np.asarray(sizes, np.int64)[order]
    n = len(src)
    if bbox_min is None:
        bbox_min = np.zeros((len(ids), 3), np.int64)
        bbox_max = np.zeros((len(ids), 3), np.int64)
    bmin = np.asarray(bbox_min, np.int64)[order]
    bmax = np.asarray(bbox_max, np.int64)[order]
    pairs = np.asarray(pairs, np.uint64).reshape(-1, 2)
    if len(pairs):
        ia = np.searchsorted(src, pairs[:, 0])
        ib = np.searchsorted(src, pairs[:, 1])
        if (ia >= n).any() or (ib >= n).any() or (src[np.minimum(ia, n - 1)] != pairs[:, 0]).any() or (
            src[np.minimum(ib, n - 1)] != pairs[:, 1]
        ).any():
            raise ValueError("resolve: a face pair names an id that no block reported")
    else:
        ia = ib = np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(ia), np.int8), (ia, ib)), shape=(n, n)).tocsr()
    _, comp = connected_components(graph, directed=False)
    # number components by their smallest member (src is sorted, so by first index)
    first = np.full(comp.max() + 1 if n else 0, n, np.int64)
    np.minimum.at(first, comp, np.arange(n))
    rank = np.empty_like(first)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    obj = rank[comp]
    n_obj = len(first)
    size = np.bincount(obj, weights=sizes, minlength=n_obj).astype(np.int64)
    omin = np.full((n_obj, 3), np.iinfo(np.int64).max, np.int64)
    omax = np.full((n_obj, 3), np.iinfo(np.int64).min, np.int64)
    for ax in range(3):
        np.minimum.at(omin[:, ax], obj, bmin[:, ax])
        np.maximum.at(omax[:, ax], obj, bmax[:, ax])
    keep = size >= min_size_vx
    final = np.zeros(n_obj, np.uint64)
    final[keep] = np.arange(1, keep.sum() + 1, dtype=np.uint64)
    return Resolved(src, final[obj], size[keep], omin[keep], omax[keep])
