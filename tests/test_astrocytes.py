"""Step astrocytes: features against geometric oracles, the model, the splitting rules."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from test_rag import SERIAL, make_project

from syngraph.bbox import BBox
from syngraph.models.astrocyte import (
    CONTEXT_FEATURES,
    FEATURES,
    AdaptedStage,
    ContextModel,
    GraphData,
    LogisticModel,
    context_features,
    cross_validate,
    cross_validate_context,
    default_model,
    fit_adapter,
    fit_context_model,
    fit_logistic,
    load_model,
    tissue_relative,
)
from syngraph.project import Project
from syngraph.steps.astrocytes import (
    MOMENTS,
    block_morphology,
    hull_volume_nm3,
    run_astrocytes,
    shape_features,
    split_astrocytes,
    train_astrocytes,
)
from syngraph.steps.cells import CellsError, run_cells
from syngraph.steps.rag import run_rag


def test_block_morphology_cube_oracle_and_blockwise():
    lab = np.zeros((12, 10, 8), np.uint64)
    lab[2:8, 2:6, 1:5] = 7  # 6 x 4 x 4 box
    vs = (2.0, 3.0, 5.0)
    whole = block_morphology(lab, BBox.from_shape(lab.shape), BBox.from_shape(lab.shape), vs).to_pydict()
    i = whole["sv_id"].index(7)
    assert whole["n_vx"][i] == 96
    # faces: 2 x-faces of 4x4 (area 3*5), 2 y-faces of 6x4 (2*5), 2 z-faces of 6x4 (2*3)
    assert whole["area_nm2"][i] == pytest.approx(2 * 16 * 15 + 2 * 24 * 10 + 2 * 24 * 6)
    assert whole["contact_area_nm2"][i] == 0.0  # touches only background
    lab2 = lab.copy()
    lab2[8:10, 2:6, 1:5] = 9  # a 2 x 4 x 4 box on the cube's +x face: 16 shared x-faces
    two = block_morphology(lab2, BBox.from_shape(lab.shape), BBox.from_shape(lab.shape), vs).to_pydict()
    for sv in (7, 9):
        assert two["contact_area_nm2"][two["sv_id"].index(sv)] == pytest.approx(16 * 15)
    # blockwise sums equal the whole-volume sums for counts and area
    tot = {"n_vx": 0, "area_nm2": 0.0}
    for x0 in (0, 5):
        for z0 in (0, 3):
            core = BBox((x0, 0, z0), (min(x0 + 5, 12) if x0 == 0 else 12, 10, 3 if z0 == 0 else 8))
            read = core.grow(8, clip=BBox.from_shape(lab.shape))
            t = block_morphology(lab[read.slices], core, read, vs).to_pydict()
            if 7 in t["sv_id"]:
                j = t["sv_id"].index(7)
                tot["n_vx"] += t["n_vx"][j]
                tot["area_nm2"] += t["area_nm2"][j]
    assert tot["n_vx"] == 96 and tot["area_nm2"] == pytest.approx(whole["area_nm2"][i])


def _shape_of(tables, sv_id, vs):
    """Solidity, elongation, flatness of one label from block tables (summed / merged)."""
    rows = [t for t in tables if sv_id in t["sv_id"]]
    idx = [t["sv_id"].index(sv_id) for t in rows]
    mom = np.array([[sum(t[m][i] for t, i in zip(rows, idx, strict=True)) for m in MOMENTS]])
    n_vx = np.array([sum(t["n_vx"][i] for t, i in zip(rows, idx, strict=True))], float)
    pts = np.concatenate([np.reshape(t["hull_vx"][i], (-1, 3)) for t, i in zip(rows, idx, strict=True)])
    return shape_features(mom, n_vx, np.array([hull_volume_nm3(pts, vs)]), vs)[0]


def test_shape_features_oracles_and_blockwise():
    """Convex hull and inertia: a box is solid and as elongated as its sides say, an L is not
    solid, and every block split gives the whole-volume numbers."""
    from scipy.spatial import ConvexHull

    vs = (10.0, 10.0, 25.0)
    lab = np.zeros((40, 30, 16), np.uint64)
    lab[2:38, 4:8, 3:7] = 5  # a 360 x 40 x 100 nm rod
    lab[4:8, 10:28, 2:14] = 6  # an L: a 40 x 180 x 300 nm slab ...
    lab[4:30, 10:14, 2:5] = 6  # ... and a foot along x
    full = BBox.from_shape(lab.shape)
    whole = block_morphology(lab, full, full, vs).to_pydict()
    rod = _shape_of([whole], 5, vs)
    assert rod[0] == pytest.approx(1.0)
    # a box of side lengths s has variance (s^2 - v^2) / 12 + v^2 / 12 = s^2 / 12 per axis
    assert rod[1] == pytest.approx(np.log10(360 / 100), abs=1e-9)
    assert rod[2] == pytest.approx(np.log10(100 / 40), abs=1e-9)
    ell = _shape_of([whole], 6, vs)
    corners = np.array([(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
    vox = np.argwhere(lab == 6).astype(float)
    hull = ConvexHull(((vox[:, None, :] + corners[None]).reshape(-1, 3)) * np.array(vs)).volume
    assert ell[0] == pytest.approx((lab == 6).sum() * np.prod(vs) / hull)
    assert ell[0] < 0.7
    for bs in ((7, 30, 16), (13, 11, 5), (40, 30, 3)):
        tables = []
        for x0 in range(0, 40, bs[0]):
            for y0 in range(0, 30, bs[1]):
                for z0 in range(0, 16, bs[2]):
                    core = BBox((x0, y0, z0), (min(x0 + bs[0], 40), min(y0 + bs[1], 30), min(z0 + bs[2], 16)))
                    read = core.grow(8, clip=full)
                    tables.append(block_morphology(lab[read.slices], core, read, vs).to_pydict())
        for sv_id, ref in ((5, rod), (6, ell)):
            assert _shape_of(tables, sv_id, vs) == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_split_rules_hand_graph():
    # component A: chain 1-2-3-4-5 (each sv 100 nm long in x, side by side); 3 is a tiny astro
    # fragment -> stays neuron. component B: 10 (big astro) - 11 (small neuron orphan) -> 11 astro.
    # component C: 20 astro, 21 neuron, both small: no big neuron -> all astrocyte.
    # component D: 30 big astro, 31 big neuron, 32 small neuron hanging on 30 -> 32 orphan -> astro.
    ids = np.array([1, 2, 3, 4, 5, 10, 11, 20, 21, 30, 31, 32], np.uint64)
    edges = np.array([[1, 2], [2, 3], [3, 4], [4, 5], [10, 11], [20, 21], [30, 31], [30, 32]], np.uint64)
    bmin = np.zeros((12, 3), int)
    bmax = np.ones((12, 3), int)
    bmin[:5, 0] = [0, 100, 200, 300, 400]
    bmax[:5, 0] = [100, 200, 201, 400, 500]
    bmax[[5, 9, 10], 0] = 200
    astro = np.array([0, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 0], bool)
    out = split_astrocytes(ids, edges, astro, bmin, bmax, (1.0, 1.0, 1.0), 50.0)
    assert out.astype(int).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1]


def test_model_roundtrip_fit_and_cv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(FEATURES)))
    y = (x[:, 4] - x[:, 2] > 0).astype(float)
    model = fit_logistic(x, y)
    assert ((model.predict(x) >= 0.5) == y).mean() >= 0.97
    assert cross_validate(x, y) >= 0.93
    path = model.save(tmp_path / "m.npz")
    again = LogisticModel.load(path)
    assert np.array_equal(again.predict(x), model.predict(x))
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert all(z[k].dtype != object for k in z.files)
    with pytest.raises(ValueError, match=rf"expects features of shape \(n, {len(FEATURES)}\)"):
        model.predict(x[:, :3])
    shipped = default_model()
    assert isinstance(shipped, ContextModel)
    assert shipped.local.feature_names == FEATURES
    assert shipped.context.feature_names == FEATURES + CONTEXT_FEATURES


def test_context_features_oracle():
    ids = np.array([1, 2, 3, 4], np.uint64)
    p = np.array([0.9, 0.1, 0.6, 0.2])
    edges = np.array([[1, 2], [2, 3], [9, 2]], np.uint64)  # 9 is unknown: ignored
    contacts = np.array([[1, 4], [3, 4]], np.uint64)
    c = context_features(ids, p, edges, contacts, np.array([1.0, 3.0]))
    assert c[:, 0] == pytest.approx(np.log10(1 + np.array([1, 2, 1, 0])))
    assert c[:, 1] == pytest.approx([0.1, 0.9, 0.1, 0.0])  # max neighbour probability
    assert c[:, 2] == pytest.approx([0.1, 0.75, 0.1, 0.0])  # mean
    assert c[:, 3].tolist() == [0, 2, 0, 0]  # neighbours >= 0.5
    assert c[:, 4] == pytest.approx([0.2, 0.0, 0.2, (0.9 * 1 + 0.6 * 3) / 4])  # area-weighted


def _graph_tissue(rng: np.random.Generator, n_cells: int = 12) -> GraphData:
    """Chains of supervoxels; one in four chains is an astrocyte whose supervoxels look like a
    neuron's half the time (the local features alone cannot tell), every chain has true edges."""
    feats, labels, edges, start = [], [], [], 1
    for c in range(n_cells):
        astro = c % 4 == 0
        k = 6
        x = 0.3 * rng.normal(size=(k, len(FEATURES)))
        x[:, 4] += np.where(astro & (rng.random(k) < 0.5), 2.5, 0.0)  # branchiness
        feats.append(x)
        labels += [float(astro)] * k
        ids = np.arange(start, start + k)
        edges += [(a, a + 1) for a in ids[:-1]]
        start += k
    x = np.concatenate(feats)
    ids = np.arange(1, x.shape[0] + 1, dtype=np.uint64)
    return GraphData(ids, x, np.array(edges, np.uint64), np.zeros((0, 2), np.uint64), np.zeros(0),
                     np.arange(ids.size), np.array(labels))


