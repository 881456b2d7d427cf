"""Runs of equal labels along the fastest axis of a 3-D label array, and per-label statistics
computed from them: a run of ``L`` voxels is one row of work instead of ``L``.
Also the small helpers on runs of equal values that other steps share (``first_of_runs``,
``group_order``).

Every function works in the axes of the C-ordered array it is given; callers that hold an
XYZ array in another memory order transpose it first (see ``steps.astrocytes.block_morphology``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Runs:
    """Maximal runs of one label along axis 2 of a C-ordered ``(a, b, c)`` array.

    ``label`` (r,) intp; ``i``, ``j`` (r,) the run's indices along axes 0 and 1; ``start`` and
    ``stop`` (r,) its extent along axis 2 (stop exclusive); ``offset`` (r,) the flat index of
    its first voxel, in increasing order (for ``np.ufunc.reduceat`` over the raveled array).
    """

    label: np.ndarray
    i: np.ndarray
    j: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    offset: np.ndarray

    @property
    def length(self) -> np.ndarray:
        return self.stop - self.start


def first_of_equal(sorted_values: np.ndarray) -> np.ndarray:
    """Mask of the first element of each run of equal values in a sorted array."""
    keep = np.empty(len(sorted_values), bool)
    keep[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=keep[1:])
    return keep


def first_of_runs(sorted_values: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal values in a sorted array."""
    return np.flatnonzero(first_of_equal(sorted_values))


