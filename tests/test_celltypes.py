"""Step celltypes: features against hand-computed values, training from a label table and scoring
unseen cells against the type they were drawn as, bad label tables, certainty and calibration."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from syngraph.config import default_config, write_config
from syngraph.engine import write_table_atomic
from syngraph.evaluate.celltypes import expected_calibration_error, macro_f1
from syngraph.models.celltypes import certainty, fit_temperature
from syngraph.skeleton_io import CellSkeleton, write_nodes_parquet
from syngraph.steps.celltypes import cell_features

TYPES = ("spiny", "smooth", "thin_axon")


def syngraph(*args):
    r = subprocess.run([sys.executable, "-m", "syngraph", *map(str, args)], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def _cell(rng: np.random.Generator, kind: str, cell_id: int):
    """A random-walk cable of 8-20 um, 200 nm steps: ``spiny`` dendrites (r 400-600 nm, a
    spine every 0.7-1.3 um), ``smooth`` dendrites (r 300-500 nm) and thin axons (r 40-100 nm
    with boutons). Returns the skeleton, node labels and the number of spines."""
    n = int(rng.uniform(8000, 20000) // 200)
    d = rng.normal(size=3)
    pts = [np.zeros(3)]
    for _ in range(n - 1):
        d = d / np.linalg.norm(d) + rng.normal(scale=0.3, size=3)
        pts.append(pts[-1] + 200 * d / np.linalg.norm(d))
    r0 = {"spiny": rng.uniform(400, 600), "smooth": rng.uniform(300, 500), "thin_axon": rng.uniform(40, 100)}[kind]
    radius = list(np.full(n, r0))
    parent = list(range(-1, n - 1))
    label = ["axon" if kind == "thin_axon" else "shaft"] * n
    spines = 0
    if kind == "thin_axon":
        for i in range(0, n, int(rng.integers(5, 9))):
            label[i], radius[i] = "bouton", r0 * 3
    if kind == "spiny":
        for i in range(0, n, int(rng.integers(4, 7))):  # neck, neck, head off shaft node i
            side = np.cross(pts[min(i + 1, n - 1)] - pts[max(i - 1, 0)], rng.normal(size=3))
            side /= np.linalg.norm(side)
            for k, (lab, r) in enumerate((("spine_neck", 60), ("spine_neck", 60), ("spine_head", 250))):
                pts.append(pts[i] + side * (r0 + 300 * (k + 1)))
                parent.append(i if k == 0 else len(pts) - 2)
                label.append(lab)
                radius.append(r)
            spines += 1
    m = len(pts)
    sk = CellSkeleton(cell_id, np.arange(m), np.array(parent, np.int64), np.array(pts, np.float32),
                      np.array(radius, np.float32), {"myelin": np.zeros(m, bool)})
    return sk, np.array(label), spines


def _workdir(path, seed: int, n_per_type: int | dict[str, int] = 10):
    rng = np.random.default_rng(seed)
    skels, comp, cells, spines, truth = [], [], [], [], {}
    cid = 1
    for kind in TYPES:
        for _ in range(n_per_type.get(kind, 0) if isinstance(n_per_type, dict) else n_per_type):
            sk, lab, ns = _cell(rng, kind, cid)
            skels.append(sk)
            comp.append(pd.DataFrame({"cell_id": np.full(len(lab), cid, np.uint64), "node_id": sk.node_id,
                                      "label": lab}))
            vol_um3 = float(np.sum(np.pi * sk.radius_nm.astype(float) ** 2 * 200) / 1e9)
            cells.append((cid, "neuron", int(vol_um3 * 1e9 / (10 * 10 * 25))))
            spines += [cid] * ns
            truth[cid] = kind
            cid += 1
    write_config(path, default_config((10.0, 10.0, 25.0)))
    write_nodes_parquet(path / "tables" / "skeletons.parquet", skels)
    write_table_atomic(pa.Table.from_pandas(pd.concat(comp), preserve_index=False),
                       path / "tables" / "compartments_nodes.parquet")
    c = pd.DataFrame(cells, columns=["cell_id", "kind", "size_vx"]).astype({"cell_id": np.uint64})
    write_table_atomic(pa.Table.from_pandas(c, preserve_index=False), path / "tables" / "cells.parquet")
    write_table_atomic(pa.table({"cell_id": pa.array(spines, pa.uint64())}), path / "tables" / "spines.parquet")
    return truth


def test_features_of_a_straight_spiny_cable():
    """10 um straight shaft, 5 spines of 3 nodes: cable fractions, spine density, tips, turning."""
    n = 51
    xyz = np.c_[np.arange(n) * 200.0, np.zeros(n), np.zeros(n)]
    parent, label = list(range(-1, n - 1)), ["shaft"] * n
    for i in (5, 15, 25, 35, 45):
        for k in range(3):
            xyz = np.r_[xyz, [[i * 200.0, 500.0 * (k + 1), 0]]]
            parent.append(i if k == 0 else len(parent) - 1)
            label.append("spine_head" if k == 2 else "spine_neck")
    m = len(parent)
    nodes = pd.DataFrame({"cell_id": np.full(m, 7, np.uint64), "node_id": np.arange(m), "parent_id": parent,
                          "x_nm": xyz[:, 0], "y_nm": xyz[:, 1], "z_nm": xyz[:, 2],
                          "radius_nm": np.r_[np.full(n, 400.0), np.full(m - n, 100.0)], "label": label})
    cells = pd.DataFrame({"volume_um3": [5.0], "astrocyte": [False]}, index=pd.Index([7], dtype=np.uint64))
    f = cell_features(nodes, cells, pd.Series([5], index=pd.Index([7], dtype=np.uint64)), None).loc[7]
    cable = 10.0 + 5 * 1.5  # shaft + 5 spines of 3 x 500 nm
    assert f["cable_um"] == pytest.approx(cable)
    assert f["frac_shaft"] == pytest.approx((10.0 + 5 * 0.25) / cable)  # half of each spine's base edge
    assert f["frac_spine"] == pytest.approx((5 * 1.5 - 5 * 0.25) / cable)
    assert f["spines_per_um_dendrite"] == pytest.approx(5 / cable)
    assert f["tips_per_um"] == pytest.approx(6 / cable)  # 5 spine heads + the end of the shaft
    assert f["branch_points_per_um"] == pytest.approx(5 / cable)
    assert f["turning_deg"] == pytest.approx(0.0, abs=1e-6)  # straight: the median step does not turn
    assert f["log_radius_dendrite_nm"] == pytest.approx(np.log10(400))
    assert np.isnan(f["log_radius_axon_nm"])


def test_train_from_label_table_and_type_unseen_cells(tmp_path):
    """Train on one set of drawn cells (labels csv through the CLI), type another set drawn with
    another seed, and score against the drawn types."""
    from syngraph.models.celltypes import load_model
    from syngraph.steps.celltypes import run_celltypes

    train, test = tmp_path / "train", tmp_path / "test"
    truth_train = _workdir(train, seed=1)
    truth_test = _workdir(test, seed=2)
    pd.DataFrame({"cell_id": list(truth_train), "type": list(truth_train.values())}).to_csv(train / "cells.csv", index=False)
    rc, out = syngraph("train", "celltypes", "--labels", train / "cells.csv", "-w", train)
    assert rc == 0, out
    model = load_model(train / "models" / "celltypes.npz")
    assert set(model.classes) == set(TYPES) and list(model.variants) == ["shape"]
    domain = model.variants["shape"].domain
    assert domain is not None and domain.names == model.variants["shape"].feature_names
    assert domain.n_train == len(truth_train)  # whole cells: no pieces by default
    cfg = default_config((10.0, 10.0, 25.0))
    cfg.celltypes.model = str(train / "models" / "celltypes.npz")
    write_config(test, cfg)
    out = run_celltypes(test)
    assert out["features_lacking"] and out["typed"] == len(truth_test)
    assert out["domain_distance"] < out["domain_threshold"] and not out["held_back"]  # same kind of cells
    t = pd.read_parquet(test / "tables" / "celltypes.parquet").set_index("cell_id")
    y = np.array([truth_test[int(c)] for c in t.index])
    pred = t["celltype"].to_numpy()
    assert np.mean(pred == y) >= 0.95
    assert macro_f1(y, pred) >= 0.9
    p = t[[f"p_{c}" for c in model.classes]].to_numpy()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(t["celltype_certainty"], certainty(p))
    # the stated minimum: cells under it are unknown
    cfg.celltypes.min_cable_um = 15.0
    write_config(test, cfg)
    run_celltypes(test)
    t = pd.read_parquet(test / "tables" / "celltypes.parquet")
    short = t["cable_um"] < 15.0
    assert short.any() and (t.loc[short, "celltype"] == "unknown").all()
    assert (t.loc[~short, "celltype"] != "unknown").all()


def _sv_layer(path, truth):
    """A volume where cell ``c`` is the one voxel (c, c, 1) (supervoxel c + 1000); the rest background."""
    from syngraph.io.volume import create_layer

    ids = np.array(sorted(truth), np.uint64)
    arr = np.zeros((int(ids.max()) + 2,) * 2 + (3,), np.uint64)
    arr[ids.astype(int), ids.astype(int), 1] = ids + 1000
    create_layer(path, "sv", arr.shape, "uint64", (10.0, 10.0, 25.0)).write(np.asfortranarray(arr))
    write_table_atomic(pa.table({"sv_id": ids + 1000, "cell_id": ids}), path / "tables" / "sv_to_cell.parquet")
    return np.c_[ids * 10.0 + 5, ids * 10.0 + 5, np.full(len(ids), 25.0 + 12)]  # voxel centres, nm


def test_train_from_points_equals_training_from_cell_ids(tmp_path):
    """Labels as points (x_nm, y_nm, z_nm, type) find the cells holding them: the model equals the
    one trained on the same labels by cell id. A point in background is one line, exit 2."""
    from syngraph.models.celltypes import load_model
    from syngraph.steps.celltypes import load_inputs

    truth = _workdir(tmp_path, seed=4, n_per_type=4)
    xyz = _sv_layer(tmp_path, truth)
    order = np.random.default_rng(0).permutation(len(truth))  # rows in another order than the ids
    ids = np.array(sorted(truth))[order]
    types = [truth[int(c)] for c in ids]
    pd.DataFrame({"x_nm": xyz[order, 0], "y_nm": xyz[order, 1], "z_nm": xyz[order, 2], "type": types}
                 ).to_csv(tmp_path / "points.csv", index=False)
    pd.DataFrame({"cell_id": ids, "type": types}).to_csv(tmp_path / "ids.csv", index=False)
    for name in ("points", "ids"):
        rc, out = syngraph("train", "celltypes", "--labels", tmp_path / f"{name}.csv", "-w", tmp_path,
                           "--out", tmp_path / f"{name}.npz")
        assert rc == 0, out
    by_point, by_id = load_model(tmp_path / "points.npz"), load_model(tmp_path / "ids.npz")
    x = load_inputs(tmp_path)[0][list(by_id.variants["shape"].feature_names)].to_numpy()
    assert by_point.variants["shape"].domain.n_train == len(truth)
    np.testing.assert_allclose(by_point.variants["shape"].predict_proba(x), by_id.variants["shape"].predict_proba(x))
    wrong = pd.read_csv(tmp_path / "points.csv")
    wrong.loc[2, "type"] = "smooth" if wrong.loc[2, "type"] != "smooth" else "spiny"  # the oracle can fail
    wrong.to_csv(tmp_path / "wrong.csv", index=False)
    assert syngraph("train", "celltypes", "--labels", tmp_path / "wrong.csv", "-w", tmp_path,
                    "--out", tmp_path / "wrong.npz")[0] == 0
    assert not np.allclose(load_model(tmp_path / "wrong.npz").variants["shape"].predict_proba(x),
                           by_id.variants["shape"].predict_proba(x))
    (tmp_path / "bg.csv").write_text("x_nm,y_nm,z_nm,type\n5,5,37,spiny\n")  # voxel (0, 0, 1): background
    rc, out = syngraph("train", "celltypes", "--labels", tmp_path / "bg.csv", "-w", tmp_path)
    assert rc == 2 and "bg.csv" in out and "row 2" in out and "background" in out and "Traceback" not in out


def test_cells_outside_the_training_domain_are_not_typed(tmp_path):
    """A model whose stored training domain lies far from this volume's cells (every feature shifted):
    no cell typed, a warning naming the distance; --trust-model types them anyway; the same model
    with the true domain types them all."""
    import dataclasses

    from syngraph.models.celltypes import CelltypeModel
    from syngraph.models.domain import Domain
    from syngraph.steps.celltypes import DomainWarning, fit_model, load_inputs, run_celltypes

    truth = _workdir(tmp_path, seed=1)
    features = load_inputs(tmp_path)[0]
    model, _ = fit_model([features], [pd.Series(truth).rename(index=np.uint64)], organelles=False)
    clf = model.variants["shape"]
    x = features[list(clf.feature_names)].to_numpy()
    far = dataclasses.replace(clf, domain=Domain.fit(x + 100.0, clf.feature_names))
    CelltypeModel({"shape": far}, model.info).save(tmp_path / "far.npz")
    model.save(tmp_path / "near.npz")
    cfg = default_config((10.0, 10.0, 25.0))
    cfg.celltypes.model = str(tmp_path / "far.npz")
    write_config(tmp_path, cfg)
    with pytest.warns(DomainWarning, match="outside the model's training data"):
        out = run_celltypes(tmp_path)
    assert out["held_back"] and out["typed"] == 0 and out["domain_distance"] == 1.0
    assert (pd.read_parquet(tmp_path / "tables" / "celltypes.parquet")["celltype"] == "unknown").all()
    with pytest.warns(DomainWarning):
        out = run_celltypes(tmp_path, trust_model=True)
    assert not out["held_back"] and out["typed"] == len(truth)
    cfg.celltypes.model = str(tmp_path / "near.npz")
    write_config(tmp_path, cfg)
    out = run_celltypes(tmp_path)
    assert not out["held_back"] and out["typed"] == len(truth) and out["domain_distance"] < 0.1


@pytest.mark.parametrize("table, message", [
    ("cell_id,kind\n1,spiny\n", "no 'type' column"),
    ("cell_id,type\n1,spiny\nx,smooth\n", "row 3: cell_id 'x' is not a cell id"),
    ("cell_id,type\n1,spiny\n2,\n", "row 3 has no type"),
    ("type\nspiny\n", "give a cell_id column or x_nm, y_nm, z_nm"),
])
def test_bad_label_table_is_one_line_exit_2(tmp_path, table, message):
    _workdir(tmp_path, seed=3, n_per_type=2)
    (tmp_path / "cells.csv").write_text(table)
    rc, out = syngraph("train", "celltypes", "--labels", tmp_path / "cells.csv", "-w", tmp_path)
    assert rc == 2
    assert message in out and "cells.csv" in out and "Traceback" not in out


def test_run_celltypes_needs_compartments(tmp_path):
    from syngraph.io.volume import create_layer

    cfg = default_config()
    cfg.layers = {"sv": cfg.layers["sv"]}
    write_config(tmp_path, cfg)
    create_layer(tmp_path, "sv", (8, 8, 8), "uint64", cfg.voxel_size_nm).write(np.ones((8, 8, 8), np.uint64))
    rc, out = syngraph("run", "celltypes", "-w", tmp_path, "--scheduler", "serial")
    assert rc == 2 and "syngraph run compartments" in out and "Traceback" not in out


def test_certainty_and_calibration_oracles():
    assert certainty(np.array([[1.0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]])) == pytest.approx([1.0, 0.0])
    # a perfectly calibrated forecaster: confidence 0.8, right 80% of the time
    prob = np.tile([0.8, 0.2], (1000, 1))
    correct = np.arange(1000) % 5 != 0
    assert expected_calibration_error(prob, correct) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(prob, np.ones(1000, bool)) == pytest.approx(0.2)
    # temperature: over-confident scores (x4) get T close to 4
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 3))
    y = np.array([rng.choice(3, p=np.exp(r) / np.exp(r).sum()) for r in logits])
    assert fit_temperature(logits * 4, y)[0] == pytest.approx(4.0, rel=0.15)
    # cable-aware: scores over-confident by 2 at ~9 um of cable and by 2e per decade less
    from syngraph.models.celltypes import cable_temperature

    lc = rng.uniform(0.5, 2.0, len(logits))
    y = np.array([rng.choice(3, p=np.exp(r) / np.exp(r).sum()) for r in logits])
    t, slope = fit_temperature(logits * cable_temperature(2.0, 1.0, lc)[:, None], y, lc)
    assert t == pytest.approx(2.0, rel=0.15) and slope == pytest.approx(1.0, abs=0.25)


def test_volume_grouped_folds_calibrate_for_unseen_volumes():
    """Cells of 8 volumes, each volume shifted as a whole (a batch effect): folds that hold out
    whole volumes see the shift the step will meet on a new volume and fit a softer temperature
    than class-stratified folds, which see every volume in training; and that softer model's ECE
    on new shifted volumes is the lower one."""
    from syngraph.models.celltypes import fit_classifier

    rng = np.random.default_rng(3)

    def volumes(n_vol, seed):
        r = np.random.default_rng(seed)
        xs, ys, gs = [], [], []
        for v in range(n_vol):
            shift = r.normal(scale=0.8, size=2)
            y = r.integers(0, 2, 60)
            xs.append(np.c_[y * 1.5, -y * 1.5] + shift + r.normal(scale=0.3, size=(60, 2)))
            ys.append(np.where(y == 1, "b", "a"))
            gs.append(np.full(60, v))
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)

    x, y, g = volumes(8, 3)
    grouped, _ = fit_classifier(x, y, ("f0", "f1"), ("a", "b"), groups=g)
    mixed, _ = fit_classifier(x, y, ("f0", "f1"), ("a", "b"))
    assert grouped.temperature > mixed.temperature
    xt, yt, _ = volumes(8, int(rng.integers(100, 200)))
    ece = {}
    for name, clf in (("grouped", grouped), ("mixed", mixed)):
        p = clf.predict_proba(xt)
        ece[name] = expected_calibration_error(p, np.array(clf.classes)[p.argmax(1)] == yt)
    assert ece["grouped"] < ece["mixed"]


def test_spines_at_the_dataset_border_are_not_counted(tmp_path):
    """A branch the border cuts leaves a spine-like stub: spines within 50 nm (and 2 voxels) of a
    face of the volume do not count towards the spine density; the others do. The far faces are
    the last voxels' centres (990, 990, 225 nm here), not shape * voxel: a spine at x = 945 nm is
    within 50 nm of the far x face."""
    from syngraph.io.volume import create_layer
    from syngraph.steps.celltypes import load_cell_inputs, off_border

    truth = _workdir(tmp_path, seed=5, n_per_type={"spiny": 1})
    create_layer(tmp_path, "sv", (100, 100, 10), "uint64", (10.0, 10.0, 25.0))  # 1000 x 1000 x 250 nm
    xyz = np.array([[500, 500, 125], [60, 940, 75], [30, 500, 125], [500, 500, 240], [500, 500, 40]], float)
    np.testing.assert_array_equal(off_border(xyz, np.array([1000.0, 1000, 250]), np.array([50.0, 50, 50])),
                                  [True, True, False, False, False])
    xyz = np.r_[xyz, [[945, 500, 125]]]
    write_table_atomic(pa.table({"cell_id": pa.array([1] * 6, pa.uint64()), "node_id": np.arange(6),
                                 "x_nm": xyz[:, 0], "y_nm": xyz[:, 1], "z_nm": xyz[:, 2]}),
                       tmp_path / "tables" / "spines.parquet")
    inputs = load_cell_inputs(tmp_path)
    assert len(inputs.spines) == 2 and list(truth) == [1]
    f = inputs.features().loc[1]
    den_um = (f["frac_shaft"] + f["frac_spine"]) * f["cable_um"]
    assert f["spines_per_um_dendrite"] == pytest.approx(2 / den_um)
