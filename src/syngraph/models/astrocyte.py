"""The default astrocyte classifier, stored as plain arrays in an ``.npz`` (loaded with
``allow_pickle=False``): two stages, each gradient-boosted trees (:class:`BoostedModel`, the
shipped default) or a logistic regression (:class:`LogisticModel`).

1. A per-supervoxel stage on morphology and organelle features (:data:`FEATURES`).
2. A context stage on the same features plus :data:`CONTEXT_FEATURES`, the first stage's
   probabilities of the supervoxel's neighbours in the supervoxel graph and of the supervoxels
   it touches (weighted by contact area). A supervoxel that is part of an astrocyte sits among
   astrocyte supervoxels and is a hub of the agglomeration's merge errors.

A model trained with ``relative=True`` (not the shipped one: docs/models.md) sees the size features
(:data:`SIZE_FEATURES`) relative to the volume: minus their median over the volume's
supervoxels (:func:`tissue_relative`), i.e. as log ratios to the typical supervoxel, so a tissue
with thinner neurites or another voxel size looks like the training tissue. Its ``predict`` and
``refine`` therefore take the features of all supervoxels of one volume at once.

Any object with ``predict(features) -> probability`` (features: ``(n, len(FEATURES))`` float64,
columns in :data:`FEATURES` order) can replace it (``run_astrocytes(..., classifier=obj)``); an
object that also has ``refine(features, context) -> probability`` gets the context stage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from syngraph.models.domain import Domain
from syngraph.models.npz import write_npz
from syngraph.models.trees import Trees, from_gradient_boosting

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
    "solidity",  # volume / convex-hull volume: low for tortuous, much-branched processes
    "log_elongation",  # log10 sqrt(first / second eigenvalue of the voxel covariance)
    "log_flatness",  # log10 sqrt(second / third eigenvalue)
)

CONTEXT_FEATURES: tuple[str, ...] = (
    "log_graph_degree",  # log10(1 + edges of the supervoxel in the pruned graph)
    "graph_max_prob",  # largest first-stage probability among its graph neighbours (0 if none)
    "graph_mean_prob",  # mean first-stage probability of its graph neighbours (0 if none)
    "graph_n_astrocyte",  # graph neighbours with first-stage probability >= 0.5
    "contact_mean_prob",  # contact-area-weighted mean first-stage probability of touching svs
)

# log sizes made relative to the volume (minus the volume's median) by models with ``relative``
SIZE_FEATURES: tuple[str, ...] = ("log_volume_um3", "log_surface_to_volume", "log_thickness_nm", "log_max_radius_nm")

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

    def log_odds(self, features: np.ndarray) -> np.ndarray:
        x = _check_features(features, self.feature_names)
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept

    def predict(self, features: np.ndarray) -> np.ndarray:
        return _sigmoid(self.log_odds(features))

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {
            f"{prefix}kind": np.array(["logistic"]),
            f"{prefix}feature_names": np.array(self.feature_names), f"{prefix}mean": self.mean,
            f"{prefix}scale": self.scale, f"{prefix}coef": self.coef,
            f"{prefix}intercept": np.array([self.intercept]),
            f"{prefix}cv_accuracy": np.array([self.cv_accuracy]), f"{prefix}n_train": np.array([self.n_train]),
        }

    @classmethod
    def from_arrays(cls, z, prefix: str, expected: tuple[str, ...], path: str | Path) -> LogisticModel:
        names = _stored_names(z, prefix, expected, path)
        return cls(names, z[f"{prefix}mean"], z[f"{prefix}scale"], z[f"{prefix}coef"],
                   float(z[f"{prefix}intercept"][0]), float(z[f"{prefix}cv_accuracy"][0]),
                   int(z[f"{prefix}n_train"][0]))

    def save(self, path: str | Path) -> Path:
        return write_npz(path, self.arrays())

    @classmethod
    def load(cls, path: str | Path) -> LogisticModel:
        with np.load(path, allow_pickle=False) as z:
            return cls.from_arrays(z, "", FEATURES, path)


@dataclass(frozen=True)
class BoostedModel:
    """Gradient-boosted trees: ``p = sigmoid(baseline + sum of the leaves reached)``."""

    feature_names: tuple[str, ...]
    trees: Trees
    baseline: float
    cv_accuracy: float = float("nan")
    n_train: int = 0

    def log_odds(self, features: np.ndarray) -> np.ndarray:
        x = _check_features(features, self.feature_names)
        return self.baseline + self.trees.leaf_sum(x)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return _sigmoid(self.log_odds(features))

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {
            f"{prefix}kind": np.array(["boosted"]), f"{prefix}feature_names": np.array(self.feature_names),
            f"{prefix}baseline": np.array([self.baseline]), f"{prefix}cv_accuracy": np.array([self.cv_accuracy]),
            f"{prefix}n_train": np.array([self.n_train]),
        } | self.trees.arrays(f"{prefix}trees_")

    @classmethod
    def from_arrays(cls, z, prefix: str, expected: tuple[str, ...], path: str | Path) -> BoostedModel:
        names = _stored_names(z, prefix, expected, path)
        return cls(names, Trees.from_arrays(z, f"{prefix}trees_"), float(z[f"{prefix}baseline"][0]),
                   float(z[f"{prefix}cv_accuracy"][0]), int(z[f"{prefix}n_train"][0]))


BASE_LOG_ODDS = "base_log_odds"
BASE_LOG_ODDS_CLIP = 15.0  # |log-odds| of the base stage passed to the adapter (p 3e-7 .. 1 - 3e-7)


def _base_z(base: LogisticModel | BoostedModel, x: np.ndarray) -> np.ndarray:
    """The base stage's log-odds of ``x`` as its adapter sees them (clipped to :data:`BASE_LOG_ODDS_CLIP`)."""
    return np.clip(base.log_odds(x), -BASE_LOG_ODDS_CLIP, BASE_LOG_ODDS_CLIP)


