"""Score the compartments step against the demo tissue's ``gt_compartments`` layer.

A node's true label is the ``gt_compartments`` voxel it lies in (the most frequent non-zero
label of its 3x3x3 neighbourhood when that voxel is background). Astrocyte nodes are left out.

* ``node_accuracy_axon_dendrite_soma``: coarse labels (dendrite = shaft / neck / head, axon =
  axon / boutons, soma) of the smoothed labels against the truth, over every neuron node (nodes of cells the cells step called
  astrocyte are left out: that is the cells step's error, scored there).
* ``spine_f1``: macro F1 of shaft, spine neck and spine head over the nodes that are dendrite
  in truth or prediction; ``bouton_f1``: F1 of boutons (en-passant and terminal together) over
  the nodes that are axon in truth or prediction (any other prediction counts as a miss);
  ``terminal_bouton_f1``: F1 of terminal boutons alone (rare in the demo tissue: a few nodes per
  volume, so reported, not a target).
* ``spine_head_volume_median_rel_error`` (when ``tables/spines.parquet`` exists): per predicted
  spine head, |ours - true| / true against the ``gt_compartments`` spine-head component of the
  same cell that holds the head's node.
* ``synapse_post_compartment_accuracy`` (when the synapse table has ``post_compartment``):
  synapses matched to true ones (``evaluate.synapses``), fraction whose post compartment
  (soma / shaft / spine_head; a neck counts as shaft) equals the truth's.
* ``domain_distance``: the step's domain check (``steps/compartments/domain.json``; NaN: not
  measured); ``out_of_domain``: 1 when it lay past the threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from syngraph import compartments as cp

_BOUTONS = (cp.BOUTON, cp.TERMINAL_BOUTON)
_OFFS = np.stack(np.meshgrid(*(np.arange(-1, 2),) * 3, indexing="ij"), -1).reshape(-1, 3)


def voxel_labels(labels: np.ndarray, nodes_nm: np.ndarray, voxel_nm: np.ndarray) -> np.ndarray:
    """The label of the voxel holding each point; background voxels take the most frequent
    non-zero label of their 3x3x3 neighbourhood (0 if none).

    >>> v = np.zeros((6, 6, 6), np.uint8); v[1:3, 1:3, 1:3] = 5
    >>> voxel_labels(v, np.array([[15.0, 15, 15], [5, 5, 5], [55, 55, 55]]), np.array([10.0, 10, 10])).tolist()
    [5, 5, 0]
    """
    shape = np.asarray(labels.shape)
    ijk = np.clip(np.floor(np.asarray(nodes_nm, np.float64) / voxel_nm).astype(np.int64), 0, shape - 1)
    nb = np.clip(ijk[:, None, :] + _OFFS[None], 0, shape - 1)
    vals = labels[nb[..., 0], nb[..., 1], nb[..., 2]].astype(np.int64)  # (n, 27)
    own = labels[ijk[:, 0], ijk[:, 1], ijk[:, 2]].astype(np.int64)
    counts = np.stack([(vals == k).sum(1) for k in range(1, int(labels.max(initial=0)) + 1)], 1) \
        if labels.max(initial=0) > 0 else np.zeros((len(own), 1), np.int64)
    best = np.where(counts.max(1) > 0, counts.argmax(1) + 1, 0)
    return np.where(own > 0, own, best).astype(np.uint8)


def macro_f1(truth: np.ndarray, pred: np.ndarray, classes: tuple[int, ...]) -> float:
    """Mean F1 over ``classes`` present in truth or prediction (nan if none)."""
    f1 = []
    for c in classes:
        tp = int(((truth == c) & (pred == c)).sum())
        fp = int(((truth != c) & (pred == c)).sum())
        fn = int(((truth == c) & (pred != c)).sum())
        if tp + fp + fn:
            f1.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1)) if f1 else float("nan")


def node_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The node metrics for codes ``truth`` / ``pred`` (neuron nodes with a truth label)."""
    from syngraph.steps.compartments.smooth import coarse

    keep = (truth != cp.UNKNOWN) & (truth != cp.ASTROCYTE) & (pred != cp.ASTROCYTE)
    t, p = truth[keep], pred[keep]
    dend = np.isin(t, list(cp.DENDRITE)) | np.isin(p, list(cp.DENDRITE))
    axon = np.isin(t, list(cp.AXONAL)) | np.isin(p, list(cp.AXONAL))
    return {
        "node_accuracy_axon_dendrite_soma": float((coarse(t) == coarse(p)).mean()) if len(t) else float("nan"),
        "spine_f1": macro_f1(t[dend], p[dend], (cp.SHAFT, cp.SPINE_NECK, cp.SPINE_HEAD)),
        "bouton_f1": macro_f1(np.isin(t[axon], _BOUTONS), np.isin(p[axon], _BOUTONS), (True,)),
        "terminal_bouton_f1": macro_f1(t[axon], p[axon], (cp.TERMINAL_BOUTON,)),
        "n_nodes": int(keep.sum()),
    }


