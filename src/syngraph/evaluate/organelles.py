"""Organelle instances against ground truth: precision and recall of one-to-one matches at IoU >= 0.5.

A predicted object (``<layer>_seg``) and a true one (``gt_<layer>``) match when their intersection over
union is at least ``min_iou``; at IoU > 0.5 a match is necessarily one-to-one (ties at exactly 0.5
are broken greedily by IoU). precision = matched / predicted, recall = matched / true.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import numpy as np

from syngraph.bbox import BBox
from syngraph.io.volume import list_layers, open_layer


class LayerScore(TypedDict):
    precision: float
    recall: float
    n_pred: int
    n_true: int
    n_matched: int


def match_instances(pred: np.ndarray, true: np.ndarray, min_iou: float = 0.5) -> LayerScore:
    """Score two label arrays (0 = background).

    >>> t = np.array([1, 1, 1, 1, 0, 2, 2, 0]); p = np.array([5, 5, 5, 0, 0, 0, 7, 7])
    >>> s = match_instances(p, t); s["precision"], s["recall"], s["n_matched"]
    (0.5, 0.5, 1)
    """
    return _score(*_contingency(pred.ravel(), true.ravel()), min_iou)


def _contingency(pred: np.ndarray, true: np.ndarray):
    m = (pred != 0) | (true != 0)
    p, t = pred[m].astype(np.uint64), true[m].astype(np.uint64)
    pairs, inter = np.unique(np.stack([p, t], 1), axis=0, return_counts=True)
    pid, psize = np.unique(p[p != 0], return_counts=True)
    tid, tsize = np.unique(t[t != 0], return_counts=True)
    return pairs, inter, pid, psize, tid, tsize


def _score(pairs, inter, pid, psize, tid, tsize, min_iou: float) -> LayerScore:
    both = (pairs[:, 0] != 0) & (pairs[:, 1] != 0)
    pairs, inter = pairs[both], inter[both]
    ps = psize[np.searchsorted(pid, pairs[:, 0])] if len(pairs) else np.zeros(0)
    ts = tsize[np.searchsorted(tid, pairs[:, 1])] if len(pairs) else np.zeros(0)
    iou = inter / (ps + ts - inter) if len(pairs) else np.zeros(0)
    used_p: set[int] = set()
    used_t: set[int] = set()
    for k in np.argsort(-iou, kind="stable"):
        if iou[k] < min_iou:
            break
        a, b = int(pairs[k, 0]), int(pairs[k, 1])
        if a not in used_p and b not in used_t:
            used_p.add(a)
            used_t.add(b)
    n = len(used_p)
    return LayerScore(
        precision=n / len(pid) if len(pid) else 0.0,
        recall=n / len(tid) if len(tid) else 0.0,
        n_pred=len(pid),
        n_true=len(tid),
        n_matched=n,
    )


def score_organelles(
    workdir: str | Path, layers: Sequence[str] | None = None, min_iou: float = 0.5, slab_z: int = 64
) -> dict[str, LayerScore]:
    """Precision/recall of ``<layer>_seg`` against ``gt_<layer>``.

    ``layers``: the layers to score (a missing one is an error); none = ``mi`` and ``vc`` where the
    volume has both the segmentation and its truth (a labels-only volume scores nothing). Reads the volumes in
    z-slabs of ``slab_z`` voxels (memory set by the slab, not the volume).
    """
    have = set(list_layers(workdir))
    if layers is None:
        layers = [n for n in ("mi", "vc") if f"{n}_seg" in have and f"gt_{n}" in have]
    out: dict[str, LayerScore] = {}
    for name in layers:
        if f"{name}_seg" not in have or f"gt_{name}" not in have:
            missing = [x for x in (f"{name}_seg", f"gt_{name}") if x not in have]
            raise FileNotFoundError(
                f"cannot score '{name}' in {workdir}: missing layer(s) {missing}; run `syngraph run init` "
                f"on a demo tissue made by `syngraph synth` (which writes gt_{name})"
            )
        pl, tl = open_layer(workdir, f"{name}_seg"), open_layer(workdir, f"gt_{name}")
        if tuple(pl.shape) != tuple(tl.shape):
            raise ValueError(f"'{name}_seg' has shape {pl.shape} but 'gt_{name}' has {tl.shape}")
        sx, sy, sz = pl.shape
        acc: dict[tuple[int, int], int] = {}
        psz: dict[int, int] = {}
        tsz: dict[int, int] = {}
        for z0 in range(0, sz, slab_z):
            box = BBox((0, 0, z0), (sx, sy, min(z0 + slab_z, sz)))
            pairs, inter, pid, ps, tid, ts = _contingency(pl.read(box).ravel(), tl.read(box).ravel())
            for (a, b), c in zip(pairs.tolist(), inter.tolist(), strict=True):
                acc[(a, b)] = acc.get((a, b), 0) + c
            for a, c in zip(pid.tolist(), ps.tolist(), strict=True):
                psz[a] = psz.get(a, 0) + c
            for a, c in zip(tid.tolist(), ts.tolist(), strict=True):
                tsz[a] = tsz.get(a, 0) + c
        keys = sorted(acc)
        pairs = np.array(keys, np.uint64).reshape(-1, 2)
        inter = np.array([acc[k] for k in keys], np.int64)
        pid = np.array(sorted(psz), np.uint64)
        tid = np.array(sorted(tsz), np.uint64)
        out[name] = _score(
            pairs, inter, pid, np.array([psz[int(i)] for i in pid], np.int64),
            tid, np.array([tsz[int(i)] for i in tid], np.int64), min_iou,
        )
    return out
