"""Scoring cells against the demo tissue's ground truth (``gt/cells``, ``gt/sv_to_cell``,
``gt/sv_edges``).

What counts (T = the working directory's ``cells.min_cc_size_nm``, the pruning size):

- A true cell is *in scope* when the L2 diagonal of its bounding box inside the volume (union of
  its supervoxels' boxes, ``(max - min) * voxel_size_nm``, max exclusive: the pruning formula)
  is ``> T`` and its supervoxels are connected by the true edges (``gt/sv_edges``). Smaller
  cells are pruned by design (reference: components under the size threshold are dropped, and
  under the astrocyte splitting rules neuron pieces under T move to the astrocytes), so they are
  scored separately (``n_small_neurons``, ``n_small_recovered``); a true cell whose supervoxels
  are not connected inside the volume cannot be one component of any supervoxel graph and is
  counted in ``n_disconnected_neurons``.
- ``n_split``: in-scope true neurons whose supervoxels are not all in one predicted cell (or not
  in any cell). ``n_recovered``: in-scope true neurons that are one predicted cell with exactly
  their supervoxels.
- ``n_merge``: predicted neuron cells holding supervoxels of more than one true cell (any size).
- ``astrocyte_accuracy``: per supervoxel of the in-scope true cells, the final kind after the
  splitting rules (``tables/sv_class.parquet``) against the truth; ``astrocyte_accuracy_all``
  over every supervoxel, ``astrocyte_accuracy_classifier`` the thresholded probability alone
  over every supervoxel.
- ``astrocyte_domain_distance``, ``astrocyte_held_back``: the astrocyte step's domain check
  (``steps/astrocytes/domain.json``; docs/models.md): a held-back model predicts no astrocyte.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import numpy as np
import pyarrow.parquet as pq

from syngraph.config import load_config
from syngraph.graph import connected_components, edge_array, group_diagonal_nm


class CellScore(TypedDict):
    min_cc_size_nm: float
    n_true_neurons: int  # in scope: extent > min_cc_size_nm and connected
    n_recovered: int  # in-scope true neurons found as one cell with exactly their supervoxels
    n_split: int  # in-scope true neurons whose supervoxels lie in > 1 predicted cell (or none)
    n_merge: int  # predicted neuron cells holding supervoxels of > 1 true cell
    n_small_neurons: int  # true neurons with extent <= min_cc_size_nm (not in n_split)
    n_small_recovered: int  # of those, found as one cell with exactly their supervoxels
    n_disconnected_neurons: int  # true neurons whose supervoxels are not connected in the volume
    n_sv: int
    n_sv_scored: int  # supervoxels of in-scope true cells (astrocyte_accuracy)
    astrocyte_accuracy: float  # per in-scope supervoxel, final kind (after splitting) vs truth
    astrocyte_accuracy_all: float  # per supervoxel, final kind vs truth
    astrocyte_accuracy_classifier: float  # per supervoxel, thresholded probability vs truth
    astrocyte_recall: float  # in scope
    astrocyte_precision: float  # in scope
    astrocyte_domain_distance: float  # the astrocyte step's domain distance (NaN: not measured)
    astrocyte_held_back: int  # 1 when the step did not use its model (outside its training domain)


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray, missing: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``values`` at ``query`` in sorted ``keys`` and the found flag (``missing`` where absent)."""
    if keys.size == 0:
        return np.full(query.size, missing, values.dtype), np.zeros(query.size, bool)
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    found = keys[pos] == query
    return np.where(found, values[pos], missing), found


