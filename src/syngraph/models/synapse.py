"""The synapse probability classifier: a random forest on per-synapse features (skops, no pickle).

Features (the reference's 14-feature RFC, adapted: pre/post instead of partner order, and the sj
probability statistics): size, junction area, mean and max sj probability, vesicle cloud and
mitochondria voxels and nearest distances on each side, and the direction confidence.
The default model ships in ``models/data/synapse_rf.skops``, trained on demo tissue ground truth
(``python -m syngraph.models.synapse`` retrains it); ``syngraph train synapses --labels TABLE`` fits
one from labelled points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

FEATURES = (
    "size_vx",
    "area_um2",
    "sj_mean",
    "sj_max",
    "vc_pre_vx",
    "vc_post_vx",
    "vc_pre_dist_nm",
    "vc_post_dist_nm",
    "mi_pre_vx",
    "mi_post_vx",
    "mi_pre_dist_nm",
    "mi_post_dist_nm",
    "direction_conf",
)
DEFAULT_MODEL = Path(__file__).parent / "data" / "synapse_rf.skops"
FAR_NM = 1e5  # stands in for "none within the search radius"
TRUSTED = ["sklearn.ensemble._forest.RandomForestClassifier", "sklearn.tree._classes.DecisionTreeClassifier"]


def feature_matrix(syn: pa.Table) -> np.ndarray:
    """(n, len(FEATURES)) float64 matrix; infinite distances become FAR_NM."""
    cols = []
    for name in FEATURES:
        v = syn[name].to_numpy().astype(np.float64) if name in syn.column_names else np.zeros(syn.num_rows)
        cols.append(np.where(np.isfinite(v), v, FAR_NM))
    return np.stack(cols, axis=1) if cols else np.zeros((syn.num_rows, 0))


def save_model(model: Any, path: str | Path) -> None:
    import skops.io as sio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    sio.dump(model, tmp)
    tmp.replace(path)


def load_model(path: str | Path = DEFAULT_MODEL) -> Any:
    """Load a skops model, trusting only the random-forest types (never an arbitrary pickle)."""
    import skops.io as sio

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"synapse model {path} not found; train one with `syngraph train synapses --labels TABLE`"
        )
    untrusted = sio.get_untrusted_types(file=path)
    extra = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
    if extra:
        raise ValueError(f"synapse model {path} contains untrusted types {extra}; refusing to load it")
    return sio.load(path, trusted=untrusted)


def predict_synapse_prob(syn: pa.Table, model_path: str | Path | None = None) -> np.ndarray:
    """Probability that each candidate is a synapse."""
    if syn.num_rows == 0:
        return np.zeros(0, np.float32)
    model = load_model(model_path or DEFAULT_MODEL)
    return model.predict_proba(feature_matrix(syn))[:, 1].astype(np.float32)


def fit(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[Any, float]:
    """Fit a random forest; returns the model and its 5-fold cross-validated accuracy."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import cross_val_score

    model = RandomForestClassifier(n_estimators=200, max_features="sqrt", min_samples_leaf=2,
                                   random_state=seed, n_jobs=1)
    folds = int(min(5, np.bincount(y.astype(int)).min())) if len(np.unique(y)) > 1 else 0
    cv = float(cross_val_score(model, x, y, cv=folds).mean()) if folds >= 2 else float("nan")
    model.fit(x, y)
    return model, cv
