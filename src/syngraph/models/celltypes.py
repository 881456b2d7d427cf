"""The cell-type classifier: per-cell features in, class probabilities out.

Stored as plain arrays in an ``.npz`` (loaded with ``allow_pickle=False``): multi-class
gradient-boosted trees (:mod:`syngraph.models.trees`, one ensemble per class, softmax of the
summed leaves divided by a fitted temperature that grows as the cell's cable shrinks (less
cell, less evidence), so the probabilities are calibrated). The
classes are names (a lab's own labels); the shipped model's are the demo tissue's cell types.

A model file holds a ``full`` variant (with :data:`ORGANELLE_FEATURES`) and a ``shape`` variant
(tissue without organelle maps, such as pinky40). Each variant also stores its training
features' distribution (``<variant>_domain_*``, :class:`syngraph.models.domain.Domain`, the
domain check every learned model shares).
Features are in nm / um and relative to the cell, never in voxels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syngraph.models.domain import Domain
from syngraph.models.npz import read_info, write_npz
from syngraph.models.trees import Multiclass, Trees, from_gradient_boosting_multiclass, softmax

SHAPE_FEATURES: tuple[str, ...] = (
    "log_cable_um",  # log10(1 + skeleton cable length, um)
    "log_volume_um3",  # log10 of the cell's volume inside the dataset
    "log_volume_per_cable_um2",  # log10(volume / cable): mean cross-section
    "frac_soma",  # cable fractions of the smoothed compartment labels
    "frac_shaft",
    "frac_spine",  # spine neck + head
    "frac_axon",
    "frac_bouton",  # bouton + terminal bouton
    "frac_astrocyte",
    "spines_per_um_dendrite",  # spines / (shaft + spine) cable; 0 without dendrite
    "boutons_per_um_axon",  # bouton runs / (axon + bouton) cable; 0 without axon
    "myelin_frac",  # cable fraction of myelinated nodes
    "log_radius_median_nm",
    "log_radius_p90_nm",
    "log_radius_axon_nm",  # median radius of axon nodes (NaN without axon)
    "log_radius_dendrite_nm",  # median radius of shaft nodes (NaN without shaft)
    "log_soma_radius_nm",  # largest soma-node radius (0 without soma)
    "radius_cv",  # std / mean of the node radii
    "branch_points_per_um",
    "tips_per_um",
    "turning_deg",  # median angle between consecutive 500 nm steps along the skeleton
    "astrocyte_kind",  # 1 when the astrocyte step called the cell an astrocyte
)

ORGANELLE_FEATURES: tuple[str, ...] = (
    "mi_um3_per_um",  # mitochondrion volume per um of cable
    "vc_um3_per_um",  # vesicle-cloud volume per um of cable
    "vc_per_um",  # vesicle clouds per um of cable
    "sj_per_um",  # synaptic junctions touching the cell per um of cable
    "sj_per_vc",  # junctions / vesicle clouds (varicosities without junctions: volume release)
    "out_sj_spine_frac",  # of the junctions at the cell's axon: partner side on a spine (NaN if none)
    "out_sj_soma_frac",  # ... partner side on a soma
    "out_sj_symmetric_frac",  # ... symmetric by the syn_type map (NaN without that map or junctions)
)

VARIANTS = ("full", "shape")
DEFAULT_MODEL_PATH = Path(__file__).parent / "data" / "celltypes_default.npz"
BOOSTING = dict(max_iter=120, learning_rate=0.08, max_leaf_nodes=8, min_samples_leaf=5,
                l2_regularization=1.0)


def feature_names(variant: str) -> tuple[str, ...]:
    return SHAPE_FEATURES + (ORGANELLE_FEATURES if variant == "full" else ())


def certainty(prob: np.ndarray) -> np.ndarray:
    """The reference's certainty ``1 - H(p) / ln C`` per row (1: one class, 0: uniform)."""
    p = np.asarray(prob, np.float64)
    if p.shape[1] < 2:
        return np.ones(len(p))
    h = -np.sum(np.where(p > 0, p * np.log(np.maximum(p, 1e-300)), 0.0), axis=1)
    return 1.0 - h / np.log(p.shape[1])