@pytest.mark.parametrize("learner", ["logistic", "boosted"])
def test_context_model_beats_local_and_roundtrips(tmp_path, learner):
    rng = np.random.default_rng(1)
    train = [_graph_tissue(rng) for _ in range(4)]
    test = _graph_tissue(rng)
    model = fit_context_model(train, learner=learner)
    local_acc = ((model.predict(test.features) >= 0.5) == test.y).mean()
    ctx_acc = ((model.refine(test.features, test.context(model.predict(test.features))) >= 0.5) == test.y).mean()
    assert local_acc < 0.95 and ctx_acc >= local_acc + 0.05, (local_acc, ctx_acc)
    assert min(cross_validate_context(train, learner=learner)) >= 0.85
    path = model.save(tmp_path / "ctx.npz")
    again = load_model(path)
    assert isinstance(again, ContextModel)
    ctx = test.context(again.predict(test.features))
    assert np.array_equal(again.refine(test.features, ctx), model.refine(test.features, ctx))
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def toy_tissue() -> tuple[np.ndarray, dict[int, bool]]:
    """Thick straight 'dendrites' (astrocyte False) and a thin branched 'astrocyte' tree (True)."""
    lab = np.zeros((64, 64, 24), np.uint64)
    x, y, z = np.meshgrid(np.arange(64), np.arange(64), np.arange(24), indexing="ij")
    truth = {}
    for k, (yc, zc) in enumerate([(10, 6), (30, 12), (52, 17)]):
        lab[((y - yc) ** 2 + ((z - zc) * 2) ** 2) <= 36] = 100 + k  # radius 6 vx along x
        truth[100 + k] = False
    tree = np.zeros_like(lab, bool)
    for yc in range(4, 64, 8):  # a comb: one spine along y plus many thin teeth along x
        tree |= (np.abs(y - yc) <= 0) & (np.abs(z - 3) <= 0) & (x < 40)
    tree |= (np.abs(x - 40) <= 0) & (np.abs(z - 3) <= 0)
    lab[tree & (lab == 0)] = 200
    truth[200] = True
    return lab, truth