@dataclass(frozen=True)
class AdaptedStage:
    """A trained stage adapted to new labels: ``p = sigmoid(adapter([base log-odds, x]))``, the
    adapter a :class:`LogisticModel` fitted with a prior that is the base stage itself
    (:func:`fit_adapter`)."""

    base: LogisticModel | BoostedModel
    adapter: LogisticModel
    cv_accuracy: float = float("nan")
    n_train: int = 0

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.base.feature_names

    def log_odds(self, features: np.ndarray) -> np.ndarray:
        return self.adapter.log_odds(np.c_[_base_z(self.base, features), np.asarray(features, np.float64)])

    def predict(self, features: np.ndarray) -> np.ndarray:
        return _sigmoid(self.log_odds(features))

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {
            f"{prefix}kind": np.array(["adapted"]), f"{prefix}feature_names": np.array(self.feature_names),
            f"{prefix}cv_accuracy": np.array([self.cv_accuracy]), f"{prefix}n_train": np.array([self.n_train]),
        } | self.base.arrays(f"{prefix}base_") | self.adapter.arrays(f"{prefix}adapt_")

    @classmethod
    def from_arrays(cls, z, prefix: str, expected: tuple[str, ...], path: str | Path) -> AdaptedStage:
        _stored_names(z, prefix, expected, path)
        base = _stage_from_arrays(z, f"{prefix}base_", expected, path)
        if isinstance(base, AdaptedStage):
            raise ValueError(f"{path}: an adapted astrocyte stage must adapt a trained stage, not another adaptation")
        return cls(base, LogisticModel.from_arrays(z, f"{prefix}adapt_", (BASE_LOG_ODDS,) + expected, path),
                   float(z[f"{prefix}cv_accuracy"][0]), int(z[f"{prefix}n_train"][0]))


Stage = LogisticModel | BoostedModel | AdaptedStage
LEARNERS = ("boosted", "logistic", "adapt")


