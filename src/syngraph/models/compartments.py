"""The compartment classifier: skeleton-node features in, class probabilities out.

Stored as plain arrays in an ``.npz`` (loaded with ``allow_pickle=False``): multi-class
gradient-boosted trees (:mod:`syngraph.models.trees`, one ensemble per class, softmax of the
summed leaves). Two stages, as the astrocyte model:

1. a per-node stage on :data:`SHAPE_FEATURES` (+ :data:`ORGANELLE_FEATURES` when the volume has
   mi / vc / sj maps);
2. a context stage on the same features plus :data:`CONTEXT_FEATURES`: the first stage's class
   probabilities averaged over path windows of 1 and 5 um around the node.

A model file holds a ``full`` variant (with organelles) and a ``shape`` variant (labels only, for
tissue without organelle maps, such as pinky40); :meth:`CompartmentModel.variant` picks one.
Features are in nm and relative to the cell, never in voxels, so the model transfers between
voxel sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from syngraph import compartments as cp
from syngraph.models.domain import Domain
from syngraph.models.npz import read_info, write_npz
from syngraph.models.trees import Multiclass, Trees, from_gradient_boosting_multiclass

CLASSES: tuple[int, ...] = (cp.SOMA, cp.SHAFT, cp.SPINE_NECK, cp.SPINE_HEAD, cp.AXON, cp.BOUTON,
                            cp.TERMINAL_BOUTON)
"""Predicted compartment codes, in probability-column order."""

SHAPE_FEATURES: tuple[str, ...] = (
    "log_radius_nm",  # log10 of the node's radius (mean within 150 nm of path: no voxel steps)
    "log_radius_1um_nm",  # log10 of the mean radius within 1 um of path
    "log_radius_5um_nm",  # log10 of the mean radius within 5 um of path
    "radius_rel_1um",  # radius / mean radius within 1 um (a bulge: bouton, spine head)
    "radius_rel_5um",  # radius / mean radius within 5 um
    "radius_cv_5um",  # std / mean of the radius within 5 um (varicose axons vary)
    "radius_rel_cell",  # radius / the cell's largest radius
    "log_path_to_thick_nm",  # log10(1 + path length to the nearest node of radius >= 250 nm)
    "log_path_to_thickest_nm",  # log10(1 + path length to the cell's thickest node)
    "branch_order",  # branch points between the node and the thickest node
    "degree",  # neighbours of the node
    "log_terminal_branch_nm",  # log10(1 + length of the terminal branch the node is on; 0 if none)
    "terminal_position",  # path length to the branch's tip / branch length (0 off terminal branches)
    "log_cable_density_um",  # log10(1 + cable (um) of the cell within 2 um (Euclidean) of the node)
    "myelin_5um",  # fraction of myelinated nodes within 5 um of path (0 without a myelin layer)
)

ORGANELLE_FEATURES: tuple[str, ...] = (
    "mi_um3_per_um",  # mitochondrion volume (um3) of the cell within 1 um / cable within 1 um
    "vc_um3_per_um",  # vesicle-cloud volume likewise
    "sj_per_um",  # synaptic junctions touching the cell within 1 um, per um of cable
    "vc_near_um3",  # vesicle-cloud volume within 500 nm of the node
)

CONTEXT_WINDOWS_NM: tuple[float, ...] = (1000.0, 5000.0)
CONTEXT_FEATURES: tuple[str, ...] = tuple(
    f"p_{cp.name(c)}_{int(w // 1000)}um" for w in CONTEXT_WINDOWS_NM for c in CLASSES
)

DEFAULT_MODEL_PATH = Path(__file__).parent / "data" / "compartments_default.npz"
VARIANTS = ("full", "shape")
BOOSTING = dict(max_iter=80, learning_rate=0.15, max_leaf_nodes=15, min_samples_leaf=40,
                l2_regularization=1.0)


NOT_USED: tuple[str, ...] = ("radius_rel_cell",)
"""Node features computed (other steps use them) but not given to the model: they measure how
much of the cell lies in the volume (a fragment or a whole cell with its soma), not the node."""


def feature_names(variant: str) -> tuple[str, ...]:
    """First-stage feature names of a variant (``full`` or ``shape``)."""
    return tuple(n for n in SHAPE_FEATURES + (ORGANELLE_FEATURES if variant == "full" else ())
                 if n not in NOT_USED)


def model_columns(x: np.ndarray, variant: str) -> np.ndarray:
    """The :func:`feature_names` columns of node features ``x`` (columns :data:`SHAPE_FEATURES`
    + :data:`ORGANELLE_FEATURES`, or the shape columns only)."""
    every = SHAPE_FEATURES + ORGANELLE_FEATURES
    return np.asarray(x)[:, [every.index(n) for n in feature_names(variant)]]


@dataclass(frozen=True)
class Stage(Multiclass):
    """Multi-class boosted trees over compartment codes, in :data:`CLASSES` column order."""

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return _full_columns(super().predict_proba(features), self.classes)

    @classmethod
    def from_arrays(cls, z, prefix: str, expected: tuple[str, ...], path: str | Path) -> Stage:
        try:
            names, classes, trees, baseline = Multiclass.read(
                z, prefix, expected, "syngraph train compartments --labels points.csv")
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        return cls(names, classes.astype(np.int64), trees, baseline)


def _full_columns(prob: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Probabilities in :data:`CLASSES` column order (classes a model never saw get 0)."""
    out = np.zeros((prob.shape[0], len(CLASSES)))
    for j, c in enumerate(classes.tolist()):
        out[:, CLASSES.index(int(c))] = prob[:, j] if prob.shape[1] > 1 else 1.0
    return out


