"""Node features of one cell's skeleton (pure functions on arrays, nm throughout).

The feature columns are :data:`syngraph.models.compartments.SHAPE_FEATURES`,
``ORGANELLE_FEATURES`` and ``CONTEXT_FEATURES``, in that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from syngraph.models.compartments import CONTEXT_WINDOWS_NM
from syngraph.steps import path_windows

THICK_NM = 250.0  # radius of a "thick trunk" node (dendritic shafts and somata are thicker)
RADIUS_WINDOW_NM = 150.0  # path window of the node radius (against voxel steps)
SHAPE_WINDOWS_NM = (1000.0, 5000.0)  # path windows of the radius statistics
PAIRS_WINDOW_NM = max(RADIUS_WINDOW_NM, *SHAPE_WINDOWS_NM, *CONTEXT_WINDOWS_NM)  # every path window used here


@dataclass(frozen=True)
class Tree:
    """A cell's skeleton graph: nodes (n, 3) nm, parent (n,) (-1 roots, parents first), radius."""

    nodes_nm: np.ndarray
    parent: np.ndarray
    radius_nm: np.ndarray

    @property
    def edges(self) -> np.ndarray:
        has = self.parent >= 0
        return np.stack([np.flatnonzero(has), self.parent[has]], 1)

    @property
    def edge_nm(self) -> np.ndarray:
        e = self.edges
        return np.linalg.norm(self.nodes_nm[e[:, 0]] - self.nodes_nm[e[:, 1]], axis=1)

    @cached_property
    def edge_weight_nm(self) -> np.ndarray:
        """Edge lengths as path searches weigh them (+1e-6 nm: no zero-length edge)."""
        return self.edge_nm + 1e-6

    def graph(self) -> csr_matrix:
        e, n = self.edges, len(self.parent)
        return coo_matrix((self.edge_weight_nm, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()

    def degree(self) -> np.ndarray:
        e = self.edges
        return np.bincount(e.ravel(), minlength=len(self.parent))

    @cached_property
    def window_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(node, node, path nm) of every pair within :data:`PAIRS_WINDOW_NM` (edges weighed by
        :attr:`edge_weight_nm`, as :meth:`graph`), walked once per cell for all of its path windows."""
        n = len(self.parent)
        return path_windows.window_pairs(self.edges, self.edge_weight_nm, n, np.arange(n),
                                         PAIRS_WINDOW_NM * (1 + 1e-9))

    def node_cable_nm(self) -> np.ndarray:
        """Half the length of each incident edge: the cable a node stands for."""
        e, w = self.edges, self.edge_nm / 2
        return np.bincount(e[:, 0], w, len(self.parent)) + np.bincount(e[:, 1], w, len(self.parent))


def window_means(tree: Tree, values: np.ndarray, windows_nm: tuple[float, ...]) -> list[np.ndarray]:
    """Mean of ``values`` (n, k) over all nodes within each path window of every node
    (:func:`syngraph.steps.path_windows.window_means` on :attr:`Tree.window_pairs`).

    >>> t = Tree(np.c_[np.arange(4.0) * 100, np.zeros(4), np.zeros(4)], np.array([-1, 0, 1, 2]), np.ones(4))
    >>> window_means(t, np.array([[0.0], [0], [0], [4]]), (150.0,))[0].ravel().tolist()
    [0.0, 0.0, 1.3333333333333333, 2.0]
    """
    if max(windows_nm) > PAIRS_WINDOW_NM:
        raise ValueError(f"path window {max(windows_nm)} nm exceeds PAIRS_WINDOW_NM {PAIRS_WINDOW_NM}")
    values = np.asarray(values, np.float64).reshape(len(tree.parent), -1)
    return path_windows.window_means(tree.window_pairs, values, windows_nm)


def path_to(tree: Tree, sources: np.ndarray) -> np.ndarray:
    """Path length (nm) from every node to the nearest of ``sources`` (inf where unreachable)."""
    sources = np.flatnonzero(sources) if sources.dtype == bool else np.asarray(sources)
    if sources.size == 0:
        return np.full(len(tree.parent), np.inf)
    return dijkstra(tree.graph(), directed=False, indices=sources, min_only=True)


def branch_order(tree: Tree) -> np.ndarray:
    """Branch points passed on the way from each tree's root (its thickest node) to the node."""
    deg = tree.degree()
    out = np.zeros(len(tree.parent), np.int64)
    par = tree.parent
    for i in range(len(par)):  # parents come first
        p = par[i]
        if p >= 0:
            out[i] = out[p] + int(deg[p] >= 3)
    return out


def terminal_branches(tree: Tree) -> tuple[np.ndarray, np.ndarray]:
    """(length of the terminal branch each node lies on (0 elsewhere), path to the branch's tip
    / that length). A terminal branch: the nodes of degree <= 2 from a tip to a branch point,
    plus the edge to the branch point; a tree that is one path is one terminal branch."""
    n = len(tree.parent)
    deg = tree.degree()
    chain = deg <= 2
    e = tree.edges
    inner = chain[e[:, 0]] & chain[e[:, 1]]
    g = coo_matrix((np.ones(int(inner.sum())), (e[inner, 0], e[inner, 1])), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    tips = deg <= 1
    has_tip = np.bincount(comp[tips], minlength=comp.max() + 1 if n else 0) > 0
    # branch length: edges inside the component plus edges from it to a branch point
    w = tree.edge_nm
    length = np.zeros(comp.max() + 1 if n else 0)
    np.add.at(length, comp[e[inner, 0]], w[inner])
    out_edge = chain[e[:, 0]] ^ chain[e[:, 1]]
    ends = np.where(chain[e[out_edge, 0]], e[out_edge, 0], e[out_edge, 1])
    np.add.at(length, comp[ends], w[out_edge])
    on = chain & has_tip[comp]
    blen = np.where(on, length[comp], 0.0)
    sub = tree.graph().multiply(coo_matrix((np.ones(int(inner.sum())), (e[inner, 0], e[inner, 1])),
                                           shape=(n, n)).tocsr() > 0)
    to_tip = dijkstra(sub, directed=False, indices=np.flatnonzero(tips), min_only=True) \
        if tips.any() else np.full(n, np.inf)
    pos = np.where(on & np.isfinite(to_tip), to_tip / np.maximum(blen, 1.0), 0.0)
    return blen, np.clip(pos, 0.0, 1.0)


def ball_sums(points_nm: np.ndarray, centres_nm: np.ndarray, weights: np.ndarray, r_nm: float) -> np.ndarray:
    """Sum of ``weights`` of ``points_nm`` within ``r_nm`` (Euclidean) of each centre."""
    if len(points_nm) == 0 or len(centres_nm) == 0:
        return np.zeros(len(centres_nm))
    m = cKDTree(centres_nm).sparse_distance_matrix(cKDTree(points_nm), r_nm, output_type="coo_matrix")
    return np.bincount(m.row, np.asarray(weights, np.float64)[m.col], len(centres_nm))


def shape_features(tree: Tree, myelin: np.ndarray | None = None) -> np.ndarray:
    """:data:`~syngraph.models.compartments.SHAPE_FEATURES` per node, (n, 15).

    The node's radius is its mean over :data:`RADIUS_WINDOW_NM` of path: skeleton radii step by
    whole voxels, which on a thin neurite at coarse voxels (16 x 16 x 40 nm) is a quarter of the
    radius from node to node, and every bulge feature would measure voxel steps.
    """
    r0 = np.maximum(np.asarray(tree.radius_nm, np.float64), 1.0)
    my = np.zeros(len(r0)) if myelin is None else np.asarray(myelin, np.float64)
    r = window_means(tree, r0, (RADIUS_WINDOW_NM,))[0][:, 0]
    w1, w5 = window_means(tree, np.c_[r, r * r, my], SHAPE_WINDOWS_NM)
    r1, r5 = w1[:, 0], w5[:, 0]
    cv5 = np.sqrt(np.maximum(w5[:, 1] - r5 ** 2, 0.0)) / r5
    roots = tree.parent < 0
    to_root = path_to(tree, roots)
    to_thick = path_to(tree, r1 >= THICK_NM)
    blen, pos = terminal_branches(tree)
    cable = ball_sums(tree.nodes_nm, tree.nodes_nm, tree.node_cable_nm() / 1000, 2000.0)
    cap = 1e5  # 100 um stands for "none reachable"
    return np.c_[
        np.log10(r), np.log10(r1), np.log10(r5), r / r1, r / r5, cv5, r / r.max(),
        np.log10(1 + np.minimum(to_thick, cap)), np.log10(1 + np.minimum(to_root, cap)),
        branch_order(tree), tree.degree(), np.log10(1 + blen), pos, np.log10(1 + cable), w5[:, 2],
    ]


def organelle_features(tree: Tree, organelles: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """:data:`~syngraph.models.compartments.ORGANELLE_FEATURES` per node, (n, 4).

    ``organelles``: layer -> (centres (m, 3) nm, volume (m,) um3) of the cell's organelles
    (for ``sj``: the junctions touching the cell).
    """
    cable_um = ball_sums(tree.nodes_nm, tree.nodes_nm, tree.node_cable_nm() / 1000, 1000.0)
    cable_um = np.maximum(cable_um, 0.1)

    def near(layer: str, r_nm: float, count: bool = False) -> np.ndarray:
        pts, vol = organelles.get(layer, (np.zeros((0, 3)), np.zeros(0)))
        return ball_sums(pts, tree.nodes_nm, np.ones(len(vol)) if count else vol, r_nm)

    return np.c_[near("mi", 1000.0) / cable_um, near("vc", 1000.0) / cable_um,
                 near("sj", 1000.0, count=True) / cable_um, near("vc", 500.0)]


def context_features(tree: Tree, prob: np.ndarray) -> np.ndarray:
    """:data:`~syngraph.models.compartments.CONTEXT_FEATURES`: class probabilities averaged over
    each path window of :data:`CONTEXT_WINDOWS_NM`."""
    return np.concatenate(window_means(tree, prob, CONTEXT_WINDOWS_NM), axis=1)
