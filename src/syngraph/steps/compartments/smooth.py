"""The reference's smoothing of node labels (SyConn ``semsegaxoness2skel``), on compartment codes.

1. coarse labels: dendrite (shaft, neck, head), axon (axon, boutons), soma;
2. ``window_nm`` path-window majority of the coarse labels (``axoness_avg10000``; 0 skips it),
   among the non-soma nodes only: soma nodes keep their label and do not vote (unlike the
   reference, whose skeletons have few soma nodes: ours keep one per ~100 nm of the soma, which
   would out-vote the first 10 um of every neurite leaving it);
3. ``component_majority``: remove the soma nodes, give every remaining connected piece its
   majority (axon only with at least ``axon_min_fraction`` of the nodes, else dendrite);
4. the fine labels come back where they agree with the smoothed coarse label: a node raw-labelled
   bouton / terminal bouton that ends up axon stays a bouton, a spine neck / head that ends up
   dendrite stays one; every other node takes shaft, axon or soma.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from syngraph import compartments as cp
from syngraph.steps.skeletons import path_window_vote

_DEND, _AXON, _SOMA = 0, 1, 2  # the reference's axoness codes
_COARSE = np.array([_DEND, _SOMA, _DEND, _DEND, _DEND, _AXON, _AXON, _AXON, _DEND], np.int64)
_BACK = np.array([cp.SHAFT, cp.AXON, cp.SOMA], np.uint8)


def coarse(codes: np.ndarray) -> np.ndarray:
    """Compartment codes -> 0 dendrite, 1 axon, 2 soma (unknown / astrocyte count as dendrite)."""
    return _COARSE[np.asarray(codes, np.int64)]


def component_majority(edges: np.ndarray, labels: np.ndarray, axon_min_fraction: float) -> np.ndarray:
    """Coarse labels after the component vote with the soma nodes removed.

    >>> e = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    >>> component_majority(e, np.array([1, 1, 2, 0, 1]), 0.66).tolist()
    [1, 1, 2, 0, 0]
    """
    n = len(labels)
    keep = labels != _SOMA
    e = np.asarray(edges, np.int64).reshape(-1, 2)
    e = e[keep[e[:, 0]] & keep[e[:, 1]]]
    _, comp = connected_components(coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)),
                                   directed=False)
    m = comp.max() + 1 if n else 0
    n_all = np.bincount(comp[keep], minlength=m)
    n_axon = np.bincount(comp[keep & (labels == _AXON)], minlength=m)
    axon = n_axon / np.maximum(n_all, 1) >= axon_min_fraction
    return np.where(keep, np.where(axon[comp], _AXON, _DEND), _SOMA)


def smooth_labels(nodes_nm: np.ndarray, edges: np.ndarray, raw: np.ndarray, *, window_nm: float,
                  component: bool, axon_min_fraction: float) -> np.ndarray:
    """Smoothed compartment codes of one cell from its raw per-node codes (see the module)."""
    raw = np.asarray(raw, np.uint8)
    c = coarse(raw)
    if window_nm > 0 and len(c):
        e = np.asarray(edges, np.int64).reshape(-1, 2)
        e = e[(c[e[:, 0]] != _SOMA) & (c[e[:, 1]] != _SOMA)]  # the soma neither votes nor is voted
        c = np.where(c == _SOMA, _SOMA, path_window_vote(np.asarray(nodes_nm, np.float64), e,
                                                         np.where(c == _SOMA, _DEND, c), window_nm))
    if component and len(c):
        c = component_majority(edges, c, axon_min_fraction)
    keep_fine = (coarse(raw) == c) & ~np.isin(raw, (cp.SHAFT, cp.AXON, cp.SOMA))
    return np.where(keep_fine, raw, _BACK[c]).astype(np.uint8)