def _check_features(features: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(
            f"astrocyte model expects features of shape (n, {len(names)}) ({', '.join(names)}), got {x.shape}"
        )
    return x


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def _stored_names(z, prefix: str, expected: tuple[str, ...], path: str | Path) -> tuple[str, ...]:
    names = tuple(str(n) for n in z[f"{prefix}feature_names"])
    if names != expected:
        raise ValueError(
            f"{path}: model features {names} differ from this syngraph's {expected}; "
            f"retrain with `syngraph train astrocytes --labels TABLE`"
        )
    return names


def _stage_from_arrays(z, prefix: str, expected: tuple[str, ...], path: str | Path) -> Stage:
    kind = str(z[f"{prefix}kind"][0]) if f"{prefix}kind" in z else "logistic"
    if kind == "boosted":
        return BoostedModel.from_arrays(z, prefix, expected, path)
    if kind == "logistic":
        return LogisticModel.from_arrays(z, prefix, expected, path)
    if kind == "adapted":
        return AdaptedStage.from_arrays(z, prefix, expected, path)
    raise ValueError(f"{path}: unknown astrocyte model kind {kind!r} (expected one of {LEARNERS})")


def tissue_relative(features: np.ndarray) -> np.ndarray:
    """``features`` (one volume's supervoxels, :data:`FEATURES` columns) with each of
    :data:`SIZE_FEATURES` minus its median over the rows: log ratios to the volume's typical
    supervoxel. Applying it twice changes nothing.

    >>> x = np.zeros((3, len(FEATURES))); x[:, 0] = [1.0, 2.0, 4.0]
    >>> tissue_relative(x)[:, 0].tolist()
    [-1.0, 0.0, 2.0]
    """
    x = np.array(features, np.float64)
    if x.shape[0]:
        cols = [FEATURES.index(f) for f in SIZE_FEATURES]
        x[:, cols] -= np.median(x[:, cols], axis=0)
    return x


@dataclass(frozen=True)
class ContextModel:
    """The per-supervoxel stage (``predict``) and the context stage (``refine``); with
    ``relative`` both see :func:`tissue_relative` features (pass one whole volume's rows)."""

    local: Stage
    context: Stage
    relative: bool = False

    @property
    def cv_accuracy(self) -> float:
        return self.context.cv_accuracy

    def inputs(self, features: np.ndarray) -> np.ndarray:
        """The features as the stages see them (and as the stored domain describes them)."""
        return tissue_relative(features) if self.relative else np.asarray(features, np.float64)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.local.predict(self.inputs(features))

    def refine(self, features: np.ndarray, context: np.ndarray) -> np.ndarray:
        return self.context.predict(np.c_[self.inputs(features), np.asarray(context, np.float64)])

    def save(self, path: str | Path, domain: Domain | None = None) -> Path:
        """Both stages, and ``domain`` (the distribution of the training rows' :meth:`inputs`)."""
        return write_npz(path, self.local.arrays() | self.context.arrays("context_")
                         | {"feature_transform": np.array(["tissue_relative" if self.relative else "none"])}
                         | (domain.arrays() if domain is not None else {}))



def context_features(
    ids: np.ndarray, prob: np.ndarray, edges: np.ndarray, contacts: np.ndarray, contact_area: np.ndarray
) -> np.ndarray:
    """:data:`CONTEXT_FEATURES` per supervoxel (``ids`` sorted uint64, ``prob`` the first stage's).

    ``edges`` (m, 2): the supervoxel graph; ``contacts`` (k, 2) with ``contact_area``: every pair
    of touching supervoxels. Ids not in ``ids`` are ignored.

    >>> ids = np.array([1, 2, 3], np.uint64); p = np.array([0.9, 0.1, 0.2])
    >>> context_features(ids, p, np.array([[1, 2]], np.uint64), np.zeros((0, 2), np.uint64), np.zeros(0))[1].round(2).tolist()
    [0.3, 0.9, 0.9, 1.0, 0.0]
    """
    n = ids.size
    prob = np.asarray(prob, np.float64)

    def ends(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pairs = np.asarray(pairs, np.uint64).reshape(-1, 2)
        if n == 0 or pairs.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
        pos = np.minimum(np.searchsorted(ids, pairs), n - 1)
        ok = (ids[pos] == pairs).all(1)
        a, b = pos[ok, 0], pos[ok, 1]
        return np.r_[a, b], np.r_[b, a], ok

    src, dst, _ = ends(edges)
    deg = np.bincount(src, minlength=n).astype(np.float64)
    mx = np.zeros(n)
    np.maximum.at(mx, src, prob[dst])
    mean = np.bincount(src, weights=prob[dst], minlength=n) / np.maximum(deg, 1)
    n_astro = np.bincount(src, weights=(prob[dst] >= 0.5).astype(np.float64), minlength=n)
    csrc, cdst, cok = ends(contacts)
    w = np.tile(np.asarray(contact_area, np.float64)[cok], 2)
    wsum = np.bincount(csrc, weights=w, minlength=n)
    cmean = np.bincount(csrc, weights=w * prob[cdst], minlength=n) / np.maximum(wsum, 1e-9)
    return np.stack([np.log10(1 + deg), mx, mean, n_astro, cmean], 1)


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, scale, (x - mean) / scale)`` per column; a constant column keeps scale 1."""
    mean = x.mean(0)
    scale = x.std(0)
    scale[scale == 0] = 1.0
    return mean, scale, (x - mean) / scale


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 100, names: tuple[str, ...] = FEATURES
) -> LogisticModel:
    """Fit by Newton's method (IRLS) with an L2 penalty on standardised features; deterministic."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    _check_training(x, y)
    mean, scale, xs = _standardise(x)
    xs = np.c_[xs, np.ones(x.shape[0])]
    reg = np.full(xs.shape[1], l2 * x.shape[0])
    reg[-1] = 0.0
    w = _irls(xs, y, reg, np.zeros(xs.shape[1]), iters)
    return LogisticModel(names, mean, scale, w[:-1], float(w[-1]), n_train=int(x.shape[0]))


def _irls(xs: np.ndarray, y: np.ndarray, reg: np.ndarray, prior: np.ndarray, iters: int = 100) -> np.ndarray:
    """Weights minimising the log loss of ``sigmoid(xs @ w)`` plus ``sum(reg * (w - prior)**2) / 2``
    (Newton's method from ``prior``, each step halved until the objective decreases: a start far
    from the optimum, such as a base model confidently wrong on every row, would overshoot)."""

    def objective(w: np.ndarray) -> float:
        z = xs @ w
        return float((np.logaddexp(0.0, z) - y * z).sum() + 0.5 * (reg * (w - prior) ** 2).sum())

    w = prior.astype(np.float64).copy()
    f = objective(w)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xs @ w, -50, 50)))
        grad = xs.T @ (p - y) + reg * (w - prior)
        h = (xs * (p * (1 - p))[:, None]).T @ xs + np.diag(reg) + 1e-9 * np.eye(xs.shape[1])
        step = np.linalg.solve(h, grad)
        for _ in range(40):
            f_new = objective(w - step)
            if f_new <= f:
                break
            step /= 2
        w -= step
        f = min(f, f_new)
        if np.abs(step).max() < 1e-8:
            break
    return w