def demo_node_truth(workdir: str | Path, nodes_nm: np.ndarray) -> np.ndarray:
    """True compartment codes of points (nm) from the demo tissue's ``gt_compartments``."""
    from syngraph.io.volume import open_layer

    layer = open_layer(workdir, "gt_compartments")
    return voxel_labels(layer.read(), nodes_nm, np.asarray(layer.info.voxel_size_nm, np.float64))


def score_compartments(workdir: str | Path) -> dict[str, Any]:
    wd = Path(workdir)
    t = pq.read_table(wd / "tables" / "compartments_nodes.parquet")
    xyz = np.stack([t.column(c).to_numpy() for c in ("x_nm", "y_nm", "z_nm")], 1)
    pred = np.array([cp.CODES[s] for s in t.column("label").to_pylist()], np.uint8)
    raw = np.array([cp.CODES[s] for s in t.column("label_raw").to_pylist()], np.uint8)
    truth = demo_node_truth(wd, xyz)
    out: dict[str, Any] = node_scores(truth, pred)
    out["raw"] = {k: v for k, v in node_scores(truth, raw).items() if k != "n_nodes"}
    out.update(spine_volume_scores(wd))
    out.update(synapse_scores(wd))
    out.update(domain_scores(wd))
    return out


def domain_scores(wd: Path) -> dict[str, float]:
    from syngraph.evaluate.domain import domain_metrics

    distance, out = domain_metrics(wd, "compartments")  # the step never overrides: held back = outside
    return {"domain_distance": distance, "out_of_domain": out}


def true_head_volume_um3(gt_comp: np.ndarray, gt_cells: np.ndarray, point_vx: np.ndarray,
                         voxel_nm: np.ndarray) -> float:
    """Volume of the true spine-head component (same true cell) holding ``point_vx`` in the box,
    or the one nearest it (NaN if the box has none)."""
    from scipy import ndimage

    i, j, k = (int(v) for v in point_vx)
    cell = gt_cells[i, j, k]
    lab, n = ndimage.label((gt_comp == cp.SPINE_HEAD) & (gt_cells == cell), structure=np.ones((3, 3, 3)))
    if n == 0:
        return float("nan")
    c = lab[i, j, k]
    if c == 0:
        pts = np.argwhere(lab > 0)
        c = lab[tuple(pts[np.argmin(np.linalg.norm((pts - point_vx) * voxel_nm, axis=1))])]
    return float((lab == c).sum() * np.prod(voxel_nm) / 1e9)


def spine_volume_scores(wd: Path, box_nm: float = 1500.0) -> dict[str, float]:
    """Median relative error of the predicted spine head volumes against the true heads."""
    from syngraph.bbox import BBox
    from syngraph.io.volume import open_layer

    path = wd / "tables" / "spines.parquet"
    if not path.exists():
        return {}
    sp = pq.read_table(path).to_pandas()
    sp = sp[np.isfinite(sp["head_volume_um3"])]
    comp, cells = open_layer(wd, "gt_compartments"), open_layer(wd, "gt_cells")
    vox = np.asarray(comp.info.voxel_size_nm, np.float64)
    shape = np.asarray(comp.shape)
    rel = []
    for row in sp.itertuples():
        p = np.array([row.x_nm, row.y_nm, row.z_nm]) / vox
        lo = np.clip(np.floor(p - box_nm / vox).astype(np.int64), 0, shape)
        hi = np.clip(np.ceil(p + box_nm / vox).astype(np.int64) + 1, 0, shape)
        box = BBox(tuple(lo.tolist()), tuple(hi.tolist()))
        true = true_head_volume_um3(comp.read(box), cells.read(box),
                                    np.clip(np.floor(p).astype(np.int64) - lo, 0, hi - lo - 1), vox)
        if np.isfinite(true) and true > 0:
            rel.append(abs(row.head_volume_um3 - true) / true)
    return {"spine_head_volume_median_rel_error": float(np.median(rel)) if rel else float("nan"),
            "n_spine_heads_scored": len(rel)}


def synapse_scores(wd: Path) -> dict[str, float]:
    """Post-compartment accuracy of the matched synapses (a spine neck counts as shaft)."""
    from syngraph.evaluate.synapses import matched_synapses

    path = wd / "tables" / "synapses.parquet"
    if not path.exists() or "post_compartment" not in pq.read_schema(path).names:
        return {}
    if pq.read_table(path, columns=["post_compartment"])["post_compartment"].null_count == \
            pq.read_metadata(path).num_rows:
        return {}
    det, gt, pre, di, gi = matched_synapses(wd, 500.0)
    if len(di) == 0:
        return {}
    ours = np.array(det["post_compartment"].to_pylist(), dtype=object)[di]
    ours = np.where(ours == "spine_neck", "shaft", ours)
    true = np.array(gt["post_compartment"].to_pylist(), dtype=object)[gi]
    same_dir = pre[di] == gt["pre_cell_id"].to_numpy()[gi]
    return {"synapse_post_compartment_accuracy": float(np.mean((ours == true) & same_dir)),
            "n_synapses_scored": len(di)}