def test_one_label_cross_validates_to_zero_with_every_learner():
    """One labelled row leaves nothing to fit on when it is held out: accuracy 0 for adapt as for logistic."""
    rng = np.random.default_rng(5)
    base = fit_context_model([_graph_tissue(rng)], learner="logistic")
    one = _labelled(_graph_tissue(rng), np.array([0]))
    assert cross_validate_context([one], learner="adapt", base=base) == [0.0]
    assert cross_validate_context([one], learner="logistic") == [0.0]


def test_run_astrocytes_end_to_end(tmp_path):
    lab, truth = toy_tissue()
    wd = make_project(tmp_path, lab, voxel_size_nm=(20.0, 20.0, 40.0), chunks=(32, 32, 24),
                      block=(32, 32, 24), min_cc_size_nm=500.0)
    run_rag(wd, compute=SERIAL)
    # train on this tissue's labels (the default model is trained on the demo tissue instead)
    labels = tmp_path / "labels.csv"
    labels.write_text("sv_id,is_astrocyte\n" + "".join(f"{k},{int(v)}\n" for k, v in truth.items()))
    with pytest.raises(ValueError, match="both classes"):
        lbl1 = tmp_path / "one.csv"
        lbl1.write_text("sv_id,is_astrocyte\n100,0\n101,0\n")
        train_astrocytes(wd, lbl1, compute=SERIAL, learner="logistic")
    with pytest.raises(CellsError, match="--learner 'forest'"):
        train_astrocytes(wd, labels, compute=SERIAL, learner="forest")
    with pytest.raises(CellsError, match="--base .*no such file"):
        train_astrocytes(wd, labels, compute=SERIAL, base=tmp_path / "missing.npz")
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, kind=np.array(["logistic"]))
    truncated.write_bytes(truncated.read_bytes()[:40])
    with pytest.raises(CellsError, match="--base .*not a usable astrocyte model file .*BadZipFile"):
        train_astrocytes(wd, lbl1, compute=SERIAL, base=truncated)
    adapted, _ = train_astrocytes(wd, lbl1, compute=SERIAL, out=tmp_path / "adapted.npz")  # auto: few -> adapt
    one_row = tmp_path / "one_row.csv"
    one_row.write_text("sv_id,is_astrocyte\n100,0\n")
    assert train_astrocytes(wd, one_row, compute=SERIAL, out=tmp_path / "one_row.npz")[1] == 0.0
    with np.load(adapted, allow_pickle=False) as z:
        assert str(z["kind"][0]) == "adapted" and str(z["context_kind"][0]) == "adapted"
    path, acc = train_astrocytes(wd, labels, compute=SERIAL, folds=2, learner="logistic")
    with np.load(path, allow_pickle=False) as z:
        assert str(z["kind"][0]) == "logistic" and str(z["context_kind"][0]) == "logistic"
    feats = Project(wd).objects("sv_features").to_pydict()
    i_tree, i_den = feats["sv_id"].index(200), feats["sv_id"].index(100)
    assert feats["log_branchiness"][i_tree] > feats["log_branchiness"][i_den] + 0.5
    assert feats["log_thickness_nm"][i_tree] < feats["log_thickness_nm"][i_den]
    cfgp = wd / "syngraph.toml"
    cfgp.write_text(cfgp.read_text().replace("[cells]\n", f'[cells]\nastrocyte_model = "{path}"\n'))
    rep = run_astrocytes(wd, compute=SERIAL)
    cls = Project(wd).objects("sv_class").to_pydict()
    assert {s: k == "astrocyte" for s, k in zip(cls["sv_id"], cls["kind"], strict=True)} == truth
    assert rep.n_astrocyte_sv == 1
    run_cells(wd, compute=SERIAL)
    kinds = dict(zip(*Project(wd).objects("cells").select(["cell_id", "kind"]).to_pydict().values(), strict=True))
    assert kinds == {100: "neuron", 101: "neuron", 102: "neuron", 200: "astrocyte"}
    _ = pa


