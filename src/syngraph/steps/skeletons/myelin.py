"""Myelin per skeleton node, and the path-window majority vote (reused by compartments).

Reference (SyConn ``map_myelin2coords`` + ``majorityvote_skeleton_property``): a node is
myelinated when more than half of the voxels of an 11x11x5 box at mag 4 (44x44x20 full-resolution
voxels) around it exceed half scale; then every node takes the majority label of all nodes within
10 um path length (ties go to the smallest label), stored as ``myelin_avg10000``.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

POOL_VX = (4, 4, 4)  # the reference evaluates the box on its mag-4 map


def pooled_fraction(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Fraction of voxels ``> threshold`` in each 4x4x4 cell (``prob`` must be a multiple of 4).

    >>> pooled_fraction(np.arange(64, dtype=np.uint8).reshape(4, 4, 4), 31.5).tolist()
    [[[0.5]]]
    """
    x, y, z = prob.shape
    px, py, pz = POOL_VX
    above = (prob > threshold).astype(np.float32)
    return above.reshape(x // px, px, y // py, py, z // pz, pz).mean(axis=(1, 3, 5))


def box_fraction(
    frac: np.ndarray, points_vx: np.ndarray, box_vx: tuple[int, int, int]
) -> np.ndarray:
    """Mean of ``frac`` (a pooled map) over a box of ``box_vx`` pooled voxels centred on each point.

    ``points_vx`` are integer coordinates in the pooled grid; boxes are clipped to the map.
    Uses a summed-area table, so the cost does not depend on the number of points.
    """
    sat = np.zeros(tuple(s + 1 for s in frac.shape), np.float64)
    sat[1:, 1:, 1:] = frac.cumsum(0).cumsum(1).cumsum(2)
    half = np.asarray(box_vx) // 2
    p = np.asarray(points_vx, np.int64).reshape(-1, 3)
    lo = np.clip(p - half, 0, np.asarray(frac.shape))
    hi = np.clip(p - half + np.asarray(box_vx), 0, np.asarray(frac.shape))
    (x0, y0, z0), (x1, y1, z1) = lo.T, hi.T
    s = (
        sat[x1, y1, z1] - sat[x0, y1, z1] - sat[x1, y0, z1] - sat[x1, y1, z0]
        + sat[x0, y0, z1] + sat[x0, y1, z0] + sat[x1, y0, z0] - sat[x0, y0, z0]
    )
    vol = np.prod(np.maximum(hi - lo, 0), axis=1)
    return np.where(vol > 0, s / np.maximum(vol, 1), 0.0)


def path_window_vote(
    nodes_nm: np.ndarray,
    edges: np.ndarray,
    values: np.ndarray,
    window_nm: float,
    *,
    max_block_elements: int = 20_000_000,
) -> np.ndarray:
    """Majority of ``values`` over all nodes within ``window_nm`` path length of each node.

    Path length is the Euclidean edge length summed along the skeleton (nodes in nm); a node's
    own value counts; ties go to the smallest value (as ``np.unique`` + ``argmax`` in the
    reference). ``values`` may be any discrete labels (bool, int, str); the result has their
    dtype. Nodes in different trees never vote for each other.

    >>> nodes = np.c_[np.arange(5.0) * 100, np.zeros(5), np.zeros(5)]
    >>> edges = np.c_[np.arange(4), np.arange(1, 5)]
    >>> path_window_vote(nodes, edges, np.array([1, 1, 0, 0, 0]), 150.0).tolist()
    [1, 1, 0, 0, 0]
    >>> path_window_vote(nodes, edges, np.array([1, 1, 0, 0, 0]), 1000.0).tolist()
    [0, 0, 0, 0, 0]
    """
    values = np.asarray(values)
    n = len(values)
    if n == 0:
        return values.copy()
    labels, codes = np.unique(values, return_inverse=True)
    codes = codes.reshape(-1)
    k = len(labels)
    onehot = np.zeros((n, k), np.float32)
    onehot[np.arange(n), codes] = 1.0
    e = np.asarray(edges, np.int64).reshape(-1, 2)
    w = np.linalg.norm(nodes_nm[e[:, 0]] - nodes_nm[e[:, 1]], axis=1) + 1e-9
    g = coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    out = np.empty(n, np.int64)
    chunk = max(1, max_block_elements // n)
    for start in range(0, n, chunk):
        idx = np.arange(start, min(n, start + chunk))
        d = dijkstra(g, directed=False, indices=idx, limit=window_nm * (1 + 1e-9))
        counts = np.isfinite(d).astype(np.float32) @ onehot
        out[idx] = np.argmax(counts, axis=1)  # first maximum = smallest label
    return labels[out]
