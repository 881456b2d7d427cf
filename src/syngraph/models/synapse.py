"""The synapse probability classifier: a random forest on per-synapse features (plain arrays).

Features (the reference's 14-feature RFC, adapted: pre/post instead of partner order, and the sj
probability statistics): size, junction area, mean and max sj probability, vesicle cloud and
mitochondria voxels and nearest distances on each side, and the direction confidence.
The default model ships in ``models/data/synapse_forest.npz`` (the trees as plain arrays: loads in
milliseconds, never unpickles, predicts without scikit-learn), trained on demo tissue ground truth
(``python -m syngraph.models.synapse`` retrains it); ``syngraph train synapses --labels TABLE`` fits
one from labelled points. A model file stores the distribution of its training candidates'
features (:mod:`syngraph.models.domain`); the synapses step measures new candidates against it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from syngraph.models.domain import Domain
from syngraph.models.npz import write_npz
from syngraph.models.trees import Trees, from_random_forest

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
DEFAULT_MODEL = Path(__file__).parent / "data" / "synapse_forest.npz"
FAR_NM = 1e5  # stands in for "none within the search radius"


def feature_matrix(syn: pa.Table) -> np.ndarray:
    """(n, len(FEATURES)) float64 matrix; infinite distances become FAR_NM."""
    cols = []
    for name in FEATURES:
        v = syn[name].to_numpy().astype(np.float64) if name in syn.column_names else np.zeros(syn.num_rows)
        cols.append(np.where(np.isfinite(v), v, FAR_NM))
    return np.stack(cols, axis=1) if cols else np.zeros((syn.num_rows, 0))


class Forest:
    """A fitted random forest as plain arrays (:class:`~syngraph.models.trees.Trees`, node
    ``value`` = class-1 probability): no pickle, no scikit-learn needed to predict. ``domain``:
    the training candidates' feature distribution (None in a file saved without one)."""

    def __init__(self, trees: Trees, features: tuple[str, ...] | list[str], domain: Domain | None = None):
        self.trees = trees
        self.features = tuple(str(f) for f in features)
        self.domain = domain

    @classmethod
    def from_sklearn(cls, model: Any, features: tuple[str, ...] = FEATURES, domain: Domain | None = None) -> Forest:
        return cls(from_random_forest(model), features, domain)

    def predict_proba1(self, x: np.ndarray) -> np.ndarray:
        """Mean class-1 probability over the trees for each row of ``x``."""
        return self.trees.leaf_sum(x) / self.trees.roots.size

    def save(self, path: str | Path) -> None:
        t = self.trees
        dom = self.domain.arrays() if self.domain is not None else {}
        write_npz(path, {"left": t.left, "right": t.right, "feature": t.feature, "threshold": t.threshold,
                         "prob": t.value, "roots": t.roots, "features": np.array(self.features), **dom})

    @classmethod
    def load(cls, path: str | Path) -> Forest:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"synapse model {path} not found; train one with `syngraph train synapses --labels TABLE`"
            )
        with np.load(path, allow_pickle=False) as z:
            trees = Trees.build(z["left"], z["right"], z["feature"], z["threshold"], z["prob"], z["roots"])
            domain = Domain.from_arrays(z)
            if domain is not None and domain.names != FEATURES:
                raise ValueError(f"stored domain features {domain.names} differ from {FEATURES}")
            return cls(trees, z["features"].tolist(), domain)


def load_forest(model_path: str | Path | None = None) -> Forest:
    """The synapse classifier in ``model_path`` (``synapses.model``), or the shipped default."""
    from syngraph.models.files import load_model_file

    return load_model_file(_load_checked, model_path, "synapses.model")


def _load_checked(model_path: Path | None) -> Forest:
    forest = Forest.load(model_path or DEFAULT_MODEL)
    if forest.features != FEATURES:
        raise ValueError(f"synapse model {model_path} was trained on features {forest.features}, "
                         f"this version computes {FEATURES}; retrain it")
    return forest