def group_order(values: np.ndarray, n: int) -> np.ndarray:
    """Stable argsort of int values in ``[0, n)`` by 16-bit radix passes (linear time)."""
    order = np.arange(len(values))
    shift = 0
    while (n - 1) >> shift or shift == 0:
        digit = ((values[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
    return order


def label_runs(labels: np.ndarray) -> Runs:
    """The runs of a C-ordered 3-D array of non-negative integer labels (runs end at row ends).

    >>> r = label_runs(np.array([[[1, 1, 0, 2], [2, 2, 2, 2]]]))
    >>> r.label.tolist(), r.j.tolist(), r.start.tolist(), r.stop.tolist()
    ([1, 0, 2, 2], [0, 0, 0, 1], [0, 2, 3, 0], [2, 3, 4, 4])
    """
    a = np.ascontiguousarray(labels)
    flat = a.ravel()
    if flat.size == 0:
        e = np.zeros(0, np.int64)
        return Runs(e.astype(np.intp), e, e, e, e, e)
    new = first_of_equal(flat)
    new[:: a.shape[2]] = True
    offset = np.flatnonzero(new).astype(np.int64)
    row, start = np.divmod(offset, a.shape[2])
    i, j = np.divmod(row, a.shape[1])
    stop = start + np.diff(np.r_[offset, flat.size])
    return Runs(flat[offset].astype(np.intp), i, j, start, stop, offset)


def run_sums(runs: Runs, values: np.ndarray, n: int) -> np.ndarray:
    """Per-label sum (float64, ``n`` labels) of ``values``, an array shaped like the labels."""
    if runs.offset.size == 0:
        return np.zeros(n)
    per_run = np.add.reduceat(np.ascontiguousarray(values).ravel(), runs.offset, dtype=np.float64)
    return np.bincount(runs.label, weights=per_run, minlength=n)


def run_max(runs: Runs, values: np.ndarray, n: int) -> np.ndarray:
    """Per-label maximum of ``values``, at least 0 (float64, ``n`` labels; 0 for absent labels)."""
    out = np.zeros(n)
    if runs.offset.size:
        per_run = np.maximum.reduceat(np.ascontiguousarray(values).ravel(), runs.offset)
        np.maximum.at(out, runs.label, per_run.astype(np.float64))
    return out


def coordinate_moments(runs: Runs, origin_vx: np.ndarray, spacing: np.ndarray,
                       n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-label sums of voxel-centre coordinates ``(origin_vx + index) * spacing``: first
    moments ``(n, 3)`` and second moments ``(n, 3, 3)`` (sums of products), in the array's axes.

    The sums along a run are closed forms of the integer index sums (exact in int64).
    """
    o = np.asarray(origin_vx, np.int64)
    s = np.asarray(spacing, np.float64)
    length = runs.length
    ln = length.astype(np.float64)
    u = (o[0] + runs.i) * s[0]
    w = (o[1] + runs.j) * s[1]
    g0 = o[2] + runs.start
    g1 = o[2] + runs.stop

    def squares_below(m: np.ndarray) -> np.ndarray:  # sum of k^2 for 0 <= k < m
        return (m - 1) * m * (2 * m - 1) // 6

    z1 = (length * g0 + length * (length - 1) // 2) * s[2]
    z2 = (squares_below(g1) - squares_below(g0)) * s[2] ** 2
    first = np.zeros((n, 3))
    second = np.zeros((n, 3, 3))
    for k, v in enumerate((ln * u, ln * w, z1)):
        first[:, k] = np.bincount(runs.label, weights=v, minlength=n)
    for (k, m), v in zip(((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)),
                         (ln * u * u, ln * w * w, z2, ln * u * w, u * z1, w * z1), strict=True):
        second[:, k, m] = second[:, m, k] = np.bincount(runs.label, weights=v, minlength=n)
    return first, second


def _peel(chain: np.ndarray, y: np.ndarray, x: np.ndarray, side: int) -> np.ndarray:
    """Mask of the points of each chain (``chain`` ids, rows ``y`` increasing within a chain)
    left after removing, until none is left, every interior point that lies on or inside the
    segment between its neighbours (``side`` -1: a left boundary, +1: a right one)."""
    idx = np.arange(chain.size)
    c, yy, xx = chain, y, x
    while idx.size > 2:
        inner = (c[1:-1] == c[:-2]) & (c[1:-1] == c[2:])
        # (x_p - x_a) (y_b - y_a) - (x_b - x_a) (y_p - y_a): > 0 where p lies right of a-b
        cross = (xx[1:-1] - xx[:-2]) * (yy[2:] - yy[:-2]) - (xx[2:] - xx[:-2]) * (yy[1:-1] - yy[:-2])
        drop = inner & (cross * side <= 0)
        if not drop.any():
            break
        keep = np.r_[True, ~drop, True]
        idx, c, yy, xx = idx[keep], c[keep], yy[keep], xx[keep]
    mask = np.zeros(chain.size, bool)
    mask[idx] = True
    return mask


def slice_hull_points(runs: Runs) -> tuple[np.ndarray, np.ndarray]:
    """``(label, points (m, 3))`` sorted by label: per label but 0 and slice (index along axis 0), the
    vertices of the convex hull of its voxels in the slice and some more points on that hull's
    boundary. The 3-D convex hull of each label's voxels is the hull of these points.

    A slice's hull vertices are ends of its rows (along axis 2); a row end on or inside the
    segment between the neighbouring row ends of the same side is no vertex, and removing it
    moves that side only inward, so both sides are peeled until they are convex.

    >>> lab = np.zeros((1, 3, 5), np.uint8)
    >>> lab[0, 0, :] = lab[0, 2, :] = lab[0, 1, 1:3] = 1  # a C lying on its back: 4 corners
    >>> slice_hull_points(label_runs(lab))[1].tolist()
    [[0, 0, 0], [0, 2, 0], [0, 0, 4], [0, 2, 4]]
    """
    order = np.flatnonzero(runs.label)
    if order.size == 0:
        return runs.label[order], np.zeros((0, 3), np.int64)
    n = int(runs.label.max()) + 1
    order = order[group_order(runs.label[order], n)]  # by label, then i, j, start (the runs' own order)
    lab, i, j = runs.label[order], runs.i[order], runs.j[order]
    new_chain = np.r_[True, (lab[1:] != lab[:-1]) | (i[1:] != i[:-1])]
    new_row = new_chain | np.r_[False, j[1:] != j[:-1]]
    first = np.flatnonzero(new_row)
    last = np.r_[first[1:], lab.size] - 1
    chain = np.cumsum(new_chain)[first]
    left, right = runs.start[order[first]], runs.stop[order[last]] - 1
    keep_l = _peel(chain, j[first], left, -1)
    keep_r = _peel(chain, j[first], right, 1) & ~(keep_l & (left == right))  # a one-voxel row once
    rl, rr = first[keep_l], first[keep_r]
    pts = np.concatenate([np.stack([i[rl], j[rl], left[keep_l]], 1), np.stack([i[rr], j[rr], right[keep_r]], 1)])
    lab = np.r_[lab[rl], lab[rr]]
    o = group_order(lab, n)
    return lab[o], pts[o]
