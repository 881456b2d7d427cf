"""Random connected pieces of cells: connected, the drawn share of the cable, features recomputed
on the piece (spines counted on its own nodes); a whole-cell piece has the cell's features; a
model trained with pieces types short pieces of unseen cells."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from test_celltypes import TYPES, _cell, _workdir

from syngraph.evaluate.celltypes import expected_calibration_error
from syngraph.steps.celltypes import CellInputs, _node_cable_nm, load_cell_inputs
from syngraph.steps.celltypes_pieces import SOURCE, piece_features, random_pieces


def _inputs(seed: int) -> CellInputs:
    rng = np.random.default_rng(seed)
    nodes, spines, cells = [], [], []
    for cid, kind in enumerate(TYPES * 2, start=1):
        sk, label, _ = _cell(rng, kind, cid)
        xyz = sk.nodes_nm.astype(np.float64)
        nodes.append(pd.DataFrame({"cell_id": np.uint64(cid), "node_id": sk.node_id, "parent_id": sk.parent_id,
                                   "x_nm": xyz[:, 0], "y_nm": xyz[:, 1], "z_nm": xyz[:, 2],
                                   "radius_nm": sk.radius_nm.astype(np.float64), "myelin": False, "label": label}))
        heads = np.flatnonzero(label == "spine_head")
        spines.append(pd.DataFrame({"cell_id": np.full(len(heads), cid, np.uint64), "node_id": heads}))
        cells.append((cid, 1.0 + cid, False))
    c = pd.DataFrame(cells, columns=["cell_id", "volume_um3", "astrocyte"]).set_index("cell_id")
    c.index = c.index.astype(np.uint64)
    return CellInputs(pd.concat(nodes, ignore_index=True), c, pd.concat(spines, ignore_index=True), None, [])


def test_pieces_are_connected_with_the_drawn_share_and_their_own_spines():
    inputs = _inputs(3)
    pieces = random_pieces(inputs.nodes, 5, 0.4, 0.9, np.random.default_rng(0))
    assert len(pieces.source) == 5 * 6
    whole = inputs.features()
    feats = piece_features(inputs, pieces)
    for pid, g in pieces.nodes.groupby("cell_id"):
        parent = g["parent_id"].to_numpy()
        assert np.sum(parent < 0) == 1  # one root: a connected tree
        src = pieces.source[pid]
        cell = inputs.nodes[inputs.nodes["cell_id"] == src]
        total = _node_cable_nm(cell["parent_id"].to_numpy(), cell[["x_nm", "y_nm", "z_nm"]].to_numpy()).sum()
        cable = _node_cable_nm(parent, g[["x_nm", "y_nm", "z_nm"]].to_numpy())
        assert 0.4 - 0.02 <= cable.sum() / total <= 0.9 + 0.05
        f = feats.loc[pid]
        assert f[SOURCE] == src and f["cable_um"] == pytest.approx(cable.sum() / 1000, rel=1e-9)
        dend = cable[np.isin(g["label"].to_numpy(), ("shaft", "spine_neck", "spine_head"))].sum() / 1000
        heads = np.sum(g["label"].to_numpy() == "spine_head")  # each spine's head node is in the table
        assert f["spines_per_um_dendrite"] == pytest.approx(heads / dend if dend > 0 else 0.0, rel=1e-9)
        assert f["log_volume_um3"] == pytest.approx(np.log10(inputs.cells.loc[src, "volume_um3"] * cable.sum() / total))
    one = piece_features(inputs, random_pieces(inputs.nodes, 1, 1.0, 1.0, np.random.default_rng(1)))
    one.index = one.pop(SOURCE).to_numpy()
    pd.testing.assert_frame_equal(one.sort_index(), whole.sort_index(), check_names=False, check_index_type=False,
                                  check_exact=False, rtol=1e-9)


def test_model_trained_with_pieces_types_short_pieces_of_unseen_cells(tmp_path):
    """Trained from a label table (with pieces) on one drawn volume; short pieces (15-35 % of the
    cable, >= 2 um) of another volume's cells are typed as the cell they were cut from."""
    from syngraph.models.celltypes import load_model
    from syngraph.steps.celltypes import predict, train_celltypes

    truth = _workdir(tmp_path / "a", seed=11, n_per_type=8)
    pd.DataFrame({"cell_id": list(truth), "type": list(truth.values())}).to_csv(tmp_path / "l.csv", index=False)
    path, _ = train_celltypes(tmp_path / "a", tmp_path / "l.csv", out=tmp_path / "m.npz", pieces=4)
    assert load_model(path).info["pieces_per_cell"] == "4"
    truth_b = _workdir(tmp_path / "b", seed=12, n_per_type=8)
    inputs = load_cell_inputs(tmp_path / "b")
    pf = piece_features(inputs, random_pieces(inputs.nodes, 3, 0.15, 0.35, np.random.default_rng(2)))
    pf = pf[pf["cable_um"] >= 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, _, _ = predict(pf.drop(columns=SOURCE), load_model(path), False, 2.0, trust_model=True)
    y = np.array([truth_b[int(c)] for c in pf[SOURCE]])
    prob = table[[f"p_{c}" for c in sorted(TYPES)]].to_numpy()
    correct = table["celltype"].to_numpy() == y
    assert len(y) >= 50 and correct.mean() >= 0.9
    assert expected_calibration_error(prob, correct) <= 0.1
