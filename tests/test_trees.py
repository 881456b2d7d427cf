"""Tree ensembles stored as plain arrays give scikit-learn's own predictions."""

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

from syngraph.models.astrocyte import BoostedModel, fit_boosted
from syngraph.models.trees import Trees, from_gradient_boosting, from_random_forest


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = ((x[:, 0] * x[:, 1] > 0) ^ (x[:, 2] > 1)).astype(int)  # needs interactions
    return x, y


def test_gradient_boosting_arrays_equal_sklearn():
    x, y = _data()
    x[::17, 3] = np.nan  # missing values follow the stored side
    model = HistGradientBoostingClassifier(max_iter=50, max_leaf_nodes=7, random_state=0).fit(x, y)
    trees, baseline = from_gradient_boosting(model)
    xt, _ = _data(300, seed=1)
    xt[::5, 3] = np.nan
    p = 1 / (1 + np.exp(-(baseline + trees.leaf_sum(xt, chunk=64))))
    assert np.allclose(p, model.predict_proba(xt)[:, 1], atol=1e-12)
    assert ((p >= 0.5) == model.predict(xt)).all()


def test_random_forest_arrays_equal_sklearn():
    x, y = _data()
    model = RandomForestClassifier(20, min_samples_leaf=2, random_state=0).fit(x, y)
    trees = from_random_forest(model)
    xt, _ = _data(300, seed=2)
    assert np.allclose(trees.leaf_sum(xt) / trees.roots.size, model.predict_proba(xt)[:, 1], atol=1e-12)


def test_boosted_stage_roundtrip_plain_arrays(tmp_path):
    x, y = _data()
    names = tuple(f"f{i}" for i in range(5))
    m = fit_boosted(x, y.astype(float), names)
    assert ((m.predict(x) >= 0.5) == y).mean() >= 0.95  # learns the interactions
    np.savez(tmp_path / "m.npz", **m.arrays("s_"))
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
        again = BoostedModel.from_arrays(z, "s_", names, tmp_path / "m.npz")
    assert np.array_equal(again.predict(x), m.predict(x))
    with pytest.raises(ValueError, match="differ from this syngraph"):
        with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
            BoostedModel.from_arrays(z, "s_", names[:4], tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"expects features of shape \(n, 5\)"):
        m.predict(x[:, :2])


def test_trees_from_arrays_defaults():
    t = Trees.build([1, -1, -1], [2, -1, -1], [0, 0, 0], [0.5, 0, 0], [0.0, -1.0, 1.0], [0])
    assert t.depth == 1
    assert t.leaf_sum(np.array([[0.2], [0.9], [np.nan]])).tolist() == [-1.0, 1.0, 1.0]
