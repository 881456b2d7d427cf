"""The default astrocyte classifier: logistic regression on per-supervoxel morphology and
organelle features, stored as plain arrays in an ``.npz`` (loaded with ``allow_pickle=False``).

Any object with ``predict(features) -> probability`` (features: ``(n, len(FEATURES))`` float64,
columns in :data:`FEATURES` order) can replace it (``run_astrocytes(..., classifier=obj)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

FEATURES: tuple[str, ...] = (
    "log_volume_um3",  # log10 of the supervoxel volume
    "log_surface_to_volume",  # log10 of boundary area (um2) / volume (um3)
    "log_thickness_nm",  # log10 of 3 x mean distance-transform value (~ radius of a cylinder)
    "log_max_radius_nm",  # log10 of the largest distance-transform value
    "log_branchiness",  # log10 of cable length A^2/(4 pi V) / bbox diagonal: ~0 for a straight cable
    "mi_density",  # fraction of the supervoxel's voxels inside mitochondria
    "vc_density",  # fraction inside vesicle clouds
    "log_partners_per_um",  # log10(1 + touching supervoxels per um of estimated cable length)
    "contact_fraction",  # fraction of the boundary area touching other supervoxels (not background)
)

DEFAULT_MODEL_PATH = Path(__file__).parent / "data" / "astrocyte_default.npz"


class AstrocyteClassifier(Protocol):
    def predict(self, features: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class LogisticModel:
    """``p = sigmoid(((x - mean) / scale) @ coef + intercept)``."""

    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    cv_accuracy: float = float("nan")
    n_train: int = 0

    def predict(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(
                f"astrocyte model expects features of shape (n, {len(self.feature_names)}) "
                f"({', '.join(self.feature_names)}), got {x.shape}"
            )
        z = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp, feature_names=np.array(self.feature_names), mean=self.mean, scale=self.scale,
            coef=self.coef, intercept=np.array([self.intercept]),
            cv_accuracy=np.array([self.cv_accuracy]), n_train=np.array([self.n_train]),
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LogisticModel:
        with np.load(path, allow_pickle=False) as z:
            names = tuple(str(n) for n in z["feature_names"])
            if names != FEATURES:
                raise ValueError(
                    f"{path}: model features {names} differ from this syngraph's {FEATURES}; "
                    f"retrain with `syngraph train astrocytes --labels TABLE`"
                )
            return cls(names, z["mean"], z["scale"], z["coef"], float(z["intercept"][0]),
                       float(z["cv_accuracy"][0]), int(z["n_train"][0]))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 100) -> LogisticModel:
    """Fit by Newton's method (IRLS) with an L2 penalty on standardised features; deterministic."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape[0] != y.shape[0] or x.shape[0] < 2 or len(np.unique(y)) < 2:
        raise ValueError(
            f"training needs >= 2 labelled supervoxels of both classes, got {x.shape[0]} rows "
            f"with classes {sorted(set(y.tolist()))}"
        )
    mean = x.mean(0)
    scale = x.std(0)
    scale[scale == 0] = 1.0
    xs = np.c_[(x - mean) / scale, np.ones(x.shape[0])]
    w = np.zeros(xs.shape[1])
    reg = np.full(xs.shape[1], l2 * x.shape[0])
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xs @ w, -50, 50)))
        grad = xs.T @ (p - y) + reg * w
        h = (xs * (p * (1 - p))[:, None]).T @ xs + np.diag(reg) + 1e-9 * np.eye(xs.shape[1])
        step = np.linalg.solve(h, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return LogisticModel(FEATURES, mean, scale, w[:-1], float(w[-1]), n_train=int(x.shape[0]))


def cross_validate(x: np.ndarray, y: np.ndarray, k: int = 5, seed: int = 0, threshold: float = 0.5) -> float:
    """k-fold cross-validated accuracy of :func:`fit_logistic` (folds shuffled with ``seed``)."""
    n = x.shape[0]
    folds = np.array_split(np.random.default_rng(seed).permutation(n), k)
    correct = 0
    for f in folds:
        train = np.setdiff1d(np.arange(n), f)
        if np.unique(y[train]).size < 2:  # a fold with one class left: predict that class
            pred = np.full(f.size, y[train][0] > 0.5) if train.size else np.zeros(f.size, bool)
        else:
            pred = fit_logistic(x[train], y[train]).predict(x[f]) >= threshold
        correct += int((pred == (y[f] > 0.5)).sum())
    return correct / n


def default_model() -> LogisticModel:
    """The shipped model (trained on demo tissue seeds 0-9, see docs/cells.md)."""
    if not DEFAULT_MODEL_PATH.exists():
        raise FileNotFoundError(
            f"the default astrocyte model {DEFAULT_MODEL_PATH} is missing from this installation; "
            f"train one with `syngraph train astrocytes --labels TABLE` and set cells.astrocyte_model"
        )
    return LogisticModel.load(DEFAULT_MODEL_PATH)


def load_model(path: str | Path | None) -> LogisticModel:
    return default_model() if path is None else LogisticModel.load(path)


def demo_labels(workdir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(sv_ids sorted, is_astrocyte 0/1)`` from a demo tissue's ``gt/sv_to_cell`` + ``gt/cells``."""
    import pyarrow.parquet as pq

    gt = Path(workdir) / "gt"
    cells = pq.read_table(gt / "cells.parquet")
    astro_cells = np.asarray(cells.column("cell_id").to_numpy(), np.uint64)[
        np.asarray(cells.column("type").to_pylist(), dtype=object) == "astrocyte"
    ]
    s2c = pq.read_table(gt / "sv_to_cell.parquet").sort_by("sv_id")
    ids = s2c.column("sv_id").to_numpy().astype(np.uint64)
    y = np.isin(s2c.column("cell_id").to_numpy().astype(np.uint64), astro_cells).astype(float)
    return ids, y


def main(argv: list[str] | None = None) -> int:
    """Train the shipped default model on demo working directories (features from the pipeline).

    ``python -m syngraph.models.astrocyte WD [WD ...] [--out PATH]``: each WD is a demo tissue
    (``syngraph synth``) on which ``syngraph run init`` and ``run rag`` have run; the astrocyte
    features are computed there if missing (``tables/sv_features.parquet``), labels come from
    ``gt/``. Prints the pooled 5-fold and the leave-one-workdir-out accuracy and writes the model
    (default: the shipped :data:`DEFAULT_MODEL_PATH`).
    """
    import argparse

    from syngraph.config import load_config
    from syngraph.engine import Compute
    from syngraph.steps.astrocytes import load_features

    ap = argparse.ArgumentParser(prog="python -m syngraph.models.astrocyte", description=main.__doc__)
    ap.add_argument("workdirs", nargs="+", type=Path, help="demo working directories")
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH, help="model file to write")
    args = ap.parse_args(argv)
    xs, ys, groups = [], [], []
    for g, wd in enumerate(args.workdirs):
        f_ids, f = load_features(wd, load_config(wd), Compute(scheduler="serial"), False)
        ids, y = demo_labels(wd)
        pos = np.minimum(np.searchsorted(f_ids, ids), max(f_ids.size - 1, 0))
        if f_ids.size == 0 or not np.array_equal(f_ids[pos], ids):
            raise ValueError(f"{wd}: gt/sv_to_cell names supervoxels missing from tables/sv_features.parquet")
        xs.append(f[pos])
        ys.append(y)
        groups.append(np.full(ids.size, g))
        print(f"{wd}: {ids.size} supervoxels, {int(y.sum())} astrocyte")
    x, y, grp = np.concatenate(xs), np.concatenate(ys), np.concatenate(groups)
    cv = cross_validate(x, y, k=5)
    held = []
    for g in range(len(args.workdirs)):
        tr = grp != g
        if np.unique(y[tr]).size == 2:
            held.append(float(((fit_logistic(x[tr], y[tr]).predict(x[~tr]) >= 0.5) == (y[~tr] > 0.5)).mean()))
    model = fit_logistic(x, y)
    model = LogisticModel(model.feature_names, model.mean, model.scale, model.coef, model.intercept, cv, model.n_train)
    model.save(args.out)
    print(f"5-fold CV accuracy {cv:.4f} on {y.size} supervoxels ({int(y.sum())} astrocyte); "
          f"leave-one-workdir-out accuracy {', '.join(f'{h:.3f}' for h in held)}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
