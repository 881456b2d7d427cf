"""Path windows on skeleton forests: every node within a path length of each node, as sparse pairs.

A dense ``dijkstra(..., limit=)`` from every node costs n x n per cell (an ``inf``-filled row per
source, then masks and a dense product over it): quadratic in the nodes of the largest cell. On a
forest the path between two nodes is unique, so a breadth-first walk outward from all sources at
once, never stepping back to the node it came from, finds the same nodes; each distance is summed
from the source outward, as dijkstra sums it, so the distances are the same floats. The work is
the number of pairs (about window / edge length per node and branch), not n squared.
"""

from __future__ import annotations

import numpy as np


def _adjacency(edges: np.ndarray, weights: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, neighbour, weight) of the undirected graph, CSR by node."""
    a = np.r_[edges[:, 0], edges[:, 1]]
    order = np.argsort(a, kind="stable")
    nbr = np.r_[edges[:, 1], edges[:, 0]][order]
    w = np.r_[weights, weights][order]
    return np.r_[0, np.cumsum(np.bincount(a, minlength=n))], nbr, w


def window_pairs(edges: np.ndarray, weights: np.ndarray, n: int, sources: np.ndarray, limit: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, node, path length) of every node within ``limit`` path length of each source
    (itself included, at 0), on a forest of ``n`` nodes with ``edges`` (m, 2) of ``weights`` > 0.

    >>> e = np.array([[1, 0], [2, 1], [3, 1]])
    >>> s, v, d = window_pairs(e, np.array([1.0, 2.0, 5.0]), 4, np.array([0]), 3.0)
    >>> sorted(zip(v.tolist(), d.tolist()))
    [(0, 0.0), (1, 1.0), (2, 3.0)]
    """
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    indptr, nbr, wt = _adjacency(edges, np.asarray(weights, np.float64), n)
    src = np.asarray(sources, np.int64)
    cur, came, dist = src, np.full(src.size, -1, np.int64), np.zeros(src.size)
    parts = [(src, cur, dist)]
    while cur.size:
        deg = indptr[cur + 1] - indptr[cur]
        rep = np.repeat(np.arange(cur.size), deg)
        pos = np.arange(rep.size) - np.repeat(np.cumsum(deg) - deg, deg) + indptr[cur][rep]
        step = dist[rep] + wt[pos]
        keep = (nbr[pos] != came[rep]) & (step <= limit)
        rep = rep[keep]
        src, came, cur, dist = src[rep], cur[rep], nbr[pos[keep]], step[keep]
        parts.append((src, cur, dist))
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def window_means(pairs: tuple[np.ndarray, np.ndarray, np.ndarray], values: np.ndarray,
                 windows: tuple[float, ...]) -> list[np.ndarray]:
    """Per window: the mean of ``values`` (n, k) over the nodes within that path length of each
    node; ``pairs``: :func:`window_pairs` of every node, to at least the largest window."""
    s, v, d = pairs
    n = len(values)
    outs = []
    for w in windows:
        inside = d <= w * (1 + 1e-9)
        si, vi = s[inside], v[inside]
        count = np.bincount(si, minlength=n)
        outs.append(np.stack([np.bincount(si, values[vi, j], n) / count for j in range(values.shape[1])], 1)
                    .reshape(n, values.shape[1]))
    return outs
