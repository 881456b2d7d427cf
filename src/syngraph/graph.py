"""Pure graph helpers on uint64 edge lists: components, bounding-box sizes, pruning, min cuts.

Every function takes numpy arrays and returns numpy arrays. Supervoxel ids stay uint64; they are
renumbered to dense integers only internally, for :mod:`scipy.sparse.csgraph` (no Python object
is ever built per node or edge, so 1e8 edges fit in a few GB).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph


def edge_array(table: Any, a: str = "sv_a", b: str = "sv_b") -> np.ndarray:
    """The ``(m, 2)`` uint64 edge list in columns ``a``, ``b`` of a pyarrow table."""
    return np.stack([table.column(a).to_numpy(), table.column(b).to_numpy()], 1).astype(np.uint64)


def map_to_cells(sv_ids: np.ndarray, sv_table: np.ndarray, cell_table: np.ndarray) -> np.ndarray:
    """Cell id of each supervoxel (0 where the supervoxel is in no cell); tables sorted by sv id.

    >>> map_to_cells(np.array([5, 2, 9], np.uint64), np.array([2, 5], np.uint64), np.array([7, 8], np.uint64)).tolist()
    [8, 7, 0]
    """
    if len(sv_table) == 0:
        return np.zeros(len(sv_ids), np.uint64)
    pos = np.clip(np.searchsorted(sv_table, sv_ids), 0, len(sv_table) - 1)
    hit = sv_table[pos] == sv_ids
    return np.where(hit, cell_table[pos], 0).astype(np.uint64)


def normalize_edges(edges: np.ndarray) -> np.ndarray:
    """Edges as a sorted ``(m, 2)`` uint64 array with ``a < b``, no self edges, no duplicates.

    >>> normalize_edges(np.array([[3, 1], [1, 3], [2, 2], [1, 2]], np.uint64)).tolist()
    [[1, 2], [1, 3]]
    """
    e = np.asarray(edges, dtype=np.uint64).reshape(-1, 2)
    lo = np.minimum(e[:, 0], e[:, 1])
    hi = np.maximum(e[:, 0], e[:, 1])
    keep = lo != hi
    lo, hi = lo[keep], hi[keep]
    out = np.empty((lo.size, 2), np.uint64)
    out[:, 0], out[:, 1] = lo, hi
    if out.size == 0:
        return out
    return np.unique(out, axis=0) if out.shape[0] < 2**20 else _unique_rows(out)


def _unique_rows(e: np.ndarray) -> np.ndarray:
    order = np.lexsort((e[:, 1], e[:, 0]))
    e = e[order]
    keep = np.ones(e.shape[0], bool)
    keep[1:] = (e[1:, 0] != e[:-1, 0]) | (e[1:, 1] != e[:-1, 1])
    return e[keep]


def renumber(edges: np.ndarray, nodes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dense integer edges and the sorted uint64 ids they index.

    Returns ``(dense, ids)`` with ``ids[dense] == edges``; ``dense`` is int32 when the node count
    allows it (half the memory of int64), else int64. ``nodes`` adds isolated nodes.

    >>> d, ids = renumber(np.array([[10, 30]], np.uint64), nodes=np.array([20], np.uint64))
    >>> d.tolist(), ids.tolist()
    ([[0, 2]], [10, 20, 30])
    """
    e = np.asarray(edges, dtype=np.uint64).reshape(-1, 2)
    extra = np.zeros(0, np.uint64) if nodes is None else np.asarray(nodes, dtype=np.uint64).ravel()
    flat = e.ravel() if extra.size == 0 else np.concatenate([e.ravel(), extra])
    # a stable (radix) argsort + run ranks: several times faster than np.unique + searchsorted
    order = np.argsort(flat, kind="stable")
    srt = flat[order]
    if extra.size:
        del flat
    new = np.empty(srt.size, bool)
    new[:1] = True
    np.not_equal(srt[1:], srt[:-1], out=new[1:])
    ids = srt[new]
    del srt
    itype = np.int32 if ids.size < 2**31 - 1 else np.int64
    rank = np.cumsum(new, dtype=itype)
    rank -= 1
    del new
    inverse = np.empty(rank.size, itype)
    inverse[order] = rank
    del order, rank
    dense = inverse[: e.size].reshape(-1, 2)
    return dense, ids


def _csr(dense: np.ndarray, n: int, weights: np.ndarray | None = None) -> sparse.csr_array:
    data = np.ones(dense.shape[0], np.int8) if weights is None else weights
    return sparse.csr_array((data, (dense[:, 0], dense[:, 1])), shape=(n, n))