@dataclass(frozen=True)
class Classifier(Multiclass):
    """``p = softmax((baseline + per-class leaf sums) / T)`` over ``classes`` (names), with
    ``T = temperature * exp(temperature_slope * (1 - log_cable_um))`` (:func:`cable_temperature`)."""

    temperature: float = 1.0
    domain: Domain | None = None  # the training features' distribution
    temperature_slope: float = 0.0  # 0: one temperature for every cell (files before the slope)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, np.float64)
        t = cable_temperature(self.temperature, self.temperature_slope, _log_cable(x, self.feature_names))
        return softmax(self.raw(x) / t[:, None])

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return super().arrays(prefix) | {f"{prefix}temperature": np.array(self.temperature),
                                         f"{prefix}temperature_slope": np.array(self.temperature_slope)} | (
            self.domain.arrays(f"{prefix}domain_") if self.domain is not None else {})

    @classmethod
    def from_arrays(cls, z, prefix: str, expected: tuple[str, ...], path: str | Path) -> Classifier:
        try:
            names, classes, trees, baseline = Multiclass.read(
                z, prefix, expected, "syngraph train celltypes --labels cells.csv")
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        slope = float(z[f"{prefix}temperature_slope"]) if f"{prefix}temperature_slope" in z else 0.0
        return cls(names, tuple(str(c) for c in classes), trees, baseline,
                   float(z[f"{prefix}temperature"]), Domain.from_arrays(z, f"{prefix}domain_"), slope)


@dataclass(frozen=True)
class CelltypeModel:
    """``{"full": Classifier, "shape": Classifier}`` (either may be missing) and the training
    record ``info`` (seeds, cross-validated accuracy)."""

    variants: dict[str, Classifier]
    info: dict[str, str]

    @property
    def classes(self) -> tuple[str, ...]:
        return next(iter(self.variants.values())).classes

    def variant(self, have_organelles: bool) -> tuple[str, Classifier]:
        want = "full" if have_organelles and "full" in self.variants else "shape"
        if want not in self.variants:
            raise ValueError("this cell-type model has no labels-only ('shape') variant and the "
                             "volume has no mi/vc/sj maps: retrain with `syngraph train celltypes`")
        return want, self.variants[want]

    def save(self, path: str | Path) -> Path:
        arrays: dict[str, np.ndarray] = {}
        for v, m in self.variants.items():
            arrays |= m.arrays(f"{v}_")
        return write_npz(path, arrays, self.info)


def load_model(path: str | Path | None = None) -> CelltypeModel:
    """The model in ``path``, or the shipped default (trained on demo seeds, docs/celltypes.md)."""
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    if not path.exists():
        raise FileNotFoundError(f"cell-type model {path} does not exist; train one with "
                                f"`syngraph train celltypes --labels cells.csv`")
    with np.load(path, allow_pickle=False) as z:
        variants = {v: Classifier.from_arrays(z, f"{v}_", feature_names(v), path)
                    for v in VARIANTS if f"{v}_feature_names" in z}
        info = read_info(z)
    return CelltypeModel(variants, info)


