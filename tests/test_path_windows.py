"""syngraph.steps.path_windows: the sparse walk finds exactly the nodes and distances of scipy's
dense dijkstra (the oracle) on random forests, and the window means agree with the dense product."""

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from syngraph.steps.path_windows import window_means, window_pairs


def _forest(n, seed):
    """Random forest of ``n`` nodes: parents first, a few roots, edges 1-300 with some equal."""
    rng = np.random.default_rng(seed)
    parent = np.array([-1 if i == 0 or rng.random() < 0.03 else rng.integers(max(0, i - 20), i)
                       for i in range(n)])
    child = np.flatnonzero(parent >= 0)
    edges = np.c_[child, parent[child]]
    w = np.round(rng.uniform(1, 300, len(edges)), int(seed % 2)) + 1e-6  # ties at the window edge
    return edges, w


def _dense(edges, w, n, limit):
    g = coo_matrix((w, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    return dijkstra(g, directed=False, limit=limit)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pairs_equal_dense_dijkstra_bit_for_bit(seed):
    n = 600
    edges, w = _forest(n, seed)
    for limit in (0.5, 150.0, 1000.0 * (1 + 1e-9)):
        d = _dense(edges, w, n, limit)
        s, v, dist = window_pairs(edges, w, n, np.arange(n), limit)
        sparse = np.full((n, n), np.inf)
        sparse[s, v] = dist
        assert len(s) == np.isfinite(d).sum()  # each pair once
        assert np.array_equal(sparse, d)  # the same floats: summed from the source outward


def test_window_means_equal_the_dense_product():
    n = 3000
    edges, w = _forest(n, 7)
    values = np.random.default_rng(1).normal(size=(n, 3))
    windows = (150.0, 1000.0)
    top = max(windows) * (1 + 1e-9)
    got = window_means(window_pairs(edges, w, n, np.arange(n), top), values, windows)
    d = _dense(edges, w, n, top)
    for out, win in zip(got, windows, strict=True):
        m = (d <= win * (1 + 1e-9)).astype(np.float64)
        np.testing.assert_allclose(out, (m @ values) / m.sum(1, keepdims=True), rtol=1e-12, atol=1e-12)