@dataclass(frozen=True)
class TwoStage:
    """The per-node stage (``predict_local``) and the context stage (``refine``)."""

    local: Stage
    context: Stage

    def predict_local(self, features: np.ndarray) -> np.ndarray:
        return self.local.predict_proba(features)

    def refine(self, features: np.ndarray, context: np.ndarray) -> np.ndarray:
        return self.context.predict_proba(np.c_[np.asarray(features, np.float64), context])


@dataclass(frozen=True)
class CompartmentModel:
    """The variants of a model file: ``{"full": TwoStage, "shape": TwoStage}`` (either may be
    missing); ``info`` holds the training record (seeds, cross-validated accuracy); ``domains``
    the training distribution of each variant's first-stage features (:mod:`syngraph.models.domain`;
    empty for a file saved without one)."""

    variants: dict[str, TwoStage]
    info: dict[str, str]
    domains: dict[str, Domain] = field(default_factory=dict)

    def variant(self, have_organelles: bool) -> tuple[str, TwoStage]:
        want = "full" if have_organelles and "full" in self.variants else "shape"
        if want not in self.variants:
            raise ValueError("this compartment model has no labels-only ('shape') variant; the "
                             "volume has no mi/vc/sj maps: retrain with `syngraph train compartments`")
        return want, self.variants[want]

    def save(self, path: str | Path) -> Path:
        arrays: dict[str, np.ndarray] = {}
        for v, m in self.variants.items():
            arrays |= m.local.arrays(f"{v}_") | m.context.arrays(f"{v}_context_")
            if v in self.domains:
                arrays |= self.domains[v].arrays(f"{v}_domain_")
        return write_npz(path, arrays, self.info)


def load_model(path: str | Path | None = None) -> CompartmentModel:
    """The model in ``path``, or the shipped default (trained on demo seeds, docs/compartments.md)."""
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    if not path.exists():
        raise FileNotFoundError(f"compartment model {path} does not exist; train one with "
                                f"`syngraph train compartments --labels points.csv`")
    with np.load(path, allow_pickle=False) as z:
        variants, domains = {}, {}
        for v in VARIANTS:
            if f"{v}_feature_names" in z:
                names = feature_names(v)
                variants[v] = TwoStage(Stage.from_arrays(z, f"{v}_", names, path),
                                       Stage.from_arrays(z, f"{v}_context_", names + CONTEXT_FEATURES, path))
                domain = Domain.from_arrays(z, f"{v}_domain_")
                if domain is not None:
                    if domain.names != names:
                        raise ValueError(f"{path}: the stored {v} domain has features {domain.names}, the model "
                                         f"{names}; retrain with `syngraph train compartments --labels points.csv`")
                    domains[v] = domain
        info = read_info(z)
    return CompartmentModel(variants, info, domains)


def fit_stage(x: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> Stage:
    """Multi-class gradient-boosted trees on compartment codes ``y`` (fixed seed)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.int64)
    classes = np.unique(y)
    if x.shape[0] != y.shape[0] or classes.size < 2:
        raise ValueError(f"training needs labelled nodes of >= 2 compartments, got {x.shape[0]} "
                         f"rows of {[cp.name(c) for c in classes]}")
    bad = sorted(set(classes.tolist()) - set(CLASSES))
    if bad:
        raise ValueError(f"compartments {[cp.name(c) for c in bad]} cannot be predicted; use "
                         f"{', '.join(cp.name(c) for c in CLASSES)}")
    model = HistGradientBoostingClassifier(**BOOSTING, early_stopping=False, random_state=0,  # type: ignore[arg-type]
                                           class_weight="balanced")
    with threadpool_limits(1):
        model.fit(x, y)
    if classes.size == 2:  # binary: one ensemble scores class 1 against class 0
        from syngraph.models.trees import from_gradient_boosting

        t, b = from_gradient_boosting(model)
        zero = Trees.build([-1], [-1], [0], [0.0], [0.0], [0])
        return Stage(names, classes, (zero, t), np.array([0.0, b]))
    trees, baseline = from_gradient_boosting_multiclass(model)
    return Stage(names, model.classes_.astype(np.int64), tuple(trees), baseline)
