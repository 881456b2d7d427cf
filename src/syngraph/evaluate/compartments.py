"""Score the compartments step against the demo tissue's ``gt_compartments`` layer.

A node's true label is the ``gt_compartments`` voxel it lies in (the most frequent non-zero
label of its 3x3x3 neighbourhood when that voxel is background). Astrocyte nodes are left out.

* ``node_accuracy_axon_dendrite_soma``: coarse labels (dendrite = shaft / neck / head, axon =
  axon / boutons, soma) of the smoothed labels against the truth, over every neuron node.
* ``spine_f1``: macro F1 of shaft, spine neck and spine head over the nodes that are dendrite
  in truth or prediction; ``bouton_f1``: macro F1 of bouton and terminal bouton over the nodes
  that are axon in truth or prediction (any other prediction counts as a miss).
* ``spine_head_volume_median_rel_error`` (when ``tables/spines.parquet`` exists): per predicted
  spine head, |ours - true| / true against the ``gt_compartments`` spine-head component of the
  same cell that holds the head's node.
* ``synapse_post_compartment_accuracy`` (when the synapse table has ``post_compartment``):
  synapses matched to true ones (``evaluate.synapses``), fraction whose post compartment
  (soma / shaft / spine_head; a neck counts as shaft) equals the truth's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from syngraph import compartments as cp

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

    keep = (truth != cp.UNKNOWN) & (truth != cp.ASTROCYTE)
    t, p = truth[keep], pred[keep]
    dend = np.isin(t, list(cp.DENDRITE)) | np.isin(p, list(cp.DENDRITE))
    axon = np.isin(t, list(cp.AXONAL)) | np.isin(p, list(cp.AXONAL))
    return {
        "node_accuracy_axon_dendrite_soma": float((coarse(t) == coarse(p)).mean()) if len(t) else float("nan"),
        "spine_f1": macro_f1(t[dend], p[dend], (cp.SHAFT, cp.SPINE_NECK, cp.SPINE_HEAD)),
        "bouton_f1": macro_f1(t[axon], p[axon], (cp.BOUTON, cp.TERMINAL_BOUTON)),
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
    return out
