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


def _arcs(edges: np.ndarray, weights: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The edges as arcs both ways, grouped by tail: (first arc of each node (n + 1), head, weight,
    the reverse of each arc)."""
    m = len(edges)
    tail = np.r_[edges[:, 0], edges[:, 1]]
    order = np.argsort(tail, kind="stable")
    where = np.empty(2 * m, np.int64)
    where[order] = np.arange(2 * m)
    reverse = np.empty(2 * m, np.int64)
    reverse[where[:m]], reverse[where[m:]] = where[m:], where[:m]
    first = np.r_[0, np.cumsum(np.bincount(tail, minlength=n))]
    return first, np.r_[edges[:, 1], edges[:, 0]][order], np.r_[weights, weights][order], reverse


def _fan(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(which item, k-th of its ``counts``) for every k < count of every item."""
    item = np.repeat(np.arange(counts.size), counts)
    return item, np.arange(item.size) - np.repeat(np.cumsum(counts) - counts, counts)


def window_pairs(edges: np.ndarray, weights: np.ndarray, n: int, sources: np.ndarray, limit: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, node, path length) of every node within ``limit`` path length of each source
    (itself included, at 0), on a forest of ``n`` nodes with ``edges`` (m, 2) of ``weights`` > 0.

    The walk moves along arcs: an arc into node b goes on to every arc out of b but its reverse.

    >>> e = np.array([[1, 0], [2, 1], [3, 1]])
    >>> s, v, d = window_pairs(e, np.array([1.0, 2.0, 5.0]), 4, np.array([0]), 3.0)
    >>> sorted(zip(v.tolist(), d.tolist()))
    [(0, 0.0), (1, 1.0), (2, 3.0)]
    """
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    first, head, wt, reverse = _arcs(edges, np.asarray(weights, np.float64), n)
    src = np.asarray(sources, np.int64)
    parts = [(src, src, np.zeros(src.size))]
    item, k = _fan(first[src + 1] - first[src])  # the first step: every arc out of the source
    arc = first[src][item] + k
    dist = wt[arc]
    keep = dist <= limit
    src, arc, dist = src[item[keep]], arc[keep], dist[keep]
    while arc.size:
        parts.append((src, head[arc], dist))
        b = head[arc]
        item, k = _fan(first[b + 1] - first[b] - 1)
        nxt = first[b][item] + k
        nxt += nxt >= reverse[arc][item]  # skip the way back
        step = dist[item] + wt[nxt]
        keep = step <= limit
        src, arc, dist = src[item[keep]], nxt[keep], step[keep]
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
