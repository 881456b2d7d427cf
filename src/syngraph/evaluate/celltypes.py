"""Scoring cell types against the demo tissue's ground truth (``gt/cells``, ``gt/sv``).

A predicted cell's true type is the type of the true cell holding most of its voxels (by
supervoxel: ``tables/sv_to_cell`` against ``gt/sv``). Scored: the cells the step typed (skeleton
cable >= ``celltypes.min_cable_um``, the stated minimum); ``accuracy``, ``macro_f1`` over the
true classes present, and ``ece``, the expected calibration error of the top-class probability
(10 equal-width bins).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from syngraph.evaluate.compartments import macro_f1 as class_macro_f1


def true_celltypes(workdir: str | Path) -> pd.Series:
    """cell_id -> true type (voxel majority over the cell's supervoxels)."""
    wd = Path(workdir)
    s2c = pq.read_table(wd / "tables" / "sv_to_cell.parquet").to_pandas()
    gsv = pq.read_table(wd / "gt" / "sv.parquet", columns=["sv_id", "cell_id", "size_vx"]).to_pandas()
    gcells = pq.read_table(wd / "gt" / "cells.parquet", columns=["cell_id", "type"]).to_pandas()
    m = s2c.merge(gsv.rename(columns={"cell_id": "true_id"}), on="sv_id")
    m["type"] = m["true_id"].map(gcells.set_index("cell_id")["type"])
    votes = m.groupby(["cell_id", "type"])["size_vx"].sum().reset_index()
    best = votes.sort_values("size_vx", ascending=False).drop_duplicates("cell_id")
    return pd.Series(best["type"].to_numpy().astype(str),
                     index=pd.Index(best["cell_id"].to_numpy().astype(np.uint64), name="cell_id"))


def expected_calibration_error(prob: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| weighted by the bin's share."""
    conf = np.max(prob, 1)
    b = np.minimum((conf * bins).astype(int), bins - 1)
    err = 0.0
    for k in range(bins):
        m = b == k
        if m.any():
            err += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(err)


def macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean F1 over the true classes (nan if none)."""
    return class_macro_f1(truth, pred, tuple(np.unique(truth)))


def score_celltypes(workdir: str | Path) -> dict[str, object]:
    wd = Path(workdir)
    t = pq.read_table(wd / "tables" / "celltypes.parquet").to_pandas()
    t["cell_id"] = t["cell_id"].to_numpy().astype(np.uint64)
    t = t.set_index("cell_id")
    truth = true_celltypes(wd).reindex(t.index)
    classes = [c[2:] for c in t.columns if c.startswith("p_")]
    scored = t[t["typed"].to_numpy() & truth.notna().to_numpy()]
    y = truth.loc[scored.index].to_numpy().astype(str)
    pred = scored["celltype"].to_numpy().astype(str)
    prob = scored[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    correct = pred == y
    confusion = {f"{a}->{b}": int(np.sum((y == a) & (pred == b)))
                 for a in np.unique(y) for b in np.unique(pred) if a != b and np.any((y == a) & (pred == b))}
    return {
        "n_cells": len(t), "n_typed": len(scored),
        "min_cable_um": float(pq.read_schema(wd / "tables" / "celltypes.parquet").metadata
                              .get(b"syngraph:min_cable_um", b"nan")),
        "accuracy": float(correct.mean()) if len(y) else float("nan"),
        "macro_f1": macro_f1(y, pred),
        "ece": expected_calibration_error(prob, correct) if len(y) else float("nan"),
        "n_per_type": {c: int(np.sum(y == c)) for c in np.unique(y)},
        "errors": confusion,
    }