def score_cells(workdir: str | Path) -> CellScore:
    """Split/merge counts of neurons and astrocyte accuracy of supervoxels (demo tissue only)."""
    wd = Path(workdir)
    needed = ("gt/cells", "gt/sv_to_cell", "gt/sv_edges", "gt/sv", "tables/sv_to_cell")
    for name in needed:
        if not (wd / f"{name}.parquet").exists():
            raise FileNotFoundError(
                f"{wd / name}.parquet is missing; score_cells needs the demo tissue's gt/ (syngraph "
                f"synth) and the cells step's tables (syngraph run cells)"
            )
    cfg = load_config(wd)
    size_nm = float(cfg.cells.min_cc_size_nm)
    vs = tuple(float(v) for v in cfg.voxel_size_nm)

    gt_cells = pq.read_table(wd / "gt" / "cells.parquet").sort_by("cell_id")
    c_ids = gt_cells.column("cell_id").to_numpy().astype(np.uint64)
    c_astro = np.asarray(gt_cells.column("type").to_pylist(), dtype=object) == "astrocyte"
    gt = pq.read_table(wd / "gt" / "sv.parquet").sort_by("sv_id")
    gt_sv = gt.column("sv_id").to_numpy().astype(np.uint64)
    gt_cell = gt.column("cell_id").to_numpy().astype(np.uint64)
    bmin = np.stack([gt.column(f"bbox_min_{a}_vx").to_numpy() for a in "xyz"], 1)
    bmax = np.stack([gt.column(f"bbox_max_{a}_vx").to_numpy() for a in "xyz"], 1)
    is_astro_true = _lookup(c_ids, c_astro, gt_cell, missing=False)[0].astype(bool)
    # the true cell's extent in the volume, per supervoxel (the pruning formula)
    cell_diag = group_diagonal_nm(gt_cell, bmin, bmax, vs) if gt_sv.size else np.zeros(0)
    in_scope = cell_diag > size_nm
    # true cells whose supervoxels are not connected by the true edges
    te = pq.read_table(wd / "gt" / "sv_edges.parquet")
    tedges = edge_array(te)
    _, tcomp = connected_components(tedges, gt_sv)
    ucell, cinv = np.unique(gt_cell, return_inverse=True)
    pair = np.unique(np.stack([cinv, np.unique(tcomp, return_inverse=True)[1].ravel()], 1), axis=0)
    disconnected = (np.bincount(pair[:, 0], minlength=ucell.size) > 1)[cinv]

    pr = pq.read_table(wd / "tables" / "sv_to_cell.parquet").sort_by("sv_id")
    pr_sv = pr.column("sv_id").to_numpy().astype(np.uint64)
    pr_cell = pr.column("cell_id").to_numpy().astype(np.uint64)
    pred, _ = _lookup(pr_sv, pr_cell, gt_sv)  # 0 = in no cell
    pred_size = dict(zip(*np.unique(pr_cell, return_counts=True), strict=True))

    n_true = n_rec = n_split = n_small = n_small_rec = n_disc = 0
    order = np.argsort(gt_cell, kind="stable")
    bounds = np.flatnonzero(np.r_[True, gt_cell[order][1:] != gt_cell[order][:-1], True])
    for i0, i1 in zip(bounds[:-1], bounds[1:], strict=True):
        members = order[i0:i1]
        if is_astro_true[members[0]]:
            continue
        pc = np.unique(pred[members])
        exact = pc.size == 1 and pc[0] != 0 and pred_size.get(pc[0], 0) == members.size
        if disconnected[members[0]]:
            n_disc += 1
        elif not in_scope[members[0]]:
            n_small += 1
            n_small_rec += int(exact)
        else:
            n_true += 1
            n_rec += int(exact)
            n_split += int(pc.size != 1 or pc[0] == 0)

    kinds = {}
    cells_path = wd / "tables" / "cells.parquet"
    if cells_path.exists():
        ct = pq.read_table(cells_path)
        kinds = dict(zip(ct.column("cell_id").to_pylist(), ct.column("kind").to_pylist(), strict=True))
    n_merge = 0
    ok = pred != 0
    if ok.any():
        pairs = np.unique(np.stack([pred[ok], gt_cell[ok]], 1), axis=0)
        cells, n_true_cells = np.unique(pairs[:, 0], return_counts=True)
        n_merge = sum(1 for c in cells[n_true_cells > 1] if kinds.get(int(c), "neuron") == "neuron")

    sv_class = wd / "tables" / "sv_class.parquet"
    if sv_class.exists():
        sc = pq.read_table(sv_class).sort_by("sv_id")
        s_ids = sc.column("sv_id").to_numpy().astype(np.uint64)
        final = _lookup(s_ids, np.asarray(sc.column("kind").to_pylist(), dtype=object) == "astrocyte", gt_sv,
                        missing=False)[0].astype(bool)
        raw = _lookup(s_ids, sc.column("predicted").to_numpy(zero_copy_only=False).astype(bool), gt_sv,
                      missing=False)[0].astype(bool)
    else:
        final = raw = np.zeros(gt_sv.size, bool)
    scored = in_scope & ~disconnected

    def acc(mask: np.ndarray, flag: np.ndarray) -> float:
        return float((flag[mask] == is_astro_true[mask]).mean()) if mask.any() else float("nan")

    tp = int((final & is_astro_true & scored).sum())

    def share(count: int) -> float:
        """``tp / count``; NaN when nothing was there to find (no astrocyte, or none called one)."""
        return tp / count if count else float("nan")

    return CellScore(
        min_cc_size_nm=size_nm,
        n_true_neurons=n_true, n_recovered=n_rec, n_split=n_split, n_merge=int(n_merge),
        n_small_neurons=n_small, n_small_recovered=n_small_rec, n_disconnected_neurons=n_disc,
        n_sv=int(gt_sv.size), n_sv_scored=int(scored.sum()),
        astrocyte_accuracy=acc(scored, final),
        astrocyte_accuracy_all=acc(np.ones(gt_sv.size, bool), final),
        astrocyte_accuracy_classifier=acc(np.ones(gt_sv.size, bool), raw),
        astrocyte_recall=share(int((is_astro_true & scored).sum())),
        astrocyte_precision=share(int((final & scored).sum())),
        **_domain(wd),
    )


def _domain(wd: Path) -> dict[str, float | int]:
    """The astrocyte step's domain measurement (``steps/astrocytes/domain.json``)."""
    from syngraph.evaluate.domain import domain_metrics

    dist, held = domain_metrics(wd, "astrocytes")
    return {"astrocyte_domain_distance": dist, "astrocyte_held_back": held}
