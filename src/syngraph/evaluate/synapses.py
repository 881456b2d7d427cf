"""Synapse accuracy against the demo ground truth.

A detected synapse matches a true one when both join the same two true cells (its supervoxels mapped
through ``gt/sv_to_cell``, so cell-id conventions do not matter) and their centres are within
``max_dist_nm``; matching is one-to-one (Hungarian assignment on distance, per cell pair).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from scipy.optimize import linear_sum_assignment

from syngraph.steps.synapses.cluster import map_to_cells


def match_synapses(
    det_pairs: np.ndarray,
    det_nm: np.ndarray,
    gt_pairs: np.ndarray,
    gt_nm: np.ndarray,
    max_dist_nm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (det, gt) of matched synapses; pairs are unordered (sorted) cell pairs."""
    det_key = np.sort(det_pairs, axis=1)
    gt_key = np.sort(gt_pairs, axis=1)
    out_d: list[int] = []
    out_g: list[int] = []
    for key in {tuple(k) for k in det_key.tolist()} & {tuple(k) for k in gt_key.tolist()}:
        di = np.nonzero((det_key == key).all(1))[0]
        gi = np.nonzero((gt_key == key).all(1))[0]
        d = np.linalg.norm(det_nm[di, None, :] - gt_nm[None, gi, :], axis=2)
        cost = np.where(d <= max_dist_nm, d, 1e12)
        r, c = linear_sum_assignment(cost)
        ok = cost[r, c] <= max_dist_nm
        out_d.extend(di[r[ok]].tolist())
        out_g.extend(gi[c[ok]].tolist())
    return np.asarray(out_d, np.int64), np.asarray(out_g, np.int64)


def matched_synapses(wd: Path, max_dist_nm: float) -> tuple[Any, Any, np.ndarray, np.ndarray, np.ndarray]:
    """(our table, true table, our pre cells as true cell ids, matched det indices, matched gt indices)."""
    det = pq.read_table(wd / "tables" / "synapses.parquet")
    gt = pq.read_table(wd / "gt" / "synapses.parquet")
    s2c = pq.read_table(wd / "gt" / "sv_to_cell.parquet").sort_by("sv_id")
    sv_ids, cell_ids = s2c["sv_id"].to_numpy(), s2c["cell_id"].to_numpy()
    pre = map_to_cells(det["pre_sv_id"].to_numpy(), sv_ids, cell_ids)
    post = map_to_cells(det["post_sv_id"].to_numpy(), sv_ids, cell_ids)
    det_nm = np.stack([det[f"{a}_nm"].to_numpy() for a in "xyz"], axis=1)
    gt_nm = np.stack([gt[f"{a}_nm"].to_numpy() for a in "xyz"], axis=1)
    gt_pre = gt["pre_cell_id"].to_numpy()
    gt_post = gt["post_cell_id"].to_numpy()
    di, gi = match_synapses(np.stack([pre, post], 1), det_nm, np.stack([gt_pre, gt_post], 1), gt_nm,
                            max_dist_nm)
    return det, gt, pre, di, gi


def score_synapses(workdir: str | Path, max_dist_nm: float = 500.0) -> dict[str, Any]:
    """Precision, recall, direction and sign accuracy, area error of ``tables/synapses.parquet``
    (none on labels-only data: the matrix step wrote the cell contact graph, no synapses)."""
    if not (Path(workdir) / "tables" / "synapses.parquet").exists():
        return {}
    det, gt, pre, di, gi = matched_synapses(Path(workdir), max_dist_nm)
    gt_pre = gt["pre_cell_id"].to_numpy()
    n_det, n_gt, n_match = det.num_rows, gt.num_rows, len(di)
    out: dict[str, Any] = {
        "synapses_detected": n_det,
        "synapses_true": n_gt,
        "synapse_precision": n_match / n_det if n_det else float("nan"),
        "synapse_recall": n_match / n_gt if n_gt else float("nan"),
    }
    if n_match:
        out["direction_accuracy"] = float(np.mean(pre[di] == gt_pre[gi]))
        sign = det["sign"].to_numpy()[di]
        if (sign != 0).any():
            out["sign_accuracy"] = float(np.mean(sign == gt["sign"].to_numpy()[gi]))
        a_det = det["area_um2"].to_numpy()[di]
        a_gt = gt["area_um2"].to_numpy()[gi]
        out["area_median_rel_error"] = float(np.median(np.abs(a_det - a_gt) / np.maximum(a_gt, 1e-12)))
    from syngraph.evaluate.domain import domain_metrics

    out["synapse_domain_distance"], out["synapse_held_back"] = domain_metrics(Path(workdir), "synapses")
    return out