def test_tissue_relative_removes_a_scale(tmp_path):
    """Thinner neurites (every length halved) give the same relative sizes, and a relative
    model predicts the same on both; the flag survives save and load."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, len(FEATURES)))
    half = x.copy()
    for f, k in (("log_volume_um3", 3), ("log_surface_to_volume", -1), ("log_thickness_nm", 1), ("log_max_radius_nm", 1)):
        half[:, FEATURES.index(f)] += k * np.log10(0.5)
    assert np.allclose(tissue_relative(half), tissue_relative(x))
    assert np.allclose(tissue_relative(tissue_relative(x)), tissue_relative(x))
    train = _graph_tissue(np.random.default_rng(2))
    train = GraphData(train.ids, train.features + np.r_[2.0, 1.0, 0.5, 0.5, np.zeros(len(FEATURES) - 4)],
                      train.edges, train.contacts, train.contact_area, train.labelled, train.y)
    model = fit_context_model([train], learner="logistic", relative=True)
    again = load_model(model.save(tmp_path / "rel.npz"))
    assert isinstance(again, ContextModel) and again.relative
    shifted = train.features - np.r_[1.0, 0.5, 0.3, 0.3, np.zeros(len(FEATURES) - 4)]  # another scale
    assert np.allclose(again.predict(shifted), model.predict(train.features))
    assert not np.allclose(fit_context_model([train], learner="logistic").predict(shifted),
                           model.predict(train.features))


def _labelled(d: GraphData, rows: np.ndarray) -> GraphData:
    return GraphData(d.ids, d.features, d.edges, d.contacts, d.contact_area, rows, d.y[rows])


def _accuracy(model: ContextModel, d: GraphData) -> float:
    return float(((model.refine(d.features, d.context(model.predict(d.features))) >= 0.5) == (d.y > 0.5)).mean())


def test_adapted_model_keeps_the_base_on_its_tissue_and_follows_labels_elsewhere(tmp_path):
    """Few labels that agree with the base model leave it nearly unchanged; labels of a tissue
    where the base is wrong (the astrocyte marker is another feature) override it; labels of one
    class (no astrocyte here) are enough; the adapted model saves and loads."""
    rng = np.random.default_rng(3)
    base = fit_context_model([_graph_tissue(rng) for _ in range(4)], learner="logistic")
    same, same_test = _graph_tissue(rng), _graph_tissue(rng)
    rows = rng.choice(same.ids.size, 20, replace=False)
    adapted = fit_context_model([_labelled(same, rows)], learner="adapt", base=base)
    assert isinstance(adapted.local, AdaptedStage) and isinstance(adapted.context, AdaptedStage)
    fresh = fit_context_model([_labelled(same, rows)], learner="logistic")  # the same labels, no prior
    drift = [np.median(np.abs(m.predict(same_test.features) - base.predict(same_test.features))) for m in (adapted, fresh)]
    assert drift[0] < 0.12 and drift[0] < drift[1], drift
    assert _accuracy(adapted, same_test) >= _accuracy(base, same_test) - 0.01 > _accuracy(fresh, same_test)

    def foreign(r: np.random.Generator) -> GraphData:  # the marker moved from branchiness to flatness
        d = _graph_tissue(r)
        x = d.features.copy()
        x[:, [4, 11]] = x[:, [11, 4]]
        x[:, 4] += 2.5 * (r.random(x.shape[0]) < 0.3)  # neurons now look branchy to the base model
        return GraphData(d.ids, x, d.edges, d.contacts, d.contact_area, d.labelled, d.y)

    f_train, f_test = foreign(rng), foreign(rng)
    base_acc = _accuracy(base, f_test)
    adapted = fit_context_model([_labelled(f_train, np.arange(0, f_train.ids.size, 2))], learner="adapt", base=base)
    assert base_acc < 0.8 and _accuracy(adapted, f_test) >= base_acc + 0.15, (base_acc, _accuracy(adapted, f_test))

    neurons = np.flatnonzero(f_train.y == 0)[:30]  # one class: this tissue has no astrocyte
    none = fit_context_model([_labelled(f_train, neurons)], learner="adapt", base=base)
    neuron_rows = f_test.y == 0
    called = lambda m: (m.refine(f_test.features, f_test.context(m.predict(f_test.features))) >= 0.5)[neuron_rows].mean()  # noqa: E731
    assert called(none) < 0.5 * called(base), (called(none), called(base))

    again = load_model(adapted.save(tmp_path / "adapted.npz"))
    assert isinstance(again, ContextModel) and isinstance(again.context, AdaptedStage)
    ctx = f_test.context(again.predict(f_test.features))
    assert np.array_equal(again.refine(f_test.features, ctx), adapted.refine(f_test.features, ctx))
    with pytest.raises(ValueError, match="trained base stage"):
        fit_context_model([_labelled(f_train, neurons)], learner="adapt", base=adapted)
    assert fit_adapter(base.local, same.features[:5], same.y[:5]).n_train == 5