# strength of the adapter's prior (absolute, not per row: labels outweigh it as they accumulate),
# on the base log-odds' weight, the intercept and the standardised features alike; 1, 3 and 10
# tie on astrocyte-rich and fly-fib dev seeds, 3 is best on the toy tissue of tests (docs/models.md)
ADAPT_PRIOR = 3.0


def fit_adapter(base: LogisticModel | BoostedModel, x: np.ndarray, y: np.ndarray,
                prior: float = ADAPT_PRIOR, iters: int = 100) -> AdaptedStage:
    """``base`` adapted to the labelled rows ``x, y``: a logistic model on the base stage's
    log-odds and the (standardised) features whose weights are pulled towards the base stage
    itself (weight 1 on its log-odds, 0 on the rest) by an L2 prior of strength ``prior``.
    Few labels leave the base stage nearly unchanged; labels that contradict it override it.
    One class suffices (labels that say this volume has no astrocyte)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ValueError(f"adapting needs labelled supervoxels, got {x.shape[0]} rows")
    mean, scale, xs = _standardise(x)
    xs = np.c_[_base_z(base, x), xs, np.ones(x.shape[0])]  # the base log-odds as they are: weight 1 is the base
    mean, scale = np.r_[0.0, mean], np.r_[1.0, scale]
    w0 = np.zeros(xs.shape[1])
    w0[0] = 1.0
    w = _irls(xs, y, np.full(xs.shape[1], prior), w0, iters)
    adapter = LogisticModel((BASE_LOG_ODDS,) + base.feature_names, mean, scale, w[:-1], float(w[-1]),
                            n_train=int(x.shape[0]))
    return AdaptedStage(base, adapter, n_train=int(x.shape[0]))


# chosen by grouped cross-validation over demo seeds 0-39 (docs/cells.md)
BOOSTING = dict(max_iter=300, learning_rate=0.05, max_leaf_nodes=7, min_samples_leaf=10,
                l2_regularization=1.0)


def fit_boosted(x: np.ndarray, y: np.ndarray, names: tuple[str, ...] = FEATURES) -> BoostedModel:
    """Gradient-boosted trees (scikit-learn's ``HistGradientBoostingClassifier``, fixed seed)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    _check_training(x, y)
    model = HistGradientBoostingClassifier(**BOOSTING, early_stopping=False, random_state=0)  # type: ignore[arg-type]
    with threadpool_limits(1):  # a few thousand rows: threads only contend (Dask workers, pytest-xdist)
        model.fit(x, (y > 0.5).astype(np.int64))
    trees, baseline = from_gradient_boosting(model)
    return BoostedModel(names, trees, baseline, n_train=int(x.shape[0]))


# L2 penalty of logistic stages (per row, on standardised features): chosen on 50 labels of one
# astrocyte-rich demo seed scored on another (docs/models.md); 0.01 overfits 50 rows
STAGE_L2 = 0.1


def can_fit(learner: str, y: np.ndarray) -> bool:
    """Whether :func:`fit_stage` can fit ``learner`` on labels ``y``: adapting needs one labelled
    row, fitting afresh both classes."""
    return y.size > 0 and (learner == "adapt" or np.unique(y).size == 2)


def fit_stage(x: np.ndarray, y: np.ndarray, learner: str = "logistic",
              names: tuple[str, ...] = FEATURES, base: Stage | None = None) -> Stage:
    """One stage with ``learner`` (one of :data:`LEARNERS`; ``adapt`` adapts ``base``)."""
    if learner == "adapt":
        if base is None or isinstance(base, AdaptedStage):
            raise ValueError("learner 'adapt' needs a trained base stage (a boosted or logistic stage)")
        return fit_adapter(base, x, y)
    if learner == "boosted":
        return fit_boosted(x, y, names)
    if learner == "logistic":
        return fit_logistic(x, y, l2=STAGE_L2, names=names)
    raise ValueError(f"unknown astrocyte learner {learner!r}; use one of {', '.join(LEARNERS)}")


def _check_training(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[0] != y.shape[0] or x.shape[0] < 2 or len(np.unique(y)) < 2:
        raise ValueError(
            f"training needs >= 2 labelled supervoxels of both classes, got {x.shape[0]} rows "
            f"with classes {sorted(set(y.tolist()))}"
        )


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


@dataclass(frozen=True)
class GraphData:
    """One working directory's supervoxels: features, graph and contacts, and labels.

    ``ids`` sorted uint64 with ``features`` in that order; ``labelled`` row positions with ``y``
    (0/1) are the training rows; the rest only give context.
    """

    ids: np.ndarray
    features: np.ndarray
    edges: np.ndarray
    contacts: np.ndarray
    contact_area: np.ndarray
    labelled: np.ndarray
    y: np.ndarray

    def context(self, prob: np.ndarray) -> np.ndarray:
        return context_features(self.ids, prob, self.edges, self.contacts, self.contact_area)

    def relative(self) -> GraphData:
        """The same with :func:`tissue_relative` features."""
        return dataclasses.replace(self, features=tissue_relative(self.features))


def _workdir_folds(n: int, folds: int) -> list[np.ndarray]:
    """Working directories held out together: each alone when there are at most ``folds``,
    else ``folds`` groups (index modulo ``folds``)."""
    if n <= folds:
        return [np.array([g]) for g in range(n)]
    return [np.arange(g, n, folds) for g in range(folds)]


def _stack(data: list[GraphData]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([d.features[d.labelled] for d in data]), np.concatenate([d.y for d in data])


def _oof_local(data: list[GraphData], folds: int, seed: int = 0, learner: str = "logistic",
               base: Stage | None = None) -> list[np.ndarray]:
    """First-stage probabilities of every supervoxel, each labelled row predicted by a model that
    did not see it: working directories held out (:func:`_workdir_folds`), or k-fold within a
    single one."""
    if len(data) > 1:
        out: list[np.ndarray] = [np.zeros(0)] * len(data)
        for held in _workdir_folds(len(data), folds):
            m = fit_stage(*_stack([e for h, e in enumerate(data) if h not in held]), learner, base=base)
            for g in held.tolist():
                out[g] = m.predict(data[g].features)
        return out
    d = data[0]
    prob = fit_stage(d.features[d.labelled], d.y, learner, base=base).predict(d.features)
    parts = np.array_split(np.random.default_rng(seed).permutation(d.labelled.size), folds)
    for f in parts:
        tr = np.setdiff1d(np.arange(d.labelled.size), f)
        if can_fit(learner, d.y[tr]):
            prob[d.labelled[f]] = fit_stage(d.features[d.labelled[tr]], d.y[tr], learner, base=base).predict(
                d.features[d.labelled[f]])
    return [prob]


def fit_context_model(data: list[GraphData], folds: int = 5, learner: str = "logistic",
                      relative: bool = False, base: ContextModel | None = None) -> ContextModel:
    """Both stages: the local stage on every labelled row, the context stage on context computed
    from out-of-fold first-stage probabilities (as it will see them on new tissue); ``relative``:
    on :func:`tissue_relative` features of each working directory. ``learner="adapt"`` adapts
    each stage of ``base`` (:func:`fit_adapter`; ``relative`` is then the base's)."""
    if learner == "adapt":
        if base is None:
            raise ValueError("learner 'adapt' needs the two-stage model to adapt (base)")
        relative = base.relative
    if relative:
        data = [d.relative() for d in data]
    x, y = _stack(data)
    local = fit_stage(x, y, learner, base=base.local if base else None)
    oof = _oof_local(data, folds, learner=learner, base=base.local if base else None)
    ctx = np.concatenate([d.context(p)[d.labelled] for d, p in zip(data, oof, strict=True)])
    context = fit_stage(np.c_[x, ctx], y, learner, names=FEATURES + CONTEXT_FEATURES,
                        base=base.context if base else None)
    return ContextModel(local, context, relative)


def cross_validate_context(data: list[GraphData], folds: int = 5, seed: int = 0,
                           learner: str = "logistic", relative: bool = False,
                           base: ContextModel | None = None) -> list[float]:
    """Accuracy of the two-stage model on held-out rows: per working directory (held out as in
    :func:`_workdir_folds`) when there are several, else one number over k folds of the
    labelled rows."""
    if len(data) > 1:
        accs = [0.0] * len(data)
        for held in _workdir_folds(len(data), folds):
            m = fit_context_model([e for h, e in enumerate(data) if h not in held], folds, learner, relative, base)
            for g in held.tolist():
                d = data[g]
                prob = m.refine(d.features, d.context(m.predict(d.features)))[d.labelled]
                accs[g] = float(((prob >= 0.5) == (d.y > 0.5)).mean())
        return accs
    d = data[0]
    correct = 0
    for f in np.array_split(np.random.default_rng(seed).permutation(d.labelled.size), folds):
        tr = np.setdiff1d(np.arange(d.labelled.size), f)
        if not can_fit(learner, d.y[tr]):
            correct += int(((d.y[tr][0] > 0.5) == (d.y[f] > 0.5)).sum()) if tr.size else 0
            continue
        sub = GraphData(d.ids, d.features, d.edges, d.contacts, d.contact_area, d.labelled[tr], d.y[tr])
        m = fit_context_model([sub], folds, learner, relative, base)
        prob = m.refine(d.features, d.context(m.predict(d.features)))[d.labelled[f]]
        correct += int(((prob >= 0.5) == (d.y[f] > 0.5)).sum())
    return [correct / max(d.labelled.size, 1)]


def default_model() -> Stage | ContextModel:
    """The shipped model (trained on demo tissue seeds 0-39, see docs/models.md)."""
    if not DEFAULT_MODEL_PATH.exists():
        raise FileNotFoundError(
            f"the default astrocyte model {DEFAULT_MODEL_PATH} is missing from this installation; "
            f"train one with `syngraph train astrocytes --labels TABLE` and set cells.astrocyte_model"
        )
    return load_model(DEFAULT_MODEL_PATH)


def load_domain(path: str | Path | None) -> Domain | None:
    """The training-feature distribution stored with the model in ``path`` (default: the shipped
    model), or None when the file has none (a model saved before domain checks)."""
    domain = Domain.load(DEFAULT_MODEL_PATH if path is None else path)
    if domain is not None and domain.names != FEATURES:
        raise ValueError(f"{path}: stored domain features {domain.names} differ from {FEATURES}")
    return domain


def load_model(path: str | Path | None) -> Stage | ContextModel:
    """The model in ``path`` (a one-stage or a context model), or the shipped default."""
    if path is None:
        return default_model()
    with np.load(path, allow_pickle=False) as z:
        local = _stage_from_arrays(z, "", FEATURES, path)
        if "context_feature_names" not in z:
            return local
        relative = "feature_transform" in z and str(z["feature_transform"][0]) == "tissue_relative"
        return ContextModel(local, _stage_from_arrays(z, "context_", FEATURES + CONTEXT_FEATURES, path), relative)
