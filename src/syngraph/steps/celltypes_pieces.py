"""Random connected pieces of cells: the cells as a smaller (or differently placed) volume would
have cut them, for the cell-type training set and the two views of the cell encoder.

A piece is a geodesic ball on the skeleton tree: every node within a path distance of a random
seed node, the distance grown until the piece holds the drawn share of the cell's cable (a ball
on a tree is connected). Its features are the celltypes step's (:func:`cell_features`),
recomputed on the piece's nodes and spines; the cell's volume and its organelle counts are
scaled by the piece's share of the cable (their per-um densities are the whole cell's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from syngraph.steps.celltypes import SOURCE, CellInputs, _node_cable_nm, cell_features

TRAIN_SHARE = (0.15, 0.9)  # pieces of the cell-type training set: this share of the cable
PIECES_PER_CELL = 0  # default pieces per labelled cell in the cell-type training set: none (measured, docs/celltypes.md)


@dataclass(frozen=True)
class Pieces:
    nodes: pd.DataFrame  # the node table of the pieces (cell_id = piece id, node_id renumbered)
    source: pd.Series  # piece id -> the cell it was cut from
    share: pd.Series  # piece id -> its share of the cell's cable


def _cell_pieces(parent: np.ndarray, xyz: np.ndarray, shares: np.ndarray, rng: np.random.Generator
                 ) -> list[np.ndarray]:
    """Node indices of one piece per entry of ``shares`` (fractions of the cable), each the
    geodesic ball around a random node that holds that share."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    n = len(parent)
    child = np.flatnonzero(parent >= 0)
    length = np.maximum(np.linalg.norm(xyz[child] - xyz[parent[child]], axis=1), 1e-6)
    graph = coo_matrix((length, (child, parent[child])), shape=(n, n)).tocsr()
    seeds = rng.integers(0, n, len(shares))
    dist, pred = dijkstra(graph, directed=False, indices=seeds, return_predecessors=True)
    out = []
    for d, p, s in zip(np.atleast_2d(dist), np.atleast_2d(pred), shares, strict=True):
        order = np.argsort(d, kind="stable")
        order = order[np.isfinite(d[order])]
        edge = np.where(p[order] >= 0, d[order] - d[np.maximum(p[order], 0)], 0.0)  # the edge that joins it
        take = max(2, int(np.searchsorted(np.cumsum(edge), s * length.sum())) + 1)
        out.append(np.sort(order[:take]))
    return out


def random_pieces(nodes: pd.DataFrame, per_cell: int, low: float, high: float,
                  rng: np.random.Generator, cells: np.ndarray | None = None) -> Pieces:
    """``per_cell`` pieces of every cell of ``nodes`` (or of ``cells``), each with a share of the
    cable drawn uniformly in [``low``, ``high``]; pieces of one cell keep the cell's node order."""
    nodes = nodes.sort_values(["cell_id", "node_id"], kind="stable").reset_index(drop=True)
    cid = nodes["cell_id"].to_numpy().astype(np.uint64)
    ids, start, count = np.unique(cid, return_index=True, return_counts=True)
    xyz_all = nodes[["x_nm", "y_nm", "z_nm"]].to_numpy(np.float64)
    par_all = nodes["parent_id"].to_numpy().astype(np.int64)
    rows, src, share, pid = [], [], [], 0
    want = None if cells is None else set(np.asarray(cells, np.uint64).tolist())
    for c, s0, n in zip(ids, start, count, strict=True):
        if n < 3 or (want is not None and int(c) not in want):
            continue
        sl = slice(s0, s0 + n)
        parent, xyz = par_all[sl], xyz_all[sl]
        total = _node_cable_nm(parent, xyz).sum()
        shares = rng.uniform(low, high, per_cell)
        for keep in _cell_pieces(parent, xyz, shares, rng):
            pid += 1
            new = np.full(n, -1, np.int64)
            new[keep] = np.arange(len(keep))
            p = parent[keep]
            piece = nodes.iloc[s0 + keep].copy()
            piece["source_node_id"] = piece["node_id"].to_numpy()
            piece["node_id"] = np.arange(len(keep))
            piece["parent_id"] = np.where(p >= 0, new[np.maximum(p, 0)], -1)
            piece["cell_id"] = np.uint64(pid)
            rows.append(piece)
            src.append(c)
            share.append(_node_cable_nm(piece["parent_id"].to_numpy(), xyz[keep]).sum() / max(total, 1e-9))
    idx = pd.Index(np.arange(1, pid + 1, dtype=np.uint64), name="cell_id")
    table = pd.concat(rows, ignore_index=True) if rows else nodes.iloc[:0].assign(source_node_id=0)
    return Pieces(table, pd.Series(np.asarray(src, np.uint64), index=idx), pd.Series(share, index=idx, dtype=float))


