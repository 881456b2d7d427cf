"""Step embeddings: weights round trip through safetensors, node and cell vectors of drawn cells
scored by nearest neighbours against the labels they were drawn with (the shipped encoder, and one
trained here when torch is installed); the type matrix and conn_mat partner columns."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from test_celltypes import _workdir, syngraph

from syngraph.config import default_config, write_config
from syngraph.models.domain import Domain
from syngraph.models.embeddings import Encoder, knn_vote, load_encoders, save_encoders

COARSE = {"shaft": "dendrite", "spine_neck": "dendrite", "spine_head": "dendrite", "axon": "axon", "bouton": "axon"}


def _ready(path, seed, n_per_type=10):
    """A drawn working directory through the celltypes step (the cell encoder reads its features;
    drawn cells lie outside the shipped model's domain, so none is typed)."""
    import warnings

    from syngraph.steps.celltypes import run_celltypes

    truth = _workdir(path, seed, n_per_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_celltypes(path)
    return truth


def _scores(wd, truth):
    nodes = pd.read_parquet(wd / "tables" / "embeddings_nodes.parquet")
    comp = pd.read_parquet(wd / "tables" / "compartments_nodes.parquet")
    nodes = nodes.merge(comp, on=["cell_id", "node_id"])
    z = nodes[[f"e{i}" for i in range(10)]].to_numpy()
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    y = nodes["label"].map(COARSE).to_numpy()
    half = nodes["cell_id"].to_numpy().astype(np.int64) % 2 == 0
    pred = np.empty_like(y)
    pred[half] = knn_vote(z[~half], y[~half], z[half])
    pred[~half] = knn_vote(z[half], y[half], z[~half])
    cells = pd.read_parquet(wd / "tables" / "embeddings_cells.parquet")
    cz = cells[[f"e{i}" for i in range(10)]].to_numpy()
    ct = np.array([truth[int(c)] for c in cells["cell_id"]])
    cell_pred = knn_vote(cz, ct, cz, exclude_self=True)
    return float(np.mean(pred == y)), float(np.mean(cell_pred == ct))


def test_weights_round_trip_through_safetensors(tmp_path):
    rng = np.random.default_rng(0)
    enc = Encoder(("a", "b", "c"), (rng.normal(size=(3, 8)), rng.normal(size=(8, 8)), rng.normal(size=(8, 10))),
                  (rng.normal(size=8), rng.normal(size=8), rng.normal(size=10)), np.zeros(3), np.ones(3),
                  Domain.fit(rng.normal(size=(40, 3)), ("a", "b", "c")))
    path = save_encoders(tmp_path / "m.safetensors", {"shape": enc}, {"note": "x"})
    assert path.read_bytes()[8:9] == b"{"  # safetensors: 8-byte header length, then JSON
    back, info = load_encoders(path)
    assert info["note"] == "x" and back["shape"].feature_names == ("a", "b", "c")
    assert back["shape"].domain.n_train == 40
    np.testing.assert_allclose(back["shape"].domain.quantiles, enc.domain.quantiles, rtol=1e-6)
    x = rng.normal(size=(50, 3))
    np.testing.assert_allclose(back["shape"].embed(x), enc.embed(x), atol=1e-5)  # float32 storage
    assert back["shape"].bank_z is None and back["shape"].bank_type == ()
    cell = dataclasses.replace(enc, feature_names=("p", "q", "r"), mean=np.ones(3), domain=None)
    banked = dataclasses.replace(enc, bank_z=enc.embed(x[:4]), bank_type=("b", "a", "b", "c"), cell=cell)
    back = load_encoders(save_encoders(tmp_path / "b.safetensors", {"shape": banked}, {}))[0]["shape"]
    assert back.bank_type == ("b", "a", "b", "c")
    np.testing.assert_allclose(back.bank_z, banked.bank_z, atol=1e-6)
    assert back.cell.feature_names == ("p", "q", "r") and back.cell.cell is None
    np.testing.assert_allclose(back.cell.embed(x), cell.embed(x), atol=1e-5)


def test_bank_vote_wins_types_the_volume_has_too_few_of():
    """One 'rare' cell among six 'common' ones: the in-volume vote always outvotes it; with a
    bank of three 'rare' references next to it, it is voted right, and the bank's exact copies
    of the common cells do not outvote the volume's own neighbours."""
    from syngraph.models.embeddings import bank_vote

    z = np.r_[np.tile([1.0, 0, 0], (6, 1)) + np.linspace(0, 0.05, 6)[:, None] * [0, 1, 0], [[0, 0, 1.0]]]
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    y = np.array(["common"] * 6 + ["rare"])
    assert knn_vote(z, y, z, exclude_self=True)[-1] == "common"
    bank = np.array([[0, 0.1, 1.0], [0.1, 0, 1.0], [0, -0.1, 1.0]])
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    pred = bank_vote(bank, np.array(["rare"] * 3), z, y)
    assert list(pred) == ["common"] * 6 + ["rare"]
    assert list(bank_vote(np.zeros((0, 3)), np.zeros(0, str), z, y)) == list(knn_vote(z, y, z, exclude_self=True))


def test_shipped_encoder_on_drawn_cells(tmp_path):
    """No training here: the shipped encoder (demo tissue) separates dendrite from axon nodes of
    cells drawn independently of the demo generator, and its cell vectors group the drawn kinds."""
    from syngraph.steps.embeddings import DomainWarning, run_embeddings

    truth = _ready(tmp_path, seed=5)
    with pytest.warns(DomainWarning):  # drawn cells are not demo tissue, and the step says so
        res = run_embeddings(tmp_path)
    assert res["model_variant"] == "shape" and res["cells"] == len(truth) and not res["in_domain"]
    # inference needs no torch: the step in a fresh interpreter leaves it unimported
    code = ("import sys; from syngraph.steps.embeddings import run_embeddings; "
            f"run_embeddings({str(tmp_path)!r}); assert 'torch' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    node_acc, cell_acc = _scores(tmp_path, truth)
    assert node_acc >= 0.9
    assert cell_acc >= 0.9


def test_train_encoder_without_labels(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from syngraph.models.compartments import SHAPE_FEATURES
    from syngraph.models.embeddings import Encoder
    from syngraph.steps.embeddings import (
        load_volume,
        node_features,
        run_embeddings,
        train_embeddings,
    )

    _ready(tmp_path / "a", seed=6)
    truth = _ready(tmp_path / "b", seed=7)
    path, losses, _ = train_embeddings([tmp_path / "a"], tmp_path / "enc.safetensors", steps=300, cell_steps=300)
    assert losses["shape"] < np.log(2 * 256 - 1)  # below chance for NT-Xent with 2 x 256 views
    x_a = node_features(tmp_path / "a")[1][:, :len(SHAPE_FEATURES)]
    trained = load_encoders(path)[0]["shape"]  # the file holds the training features' domain
    assert trained.domain.n_train == len(x_a) and trained.domain.distance(x_a).distance < 0.1
    assert trained.bank_z is None  # no labels and no celltypes run: no reference bank
    assert trained.cell is not None and trained.cell.feature_names[-1] == "pooled_e9"
    cfg = default_config()
    cfg.embeddings.model = str(path)
    write_config(tmp_path / "b", cfg)
    run_embeddings(tmp_path / "b")
    node_acc, cell_acc = _scores(tmp_path / "b", truth)
    assert node_acc >= 0.9 and cell_acc >= 0.9
    # pieces (40-90 % of the cable) of b's cells land next to whole cells of their own type
    from syngraph.steps.embeddings import cell_descriptor_names, cell_views

    vol = load_volume(tmp_path / "b")
    nodes = vol.nodes
    views = cell_views(vol.inputs, vol.features, nodes, trained.embed(vol.x), cell_descriptor_names("shape"), 4,
                       np.random.default_rng(0))
    z = trained.cell.embed(views.reshape(-1, views.shape[2]))
    y = np.repeat([truth[int(c)] for c in np.unique(nodes["cell_id"])], views.shape[1])
    whole = np.arange(len(z)) % views.shape[1] == 0
    assert np.mean(knn_vote(z[whole], y[whole], z[~whole], k=1) == y[~whole]) >= 0.9
    # a volume without the celltypes step: an input error naming the step to run
    from syngraph.errors import InputError

    _workdir(tmp_path / "c", seed=8, n_per_type=2)
    write_config(tmp_path / "c", cfg)
    with pytest.raises(InputError, match="run `syngraph run celltypes` first"):
        run_embeddings(tmp_path / "c")
    # with labels, the cell encoder and the bank read the same node vectors: computed once
    node_calls, embed = [], Encoder.embed
    monkeypatch.setattr(Encoder, "embed", lambda self, x: (node_calls.append(len(x))
                                                           if self.feature_names == SHAPE_FEATURES else None,
                                                           embed(self, x))[1])
    labels = pd.Series(list(truth.values()), index=list(truth))
    *_, bank = train_embeddings([tmp_path / "b"], tmp_path / "enc2.safetensors", steps=20, cell_steps=20,
                                labels=[labels])
    assert bank == len(truth) and node_calls == [len(vol.x)]


def test_train_embeddings_with_labels_builds_the_reference_bank(tmp_path):
    """`syngraph train embeddings --labels` stores the labelled cells' vectors (those the step then
    writes for the same cells) and types; a volume with ONE thin axon among spiny and smooth cells
    is voted right against that bank, where its own cells alone outvote the axon."""
    pytest.importorskip("torch")
    from syngraph.models.embeddings import bank_vote
    from syngraph.steps.embeddings import run_embeddings

    truth = _ready(tmp_path / "a", seed=6, n_per_type=6)
    pd.DataFrame({"cell_id": list(truth), "type": list(truth.values())}).to_csv(tmp_path / "l.csv", index=False)
    rc, out = syngraph("train", "embeddings", "-w", tmp_path / "a", "--labels", tmp_path / "l.csv",
                       "--out", tmp_path / "e.safetensors", "--steps", 300, "--cell-steps", 300)
    assert rc == 0, out
    assert "reference bank 18 labelled cells" in " ".join(out.split())
    enc = load_encoders(tmp_path / "e.safetensors")[0]["shape"]
    assert sorted(enc.bank_type) == sorted(truth.values()) and enc.bank_z.shape == (18, 10)
    cfg = default_config()
    cfg.embeddings.model = str(tmp_path / "e.safetensors")
    write_config(tmp_path / "a", cfg)
    run_embeddings(tmp_path / "a")
    cells = pd.read_parquet(tmp_path / "a" / "tables" / "embeddings_cells.parquet")
    np.testing.assert_allclose(np.sort(cells[[f"e{i}" for i in range(10)]].to_numpy(), 0),
                               np.sort(enc.bank_z, 0), atol=1e-5)
    truth_b = _ready(tmp_path / "b", seed=8, n_per_type={"spiny": 6, "smooth": 6, "thin_axon": 1})
    write_config(tmp_path / "b", cfg)
    run_embeddings(tmp_path / "b")
    cells = pd.read_parquet(tmp_path / "b" / "tables" / "embeddings_cells.parquet")
    z, y = cells[[f"e{i}" for i in range(10)]].to_numpy(), np.array([truth_b[int(c)] for c in cells["cell_id"]])
    within, banked = knn_vote(z, y, z, exclude_self=True), bank_vote(enc.bank_z, np.array(enc.bank_type), z, y)
    assert within[y == "thin_axon"][0] != "thin_axon" and banked[y == "thin_axon"][0] == "thin_axon"
    assert np.mean(banked == y) >= 12 / 13


def test_knn_ceiling_counts_the_cells_some_neighbours_vote_right():
    from syngraph.evaluate.embeddings import knn_ceiling

    y = np.array(["exc"] * 17 + ["inh"] * 6 + ["astro"] * 2 + ["mod"])
    # astro: its one other cell and one of each other type fill 4 of 5 seats; mod: none of its own
    assert knn_ceiling(y) == pytest.approx(23 / 26)
    assert knn_ceiling(np.array(["a"] * 4 + ["b"] * 3)) == pytest.approx(4 / 7)  # b: 2 of 5 against 3 a
    # a: 2 a + 2 b + 1 c wins (tie to a); b and c: one of their own against 4 seats of a, or of b and c
    assert knn_ceiling(np.array(list("aaabbcc"))) == pytest.approx(3 / 7)


def _vote_oracle(y, k):
    """Fraction of cells that some k-subset of the other cells votes right under knn_vote itself."""
    import itertools

    kk = min(k, len(y) - 1)
    right = []
    for i in range(len(y)):
        others = np.delete(y, i)
        votes = {tuple(sorted(others[list(c)])) for c in itertools.combinations(range(len(others)), kk)}
        right.append(any(knn_vote(np.eye(kk), np.array(v), np.zeros((1, kk)), k=kk)[0] == y[i] for v in votes))
    return float(np.mean(right))


def test_knn_ceiling_equals_a_brute_force_vote_over_all_neighbour_sets():
    from syngraph.evaluate.embeddings import knn_ceiling

    rng = np.random.default_rng(0)
    for _ in range(150):
        y = rng.choice(list("abcd"), size=int(rng.integers(2, 10)))
        k = int(rng.integers(1, 6))
        assert knn_ceiling(y, k) == pytest.approx(_vote_oracle(y, k)), (y, k)


def test_node_features_outside_the_training_domain_warn(tmp_path):
    """The shipped encoder with its stored domain moved away from the volume's node features:
    the step warns and reports the distance; with the true domain it does not."""
    import dataclasses
    import warnings

    from syngraph.steps.embeddings import DomainWarning, node_features, run_embeddings

    _ready(tmp_path, seed=5)
    encoders, info = load_encoders()
    x = node_features(tmp_path)[1]
    names = encoders["shape"].feature_names
    far = dict(encoders, shape=dataclasses.replace(encoders["shape"], domain=Domain.fit(x + 100.0, names)))
    near = dict(encoders, shape=dataclasses.replace(encoders["shape"], domain=Domain.fit(x, names)))
    cfg = default_config()
    for name, encs in (("far", far), ("near", near)):
        cfg.embeddings.model = str(save_encoders(tmp_path / f"{name}.safetensors", encs, info))
        write_config(tmp_path, cfg)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = run_embeddings(tmp_path)
        warned = [w for w in caught if issubclass(w.category, DomainWarning)]
        if name == "far":
            assert out["domain_distance"] == 1.0 and not out["in_domain"] and len(warned) == 1
            assert "syngraph train embeddings" in str(warned[0].message)
        else:
            assert out["domain_distance"] < 0.1 and out["in_domain"] and not warned


def test_celltype_matrix_and_conn_mat_partner_columns(tmp_path):
    from syngraph.export.celltypes import celltype_matrix, conn_mat_partners

    syn = pa.table({
        "pre_celltype": ["exc", "exc", "inh", None], "post_celltype": ["inh", "inh", "exc", "exc"],
        "sign": [1, 1, -1, 1], "area_um2": [0.1, 0.2, 0.3, 0.4],
        "pre_embedding": pa.array([[1.0] * 10, None, None, None], pa.list_(pa.float32())),
        "post_embedding": pa.array([None] * 4, pa.list_(pa.float32())),
    })
    m = celltype_matrix(syn).to_pandas().set_index(["pre_celltype", "post_celltype"])
    assert m.loc[("exc", "inh"), "n_synapses"] == 2 and m.loc[("exc", "inh"), "area_um2_asymmetric"] == pytest.approx(0.3)
    assert m.loc[("inh", "exc"), "n_symmetric"] == 1 and m.loc[("inh", "exc"), "area_um2_symmetric"] == pytest.approx(0.3)
    assert m.loc[("unknown", "exc"), "n_synapses"] == 1
    cm = pa.table({"celltype1": [-1] * 4, "celltype2": [-1] * 4,
                   **{f"latentmorph{s}_{k}": [np.nan] * 4 for s in (1, 2) for k in range(10)}})
    out = conn_mat_partners(cm, syn, ["exc", "inh"])
    assert out["celltype1"].to_pylist() == [0, 0, 1, -1] and out["celltype2"].to_pylist() == [1, 1, 0, 0]
    assert out["latentmorph1_3"].to_pylist()[0] == 1.0 and np.isnan(out["latentmorph1_3"].to_pylist()[1])
