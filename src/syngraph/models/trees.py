"""Decision-tree ensembles as plain arrays: fitted with scikit-learn, stored in ``.npz`` (loaded
with ``allow_pickle=False``) and evaluated with numpy alone.

Trees are concatenated: ``left`` / ``right`` child (-1 at leaves, indices global), ``feature``
and ``threshold`` (a row goes left when ``x[feature] <= threshold``; NaN goes where
``missing_left`` says), ``value`` per node, ``roots`` the index of each tree's root.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

ARRAYS = ("left", "right", "feature", "threshold", "missing_left", "value", "roots")


@dataclass(frozen=True)
class Trees:
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    value: np.ndarray
    roots: np.ndarray

    @classmethod
    def build(cls, left, right, feature, threshold, value, roots, missing_left=None) -> Trees:
        left = np.asarray(left, np.int64)
        return cls(left, np.asarray(right, np.int64), np.asarray(feature, np.int64),
                   np.asarray(threshold, np.float64),
                   np.zeros(left.size, bool) if missing_left is None else np.asarray(missing_left, bool),
                   np.asarray(value, np.float64), np.asarray(roots, np.int64))

    def leaf_sum(self, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """``(n,)``: the sum over the trees of the value of the leaf each row of ``x`` reaches.

        Each step moves only the (row, tree) pairs not yet at a leaf, so the work is the sum of
        the depths reached, not rows x trees x the deepest path."""
        x = np.asarray(x, np.float64)
        n, m = x.shape
        nan = bool(np.isnan(x).any())
        inner = self.left >= 0
        out = np.empty(n, np.float64)
        for a in range(0, n, chunk):
            flat = x[a:a + chunk].ravel()
            rows = min(chunk, n - a)
            node = np.tile(self.roots, rows)  # (row, tree) pairs, row-major
            base = np.repeat(np.arange(rows) * m, self.roots.size)
            live = np.flatnonzero(inner[node])
            while live.size:
                at = node[live]
                v = flat[base[live] + self.feature[at]]
                go_left = v <= self.threshold[at]
                if nan:
                    go_left |= np.isnan(v) & self.missing_left[at]
                at = np.where(go_left, self.left[at], self.right[at])
                node[live] = at
                live = live[inner[at]]
            out[a:a + chunk] = self.value[node].reshape(rows, self.roots.size).sum(axis=1)
        return out

    @cached_property
    def depth(self) -> int:
        """The number of splits on the longest root-to-leaf path."""
        depth, frontier = 0, self.roots[self.left[self.roots] >= 0]
        while frontier.size:
            depth += 1
            children = np.concatenate([self.left[frontier], self.right[frontier]])
            frontier = children[self.left[children] >= 0]
        return depth

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {f"{prefix}{k}": getattr(self, k) for k in ARRAYS}

    @classmethod
    def from_arrays(cls, z: Any, prefix: str = "") -> Trees:
        return cls.build(**{k: z[f"{prefix}{k}"] for k in ARRAYS})


def _concat(trees: list[dict[str, np.ndarray]]) -> Trees:
    """One :class:`Trees` from per-tree arrays (children local to the tree, -1 at leaves)."""
    sizes = np.array([t["left"].size for t in trees], np.int64)
    roots = np.r_[0, np.cumsum(sizes)[:-1]]
    parts = {k: np.concatenate([t[k] for t in trees]) for k in trees[0]}
    offset = np.repeat(roots, sizes)
    for k in ("left", "right"):
        parts[k] = np.where(parts[k] < 0, -1, parts[k] + offset)
    return Trees.build(roots=roots, **parts)


def from_random_forest(model: Any) -> Trees:
    """A fitted ``RandomForestClassifier``; ``value`` = class-1 probability of each node."""
    out = []
    for est in model.estimators_:
        t = est.tree_
        v = t.value[:, 0, :]
        cls_index = list(est.classes_).index(1) if 1 in est.classes_ else None
        out.append({"left": t.children_left.astype(np.int64), "right": t.children_right.astype(np.int64),
                    "feature": np.where(t.children_left < 0, 0, t.feature), "threshold": t.threshold,
                    "value": v[:, cls_index] / v.sum(1) if cls_index is not None else np.zeros(len(v))})
    return _concat(out)


def _predictor_arrays(pred: Any) -> dict[str, np.ndarray]:
    """One fitted ``HistGradientBoosting`` predictor as per-tree arrays."""
    nd = pred.nodes
    if nd["is_categorical"].any():
        raise ValueError("categorical splits cannot be stored")
    leaf = nd["is_leaf"].astype(bool)
    return {"left": np.where(leaf, -1, nd["left"].astype(np.int64)),
            "right": np.where(leaf, -1, nd["right"].astype(np.int64)),
            "feature": np.where(leaf, 0, nd["feature_idx"]), "threshold": nd["num_threshold"],
            "missing_left": nd["missing_go_to_left"].astype(bool), "value": nd["value"]}


def from_gradient_boosting(model: Any) -> tuple[Trees, float]:
    """A fitted binary ``HistGradientBoostingClassifier``: its trees (``value`` = the leaf's
    raw score) and the baseline raw score; probability = sigmoid(baseline + sum of leaves)."""
    if model.n_trees_per_iteration_ != 1:
        raise ValueError("only binary gradient boosting models can be stored")
    return _concat([_predictor_arrays(pred) for (pred,) in model._predictors]), \
        float(np.ravel(model._baseline_prediction)[0])


def from_gradient_boosting_multiclass(model: Any) -> tuple[list[Trees], np.ndarray]:
    """A fitted multi-class ``HistGradientBoostingClassifier``: one :class:`Trees` per class
    (in ``model.classes_`` order) and the baseline raw scores; probabilities =
    softmax(baseline + per-class sums of leaves)."""
    k = model.n_trees_per_iteration_
    trees = [_concat([_predictor_arrays(it[c]) for it in model._predictors]) for c in range(k)]
    return trees, np.ravel(model._baseline_prediction).astype(np.float64)



def softmax(raw: np.ndarray) -> np.ndarray:
    """Row-wise softmax of raw scores."""
    e = np.exp(raw - raw.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Multiclass:
    """Multi-class boosted trees: ``p = softmax(baseline + per-class leaf sums)`` over ``classes``
    (one :class:`Trees` per class, as :func:`from_gradient_boosting_multiclass` gives them)."""

    feature_names: tuple[str, ...]
    classes: Any  # (k,) class codes or names, in probability-column order
    trees: tuple[Trees, ...]
    baseline: np.ndarray  # (k,)

    def raw(self, features: np.ndarray) -> np.ndarray:
        """``(n, k)`` raw scores; checks the feature count."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"model expects (n, {len(self.feature_names)}) features "
                             f"({', '.join(self.feature_names)}), got {x.shape}")
        if not len(x):
            return np.zeros((0, len(self.classes)))
        return self.baseline + np.stack([t.leaf_sum(x) for t in self.trees], 1)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return softmax(self.raw(features))

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}feature_names": np.array(self.feature_names), f"{prefix}classes": np.array(self.classes),
               f"{prefix}baseline": self.baseline}
        for i, t in enumerate(self.trees):
            out |= t.arrays(f"{prefix}class{i}_")
        return out

    @staticmethod
    def read(z: Any, prefix: str, expected: tuple[str, ...], retrain: str
             ) -> tuple[tuple[str, ...], np.ndarray, tuple[Trees, ...], np.ndarray]:
        """Feature names, classes, trees and baseline stored under ``prefix``; a model fitted on
        other features than ``expected`` raises ``ValueError`` naming ``retrain`` (the command)."""
        names = tuple(str(n) for n in z[f"{prefix}feature_names"])
        if names != expected:
            raise ValueError(f"model features {names} differ from this syngraph's {expected}; retrain with `{retrain}`")
        classes = np.asarray(z[f"{prefix}classes"])
        trees = tuple(Trees.from_arrays(z, f"{prefix}class{i}_") for i in range(len(classes)))
        return names, classes, trees, np.asarray(z[f"{prefix}baseline"], np.float64)