def piece_features(inputs: CellInputs, pieces: Pieces) -> pd.DataFrame:
    """:func:`cell_features` of every piece (index piece id) and the ``source_cell_id`` column."""
    src = pieces.source
    share = pieces.share.to_numpy()
    cells = inputs.cells.reindex(src.to_numpy())
    cells = pd.DataFrame({"volume_um3": cells["volume_um3"].fillna(0).to_numpy() * share,
                          "astrocyte": cells["astrocyte"].fillna(False).to_numpy()}, index=src.index)
    sp = inputs.spines
    n_spines = pd.Series(dtype=float)
    if len(sp) and len(pieces.nodes):
        key = pd.MultiIndex.from_arrays([sp["cell_id"].to_numpy().astype(np.uint64), sp["node_id"].to_numpy()])
        pn = pieces.nodes
        piece_key = pd.MultiIndex.from_arrays([src.reindex(pn["cell_id"].to_numpy()).to_numpy(),
                                               pn["source_node_id"].to_numpy()])
        hits = pd.Series(1, index=key).groupby(level=[0, 1]).sum().reindex(piece_key).fillna(0).to_numpy()
        n_spines = pd.Series(hits, index=pn["cell_id"].to_numpy()).groupby(level=0).sum()
        n_spines.index = n_spines.index.astype(np.uint64)
    orgs = None
    if inputs.organelles is not None:
        o = inputs.organelles.reindex(src.to_numpy()).fillna(0)
        orgs = pd.DataFrame(o.to_numpy() * share[:, None], columns=o.columns, index=src.index)
    out = cell_features(pieces.nodes.drop(columns="source_node_id"), cells, n_spines, orgs)
    out[SOURCE] = src.reindex(out.index).to_numpy()
    return out


def with_pieces(labels: pd.Series, inputs: CellInputs, per_cell: int,
                rng: np.random.Generator, share: tuple[float, float] = TRAIN_SHARE,
                min_cable_um: float = 0.0) -> tuple[pd.DataFrame, pd.Series]:
    """A training set of the labelled cells of ``inputs.features()`` (index cell_id) with >=
    ``min_cable_um`` and ``per_cell`` random pieces of each (``share`` of its cable), the pieces
    labelled as their cell; rows get new ids (0..), cells first, and the ``source_cell_id``
    column (the cell itself for whole cells) keeps a cell and its pieces in one fold."""
    features = inputs.features()
    lab = labels[~labels.index.duplicated()]
    cells = features.index[features.index.isin(lab.index) & (features["cable_um"].to_numpy() >= min_cable_um)]
    whole = features.loc[cells].assign(**{SOURCE: cells.to_numpy().astype(np.uint64)})
    parts = [whole]
    y = [lab.reindex(cells).to_numpy()]
    if per_cell and len(cells):
        pf = piece_features(inputs, random_pieces(inputs.nodes, per_cell, *share, rng, cells.to_numpy()))
        pf = pf[pf["cable_um"].to_numpy() >= min_cable_um]
        y.append(lab.reindex(pf[SOURCE].to_numpy()).to_numpy())
        parts.append(pf[whole.columns])
    out = pd.concat(parts)
    out.index = pd.Index(np.arange(len(out), dtype=np.uint64), name="cell_id")
    return out, pd.Series(np.concatenate(y), index=out.index)