def _fit_trees(x: np.ndarray, y: np.ndarray) -> tuple[tuple[Trees, ...], np.ndarray, np.ndarray]:
    """Boosted trees on integer labels ``y`` (0..k-1, all present): trees, baseline, classes."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    model = HistGradientBoostingClassifier(**BOOSTING, early_stopping=False, random_state=0,  # type: ignore[arg-type]
                                           class_weight="balanced")
    with threadpool_limits(1):
        model.fit(x, y)
    if len(model.classes_) == 2:  # binary: one ensemble scores class 1 against class 0
        from syngraph.models.trees import from_gradient_boosting

        t, b = from_gradient_boosting(model)
        zero = Trees.build([-1], [-1], [0], [0.0], [0.0], [0])
        return (zero, t), np.array([0.0, b]), model.classes_
    trees, baseline = from_gradient_boosting_multiclass(model)
    return tuple(trees), baseline, model.classes_


def _log_cable(x: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    return np.nan_to_num(x[:, names.index("log_cable_um")], nan=1.0) if "log_cable_um" in names else np.ones(len(x))


def cable_temperature(temperature: float, slope: float, log_cable_um: np.ndarray) -> np.ndarray:
    """Per-cell temperature: ``temperature`` at ~9 um of cable (log10(1 + cable) = 1), times
    ``exp(slope)`` per decade less."""
    return temperature * np.exp(slope * (1.0 - np.asarray(log_cable_um, np.float64)))


def fit_temperature(raw: np.ndarray, y: np.ndarray, log_cable_um: np.ndarray | None = None) -> tuple[float, float]:
    """The temperature and cable slope (:func:`cable_temperature`; slope 0 without
    ``log_cable_um``) minimising the log loss of ``softmax(raw / T)`` against ``y`` (grid)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 61))
    slopes = np.linspace(0.0, 3.0, 13) if log_cable_um is not None else np.zeros(1)
    lc = np.ones(len(y)) if log_cable_um is None else np.asarray(log_cable_um, np.float64)
    best = (np.inf, 1.0, 0.0)
    for b in slopes:
        for t in grid:
            p = softmax(raw / cable_temperature(t, b, lc)[:, None])
            loss = -np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)))
            if loss < best[0] - 1e-12:
                best = (loss, float(t), float(b))
    return best[1], best[2]


def fit_classifier(x: np.ndarray, labels: np.ndarray, names: tuple[str, ...], classes: tuple[str, ...],
                   folds: int = 4, calibrate: np.ndarray | None = None,
                   groups: np.ndarray | None = None, units: np.ndarray | None = None) -> tuple[Classifier, float]:
    """Boosted trees on class names ``labels`` (each in ``classes``), the temperature fitted on
    out-of-fold raw scores of the rows ``calibrate`` (default all: the rows like those the model
    will type); returns the classifier and the out-of-fold accuracy over all rows. With
    ``groups`` (a volume per row) and >= ``folds`` of them, each fold holds out whole volumes, so
    the temperature is fitted on scores of volumes the trees never saw, as the step's will be;
    otherwise folds are stratified by class (fixed seed), keeping the rows of one ``units`` value
    (a cell and its pieces) in one fold."""
    x = np.asarray(x, np.float64)
    y = np.array([classes.index(str(c)) for c in labels], np.int64)
    rng = np.random.default_rng(0)
    if groups is not None and np.unique(groups).size >= folds:
        _, g = np.unique(np.asarray(groups), return_inverse=True)
        fold = rng.permutation(g.max() + 1)[g] % folds
    else:
        _, first, unit = np.unique(np.arange(len(y)) if units is None else np.asarray(units),
                                   return_index=True, return_inverse=True)
        unit_fold = np.empty(len(first), np.int64)
        for c in np.unique(y[first]):
            idx = np.flatnonzero(y[first] == c)
            unit_fold[idx] = rng.permutation(len(idx)) % folds
        fold = unit_fold[unit.ravel()]
    oof = np.zeros((len(y), len(classes)))
    for f in range(folds):
        tr, te = fold != f, fold == f
        if not te.any() or np.unique(y[tr]).size < 2:
            continue
        trees, base, cls_ = _fit_trees(x[tr], y[tr])
        raw = base + np.stack([t.leaf_sum(x[te]) for t in trees], 1)
        full = np.full((te.sum(), len(classes)), -30.0)
        full[:, cls_] = raw
        oof[te] = full
    cal = np.ones(len(y), bool) if calibrate is None or not np.any(calibrate) else np.asarray(calibrate, bool)
    temperature, slope = fit_temperature(oof[cal], y[cal], _log_cable(x, names)[cal] if "log_cable_um" in names else None)
    accuracy = float(np.mean(np.argmax(oof, 1) == y))
    trees, base, cls_ = _fit_trees(x, y)
    if len(cls_) != len(classes):
        raise ValueError(f"every class needs labelled cells; missing {sorted(set(classes) - {classes[i] for i in cls_})}")
    return Classifier(names, classes, trees, base, temperature, Domain.fit(x, names), slope), accuracy
