"""Exact joins of block pieces: vertices that coincide on a shared block face become one.

Neighbouring blocks' trace regions share one voxel plane, and kimimaro's border targets put a
path end at the same voxel of that plane in both blocks (:mod:`.teasar`). Joining is therefore
an identity of integer voxel coordinates, never a nearest-node search: no edge is added that
kimimaro did not trace. A loop that closes across blocks (a ring cut by a face twice, or two
paths running along a shared plane) is broken by a minimum spanning forest over edge lengths, so
every connected component is a tree (see :func:`spanning_forest`).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree

from syngraph.skeleton import Forest, components, edge_lengths


def spanning_forest(nodes_nm: np.ndarray, edges: np.ndarray, radius_nm: np.ndarray) -> np.ndarray:
    """A spanning forest that keeps the thickest edges; ``edges`` unchanged if already a forest.

    A loop closed across blocks is a doubled route, one side of which runs off-centre near a
    block face; cutting each loop at its thinnest edge (smallest radius of the two end nodes)
    leaves the off-centre side as two short dangling branches that tick removal then deletes.
    """
    n = len(nodes_nm)
    e = np.asarray(edges, np.int64).reshape(-1, 2)
    if len(e) == 0 or len(e) < n and _is_forest(n, e):
        return e
    r = np.minimum(radius_nm[e[:, 0]], radius_nm[e[:, 1]]).astype(np.float64)
    w = (r.max() + 1.0 - r) + 1e-6 * edge_lengths(nodes_nm, e)  # > 0: zero means "no edge"
    g = coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    t = minimum_spanning_tree(g).tocoo()
    out = np.stack([t.row, t.col], 1).astype(np.int64)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def _is_forest(n: int, edges: np.ndarray) -> bool:
    ncomp = int(components(n, edges).max()) + 1 if n else 0
    return len(edges) == n - ncomp


def join_pieces(
    vertex_vx: np.ndarray,
    parent: np.ndarray,
    radius_nm: np.ndarray,
    piece_key: np.ndarray,
    piece_vx: np.ndarray,
    spacing_nm: tuple[float, float, float],
    attrs: dict[str, np.ndarray] | None = None,
) -> tuple[Forest, np.ndarray]:
    """Join the block pieces of one cell into one forest.

    Parameters
    ----------
    vertex_vx : (n, 3) global integer voxel coordinates at skeleton resolution (all blocks).
    parent : (n,) row index of each vertex's parent in these arrays, -1 for a root.
    radius_nm : (n,) radius per vertex; coinciding vertices keep the largest.
    piece_key : (n,) id of the (block, piece) a vertex came from.
    piece_vx : (n,) voxel count of that piece.
    spacing_nm : size of one voxel at skeleton resolution, in nm.
    attrs : further per-vertex values; coinciding vertices keep the largest.

    Returns
    -------
    (forest, component_vx): the joined forest (nodes in nm, sorted by voxel coordinate) and,
    per node, the summed voxel count of all pieces in its tree (the dust criterion).

    Examples
    --------
    Two blocks that each traced half of a line meet at voxel x=2:

    >>> v = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [2, 0, 0], [3, 0, 0]])
    >>> f, cvx = join_pieces(v, np.array([-1, 0, 1, -1, 3]), np.ones(5, np.float32),
    ...                      np.array([0, 0, 0, 1, 1]), np.array([3, 3, 3, 2, 2]), (1.0, 1.0, 1.0))
    >>> f.edges.tolist(), cvx.tolist()
    ([[0, 1], [1, 2], [2, 3]], [5, 5, 5, 5])
    """
    v = np.asarray(vertex_vx, np.int64).reshape(-1, 3)
    uniq, inverse = np.unique(v, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    m = len(uniq)
    radius = np.zeros(m, np.float32)
    np.maximum.at(radius, inverse, np.asarray(radius_nm, np.float32))
    merged_attrs: dict[str, np.ndarray] = {}
    for k, a in (attrs or {}).items():
        a = np.asarray(a)
        out = np.full(m, np.iinfo(a.dtype).min if a.dtype.kind in "iu" else -np.inf, a.dtype)
        if a.dtype == bool:
            out = np.zeros(m, bool)
            np.logical_or.at(out, inverse, a)
        else:
            np.maximum.at(out, inverse, a)
        merged_attrs[k] = out
    has_parent = np.asarray(parent) >= 0
    e = np.stack([inverse[has_parent], inverse[np.asarray(parent)[has_parent]]], 1)
    e = e[e[:, 0] != e[:, 1]]
    e = np.sort(e, axis=1)
    e = np.unique(e, axis=0) if len(e) else e.reshape(0, 2)
    nodes_nm = uniq * np.asarray(spacing_nm, np.float64)
    e = spanning_forest(nodes_nm, e, radius)
    comp = components(m, e)
    # voxel count per tree: each (block, piece) counted once
    keys, first = np.unique(np.asarray(piece_key), return_index=True)
    comp_vx = np.zeros(int(comp.max()) + 1 if m else 0, np.int64)
    np.add.at(comp_vx, comp[inverse[first]], np.asarray(piece_vx, np.int64)[first])
    return Forest(nodes_nm, e, radius, merged_attrs), comp_vx[comp]