def connected_components(
    edges: np.ndarray, nodes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Components of an undirected graph given as uint64 id pairs.

    Parameters
    ----------
    edges : (m, 2) integer array of node id pairs (self edges and duplicates are harmless).
    nodes : optional ids of nodes that may have no edge (each becomes its own component).

    Returns
    -------
    ids : sorted uint64 node ids (every node of ``edges`` and ``nodes``).
    component : uint64, the smallest id of each node's component (stable, deterministic).

    >>> ids, comp = connected_components(np.array([[5, 3], [7, 8]], np.uint64), np.array([1], np.uint64))
    >>> ids.tolist(), comp.tolist()
    ([1, 3, 5, 7, 8], [1, 3, 3, 7, 7])
    """
    dense, ids = renumber(edges, nodes)
    n = ids.size
    if n == 0:
        return ids, ids.copy()
    graph = _csr(dense, n)
    del dense
    _, labels = csgraph.connected_components(graph, directed=True, connection="weak")
    del graph
    return ids, component_min_id(ids, labels)


def component_min_id(ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For every node, the smallest id among the nodes sharing its label (ids sorted ascending)."""
    ncomp = int(labels.max()) + 1 if labels.size else 0
    first = np.full(ncomp, labels.size, np.int64)
    np.minimum.at(first, labels, np.arange(labels.size, dtype=np.int64))
    return ids[first[labels]]


def group_reduce_bbox(
    group: np.ndarray, bbox_min: np.ndarray, bbox_max: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Union of bounding boxes per group.

    Returns ``(groups, gmin, gmax)``: sorted unique group ids and the (k, 3) union boxes.
    """
    order = np.argsort(group, kind="stable")
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if g.size else np.zeros(0, np.int64)
    gmin = np.minimum.reduceat(bbox_min[order], starts, axis=0) if g.size else bbox_min[:0]
    gmax = np.maximum.reduceat(bbox_max[order], starts, axis=0) if g.size else bbox_max[:0]
    return g[starts], gmin, gmax


def bbox_diagonal_nm(
    bbox_min: np.ndarray, bbox_max: np.ndarray, voxel_size_nm: tuple[float, float, float]
) -> np.ndarray:
    """L2 length of ``(bbox_max - bbox_min) * voxel_size_nm`` per row (max exclusive, in nm).

    >>> bbox_diagonal_nm(np.array([[0, 0, 0]]), np.array([[3, 4, 0]]), (1.0, 1.0, 1.0)).tolist()
    [5.0]
    """
    ext = (np.asarray(bbox_max, np.float64) - np.asarray(bbox_min, np.float64)) * np.asarray(
        voxel_size_nm, np.float64
    )
    return np.sqrt((ext**2).sum(axis=1))


def group_diagonal_nm(
    group: np.ndarray,
    bbox_min: np.ndarray,
    bbox_max: np.ndarray,
    voxel_size_nm: tuple[float, float, float],
) -> np.ndarray:
    """Per node: the bbox diagonal (nm) of the union of its group's member boxes."""
    groups, gmin, gmax = group_reduce_bbox(group, bbox_min, bbox_max)
    diag = bbox_diagonal_nm(gmin, gmax, voxel_size_nm)
    return diag[np.searchsorted(groups, group)]


def induced_components(
    ids: np.ndarray, edges: np.ndarray, member: np.ndarray
) -> np.ndarray:
    """Components of the subgraph induced by ``member`` (bool per id in sorted ``ids``).

    Returns a uint64 component id (smallest member id) per node; non-members get 0.
    """
    e = np.asarray(edges, np.uint64).reshape(-1, 2)
    ia = np.searchsorted(ids, e[:, 0])
    ib = np.searchsorted(ids, e[:, 1])
    keep = member[ia] & member[ib]
    sub_ids, comp = connected_components(e[keep], ids[member])
    out = np.zeros(ids.size, np.uint64)
    out[member] = comp  # ids[member] is sorted, like sub_ids
    assert np.array_equal(sub_ids, ids[member])
    return out


def min_cut(
    edges: np.ndarray, source: int, sink: int, capacity: np.ndarray | None = None
) -> np.ndarray:
    """Edges of a minimum cut separating ``source`` from ``sink`` (uint64 pairs, a < b).

    ``capacity`` (positive int per edge, default 1) weighs the edges, e.g. by contact area, so
    the cut prefers small contacts. Returns an empty array when the two are not connected.
    """
    e = normalize_edges(edges) if capacity is None else np.asarray(edges, np.uint64).reshape(-1, 2)
    cap = np.ones(e.shape[0], np.int32) if capacity is None else np.asarray(capacity, np.int32)
    dense, ids = renumber(e, np.array([source, sink], np.uint64))
    n = ids.size
    s, t = np.searchsorted(ids, [source, sink])
    both = np.concatenate([dense, dense[:, ::-1]])
    graph = sparse.csr_matrix(
        (np.concatenate([cap, cap]), (both[:, 0], both[:, 1])), shape=(n, n)
    )
    graph.sum_duplicates()
    flow = csgraph.maximum_flow(graph, int(s), int(t))
    if flow.flow_value == 0:
        return np.zeros((0, 2), np.uint64)
    residual = graph - flow.flow
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    reach = csgraph.breadth_first_order(residual, int(s), directed=True, return_predecessors=False)
    side = np.zeros(n, bool)
    side[reach] = True
    cut = side[dense[:, 0]] != side[dense[:, 1]]
    return normalize_edges(e[cut])
