"""The skeleton data type and what every reader, writer and step needs of it.

A :class:`Forest` is a skeleton as nodes in nm (XYZ) and undirected edges; :func:`orient`
puts it in tree order (parents before children) and :func:`stats` measures it. Storage
(:mod:`syngraph.skeleton_io`) and the skeletons step (:mod:`syngraph.steps.skeletons`) both
build on this module; it knows no skeletonization algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components


@dataclass(frozen=True)
class Forest:
    """A skeleton as a forest: ``edges`` index ``nodes``; ``component`` numbers the trees."""

    nodes_nm: np.ndarray  # (n, 3) float64
    edges: np.ndarray  # (e, 2) int64
    radius_nm: np.ndarray  # (n,) float32
    attrs: dict[str, np.ndarray]  # per-node attributes, each (n,)

    def __len__(self) -> int:
        return int(self.nodes_nm.shape[0])

    def subset(self, keep: np.ndarray, edges: np.ndarray | None = None) -> Forest:
        """The nodes where ``keep`` is true; ``edges`` (old indices) default to the induced ones."""
        keep = np.asarray(keep, bool)
        new_index = np.cumsum(keep) - 1
        e = self.edges if edges is None else np.asarray(edges, np.int64).reshape(-1, 2)
        e = e[keep[e[:, 0]] & keep[e[:, 1]]] if len(e) else e
        return Forest(
            self.nodes_nm[keep],
            new_index[e].reshape(-1, 2),
            self.radius_nm[keep],
            {k: v[keep] for k, v in self.attrs.items()},
        )


def edge_lengths(nodes_nm: np.ndarray, edges: np.ndarray) -> np.ndarray:
    if len(edges) == 0:
        return np.zeros(0)
    return np.linalg.norm(nodes_nm[edges[:, 0]] - nodes_nm[edges[:, 1]], axis=1)


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected component label of every node (labels in order of first node)."""
    if n == 0:
        return np.zeros(0, np.int64)
    e = np.asarray(edges, np.int64).reshape(-1, 2)
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    return comp.astype(np.int64)


def degrees(n: int, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.asarray(edges, np.int64).reshape(-1), minlength=n)


def volume_hi_nm(shape_vx: tuple[int, ...], voxel_size_nm: tuple[float, ...]) -> np.ndarray:
    """The far corner of a volume in nm (XYZ): the centre of its last voxel.

    >>> volume_hi_nm((512, 512, 256), (8.0, 8.0, 40.0))
    array([ 4088.,  4088., 10200.])
    """
    return (np.asarray(shape_vx, np.float64) - 1) * np.asarray(voxel_size_nm, np.float64)


def orient(forest: Forest, priority: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tree order of a forest: ``(order, parent)`` with parents before children.

    Each tree is rooted at its node of highest ``priority`` (default: the largest radius, the
    soma for a neuron); ``order`` lists node indices tree by tree (trees by their smallest node
    index) in breadth-first order; ``parent[i]`` is the parent of node ``i`` (-1 for roots).
    """
    n = len(forest)
    parent = np.full(n, -1, np.int64)
    if n == 0:
        return np.zeros(0, np.int64), parent
    pr = forest.radius_nm if priority is None else priority
    comp = components(n, forest.edges)
    # root per tree: highest priority, ties to the lowest index
    idx = np.lexsort((np.arange(n), -np.asarray(pr, np.float64), comp))
    first = np.r_[True, comp[idx][1:] != comp[idx][:-1]]
    roots = idx[first]
    roots = roots[np.argsort(comp[roots])]
    e = forest.edges
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    orders = []
    for r in roots.tolist():
        o, pred = breadth_first_order(g, r, directed=False, return_predecessors=True)
        parent[o[1:]] = pred[o[1:]]
        orders.append(o)
    return np.concatenate(orders).astype(np.int64), parent


def cable_length_nm(forest: Forest) -> float:
    return float(edge_lengths(forest.nodes_nm, forest.edges).sum())


@dataclass(frozen=True)
class SkeletonStats:
    cable_length_um: float
    n_branch_points: int
    n_tips: int
    n_nodes: int
    n_trees: int


def stats(forest: Forest) -> SkeletonStats:
    n = len(forest)
    deg = degrees(n, forest.edges)
    ntrees = int(components(n, forest.edges).max()) + 1 if n else 0
    return SkeletonStats(
        cable_length_um=cable_length_nm(forest) / 1000.0,
        n_branch_points=int((deg >= 3).sum()),
        n_tips=int((deg == 1).sum()),
        n_nodes=n,
        n_trees=ntrees,
    )
