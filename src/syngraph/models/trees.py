"""Decision-tree ensembles as plain arrays: fitted with scikit-learn, stored in ``.npz`` (loaded
with ``allow_pickle=False``) and evaluated with numpy alone.

Trees are concatenated: ``left`` / ``right`` child (-1 at leaves, indices global), ``feature``
and ``threshold`` (a row goes left when ``x[feature] <= threshold``; NaN goes where
``missing_left`` says), ``value`` per node, ``roots`` the index of each tree's root.
"""

from __future__ import annotations

from dataclasses import dataclass
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
        """``(n,)``: the sum over the trees of the value of the leaf each row of ``x`` reaches."""
        x = np.asarray(x, np.float64)
        n, m = x.shape
        leaf = self.left < 0
        own = np.arange(self.left.size)
        left = np.where(leaf, own, self.left)  # leaves point to themselves: a fixed number of steps
        right = np.where(leaf, own, self.right)
        nan = bool(np.isnan(x).any())
        out = np.empty(n, np.float64)
        for a in range(0, n, chunk):
            xs = x[a:a + chunk]
            flat = xs.ravel()
            base = (np.arange(xs.shape[0]) * m)[:, None]
            node = np.broadcast_to(self.roots, (xs.shape[0], self.roots.size))
            for _ in range(self.depth):
                v = flat[base + self.feature[node]]
                go_left = v <= self.threshold[node]
                if nan:
                    go_left |= np.isnan(v) & self.missing_left[node]
                node = np.where(go_left, left[node], right[node])
            out[a:a + chunk] = self.value[node].sum(axis=1)
        return out

    @property
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
        return cls.build(*(z[f"{prefix}{k}"] for k in ("left", "right", "feature", "threshold", "value",
                                                      "roots", "missing_left")))


def from_random_forest(model: Any) -> Trees:
    """A fitted ``RandomForestClassifier``; ``value`` = class-1 probability of each node."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("l", "r", "f", "t", "v")}
    roots, offset = [], 0
    for est in model.estimators_:
        t = est.tree_
        leaf = t.children_left < 0
        parts["l"].append(np.where(leaf, -1, t.children_left + offset))
        parts["r"].append(np.where(leaf, -1, t.children_right + offset))
        parts["f"].append(np.where(leaf, 0, t.feature))
        parts["t"].append(t.threshold)
        v = t.value[:, 0, :]
        cls_index = list(est.classes_).index(1) if 1 in est.classes_ else None
        parts["v"].append(v[:, cls_index] / v.sum(1) if cls_index is not None else np.zeros(len(v)))
        roots.append(offset)
        offset += t.node_count
    return Trees.build(*(np.concatenate(parts[k]) for k in ("l", "r", "f", "t", "v")), roots)


def from_gradient_boosting(model: Any) -> tuple[Trees, float]:
    """A fitted binary ``HistGradientBoostingClassifier``: its trees (``value`` = the leaf's
    raw score) and the baseline raw score; probability = sigmoid(baseline + sum of leaves)."""
    if model.n_trees_per_iteration_ != 1:
        raise ValueError("only binary gradient boosting models can be stored")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("l", "r", "f", "t", "m", "v")}
    roots, offset = [], 0
    for (pred,) in model._predictors:
        nd = pred.nodes
        if nd["is_categorical"].any():
            raise ValueError("categorical splits cannot be stored")
        leaf = nd["is_leaf"].astype(bool)
        parts["l"].append(np.where(leaf, -1, nd["left"].astype(np.int64) + offset))
        parts["r"].append(np.where(leaf, -1, nd["right"].astype(np.int64) + offset))
        parts["f"].append(np.where(leaf, 0, nd["feature_idx"]))
        parts["t"].append(nd["num_threshold"])
        parts["m"].append(nd["missing_go_to_left"].astype(bool))
        parts["v"].append(nd["value"])
        roots.append(offset)
        offset += len(nd)
    trees = Trees.build(*(np.concatenate(parts[k]) for k in ("l", "r", "f", "t", "v")), roots,
                        missing_left=np.concatenate(parts["m"]))
    return trees, float(np.ravel(model._baseline_prediction)[0])
