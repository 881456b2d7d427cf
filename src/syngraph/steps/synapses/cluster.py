"""From synaptic voxels to cell-level synapses: map to cell pairs, cluster in space (pure).

Fragments are the synaptic contact voxels of one supervoxel pair. Mapped to cells through
``sv_to_cell``, fragments inside one cell or touching a supervoxel of no cell are dropped (and counted).
Within a cell pair, voxels 26-adjacent to each other form pieces; pieces closer than ``gap_nm``
(nearest voxels, in nm) merge into one synapse; synapses under ``min_size_vx`` are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from syngraph.graph import map_to_cells as map_to_cells  # moved below models and steps (#18)


@dataclass
class Clustering:
    voxel_synapse: np.ndarray  # (V,) int64 synapse index per input voxel, -1 if dropped
    cell_pair: np.ndarray  # (S, 2) uint64 (lower id, higher id) per synapse
    n_dropped_same_cell: int
    n_dropped_no_cell: int
    n_dropped_small: int


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    g = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    return connected_components(g, directed=False)[1]


def cluster_pair(xyz_vx: np.ndarray, voxel_size_nm: np.ndarray, gap_nm: float) -> np.ndarray:
    """Cluster the voxels of one cell pair; returns a dense label per voxel (deterministic)."""
    n = len(xyz_vx)
    if n == 1:
        return np.zeros(1, np.int64)
    tree = cKDTree(xyz_vx.astype(np.float64))
    pairs = tree.query_pairs(np.sqrt(3) + 1e-6, output_type="ndarray")
    piece = _components(n, pairs[:, 0], pairs[:, 1])
    n_pieces = piece.max() + 1
    if n_pieces > 1 and gap_nm > 0:
        nm = xyz_vx * voxel_size_nm
        members = [np.nonzero(piece == k)[0] for k in range(n_pieces)]
        trees = [cKDTree(nm[m]) for m in members]
        ei, ej = [], []
        for a in range(n_pieces):
            for b in range(a + 1, n_pieces):
                d, _ = trees[b].query(nm[members[a]], k=1, distance_upper_bound=gap_nm)
                if np.isfinite(d).any() and d.min() <= gap_nm:
                    ei.append(a)
                    ej.append(b)
        merged = _components(n_pieces, np.asarray(ei, np.int64), np.asarray(ej, np.int64))
        piece = merged[piece]
    # relabel by first voxel in input order so labels are deterministic
    _, first = np.unique(piece, return_index=True)
    order = np.argsort(first)
    relabel = np.empty_like(order)
    relabel[np.unique(piece)[order]] = np.arange(len(order))
    return relabel[piece]


def cluster_synapses(
    xyz_vx: np.ndarray,
    cell_a: np.ndarray,
    cell_b: np.ndarray,
    voxel_size_nm: tuple[float, float, float],
    gap_nm: float,
    min_size_vx: int,
) -> Clustering:
    """Group synaptic voxels into synapses per cell pair.

    ``xyz_vx`` (V, 3) voxel coordinates; ``cell_a``/``cell_b`` the cells of the two supervoxels of each
    voxel's pair (0 = no cell). Input order must be deterministic (e.g. sorted by block and voxel).
    """
    n = len(xyz_vx)
    out = np.full(n, -1, np.int64)
    lo = np.minimum(cell_a, cell_b)
    hi = np.maximum(cell_a, cell_b)
    no_cell = (lo == 0)
    same = (~no_cell) & (lo == hi)
    ok = ~(no_cell | same)
    vs = np.asarray(voxel_size_nm, np.float64)
    pairs_out: list[tuple[int, int]] = []
    n_small = 0
    idx = np.nonzero(ok)[0]
    if len(idx):
        keys = np.stack([lo[idx], hi[idx]], axis=1)
        order = np.lexsort((idx, keys[:, 1], keys[:, 0]))
        idx, keys = idx[order], keys[order]
        starts = np.r_[0, np.nonzero(np.any(np.diff(keys, axis=0) != 0, axis=1))[0] + 1, len(idx)]
        for s, e in zip(starts[:-1], starts[1:], strict=True):
            members = np.sort(idx[s:e])
            labels = cluster_pair(xyz_vx[members], vs, gap_nm)
            counts = np.bincount(labels)
            for k in range(len(counts)):
                if counts[k] < min_size_vx:
                    n_small += 1
                    continue
                out[members[labels == k]] = len(pairs_out)
                pairs_out.append((int(keys[s, 0]), int(keys[s, 1])))
    return Clustering(
        voxel_synapse=out,
        cell_pair=np.asarray(pairs_out, np.uint64).reshape(-1, 2),
        n_dropped_same_cell=int(same.sum()),
        n_dropped_no_cell=int(no_cell.sum()),
        n_dropped_small=n_small,
    )