def fit(x: np.ndarray, y: np.ndarray, seed: int = 0, domain_rows: np.ndarray | None = None) -> tuple[Forest, float]:
    """Fit a random forest (scikit-learn); returns it as a :class:`Forest` and its CV accuracy.

    ``domain_rows``: the features whose distribution the model file stores (default ``x``): every
    candidate of the tissue the model is for, labelled or not."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import cross_val_score

    model = RandomForestClassifier(n_estimators=100, max_features="sqrt", min_samples_leaf=2,
                                   max_depth=12, random_state=seed, n_jobs=1)
    folds = int(min(5, np.bincount(y.astype(int)).min())) if len(np.unique(y)) > 1 else 0
    cv = float(cross_val_score(model, x, y, cv=folds).mean()) if folds >= 2 else float("nan")
    model.fit(x, y)
    return Forest.from_sklearn(model, domain=Domain.fit(x if domain_rows is None else domain_rows, FEATURES)), cv


def candidate_labels_from_truth(workdir: str | Path, max_dist_nm: float = 500.0) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of a demo project's synapse candidates (1 = matches a true synapse)."""
    import pyarrow.parquet as pq

    from syngraph.evaluate.synapses import match_synapses
    from syngraph.graph import map_to_cells

    wd = Path(workdir)
    syn = pq.read_table(wd / "tables" / "syn_ssv.parquet")
    gt = pq.read_table(wd / "gt" / "synapses.parquet")
    s2c = pq.read_table(wd / "gt" / "sv_to_cell.parquet").sort_by("sv_id")
    ids, cells = s2c["sv_id"].to_numpy(), s2c["cell_id"].to_numpy()
    pairs = np.stack([map_to_cells(syn[c].to_numpy(), ids, cells) for c in ("pre_sv_id", "post_sv_id")], 1)
    vs = np.asarray(__import__("json").loads(pq.read_schema(wd / "tables" / "syn_ssv.parquet")
                                              .metadata[b"voxel_size_nm"]))
    det_nm = np.stack([syn[f"{a}_vx"].to_numpy() for a in "xyz"], 1) * vs
    gt_nm = np.stack([gt[f"{a}_nm"].to_numpy() for a in "xyz"], 1)
    gt_pairs = np.stack([gt["pre_cell_id"].to_numpy(), gt["post_cell_id"].to_numpy()], 1)
    di, _ = match_synapses(pairs, det_nm, gt_pairs, gt_nm, max_dist_nm)
    y = np.zeros(syn.num_rows, np.int64)
    y[di] = 1
    return feature_matrix(syn), y


def train_synapses(
    workdir: str | Path, labels: str | Path, out: str | Path | None = None, max_dist_nm: float = 500.0
) -> tuple[Path, float]:
    """Fit the classifier from labelled points (``x_nm, y_nm, z_nm, label`` with label 1/0 or
    synaptic/non-synaptic): each point labels the candidate whose centre is nearest, within
    ``max_dist_nm``. Writes ``<wd>/models/synapse_forest.npz``; returns it and the CV accuracy."""
    import json

    import pyarrow.parquet as pq
    from scipy.spatial import cKDTree

    from syngraph.errors import InputError

    wd = Path(workdir)
    from syngraph.io.tables import read_table_file

    labels = Path(labels)
    pts = read_table_file(labels, "--labels")
    missing = {"x_nm", "y_nm", "z_nm", "label"} - set(pts.column_names)
    if missing:
        raise InputError(f"{labels}: missing columns {sorted(missing)}; expected x_nm, y_nm, z_nm, label")
    syn_path = wd / "tables" / "syn_ssv.parquet"
    syn = pq.read_table(syn_path)
    vs = np.asarray(json.loads(pq.read_schema(syn_path).metadata[b"voxel_size_nm"]))
    centres = np.stack([syn[f"{a}_vx"].to_numpy() for a in "xyz"], 1) * vs
    p = np.stack([pts[f"{a}_nm"].to_numpy().astype(float) for a in "xyz"], 1)
    raw = pts["label"].to_pylist()
    y_pts = np.array([1 if str(v).lower() in ("1", "true", "synaptic", "yes") else 0 for v in raw])
    d, j = cKDTree(centres).query(p)
    ok = d <= max_dist_nm
    if ok.sum() < 4 or len(np.unique(y_pts[ok])) < 2:
        raise InputError(
            f"{labels}: only {int(ok.sum())} labelled points lie within {max_dist_nm} nm of a synapse "
            f"candidate (need both labels); check that x_nm/y_nm/z_nm are in nm"
        )
    every = feature_matrix(syn)
    model, cv = fit(every[j[ok]], y_pts[ok], domain_rows=every)
    path = Path(out) if out else wd / "models" / "synapse_forest.npz"
    model.save(path)
    return path, cv


def main(argv: list[str] | None = None) -> None:
    """Retrain the shipped default from demo projects: ``python -m syngraph.models.synapse WD...``;
    ``--domain-only WD...`` keeps the shipped trees and stores the domain of those projects'
    candidates."""
    import sys

    args = list(argv if argv is not None else sys.argv[1:])
    domain_only = "--domain-only" in args
    wds = [a for a in args if a != "--domain-only"]
    xs, ys = zip(*(candidate_labels_from_truth(wd) for wd in wds), strict=True)
    x, y = np.concatenate(xs), np.concatenate(ys)
    if domain_only:
        old = Forest.load(DEFAULT_MODEL)
        Forest(old.trees, old.features, Domain.fit(x, FEATURES)).save(DEFAULT_MODEL)
        print(f"wrote {DEFAULT_MODEL} (trees unchanged; domain of {len(y)} candidates from {len(wds)} projects)")
        return
    model, cv = fit(x, y)
    model.save(DEFAULT_MODEL)
    print(f"trained on {len(y)} candidates ({int(y.sum())} true) from {len(wds)} projects; "
          f"5-fold CV accuracy {cv:.3f}; wrote {DEFAULT_MODEL}")


if __name__ == "__main__":
    main()
