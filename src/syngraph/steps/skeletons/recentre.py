"""Move path vertices to the centres of the maximal inscribed balls that contain theirs.

The medial axis is the set of centres of maximal inscribed balls. A TEASAR path is a shortest
path through a penalty field that is nearly flat wherever the distance to the boundary is
large relative to the piece's thickest part, so inside a bouton or a bend of a thick neurite
it cuts across the core instead of passing through the centre (the true axis runs through the
bouton's centre: the cut loses up to a diameter of cable per bouton). A vertex whose inscribed
ball lies inside a larger one (``|q - v| + r(v) <= r(q)``) is not on the medial axis; the rule
moves it, one voxel step at a time, to the neighbour with the largest ball that still contains
its own, until none does. On a tube's axis no neighbour's ball contains the vertex's (the
distance to the boundary does not rise along the axis by a voxel per voxel), so vertices there
stay; in a bouton every vertex of the core climbs to the centre.
"""

from __future__ import annotations

import itertools

import numpy as np

_STEPS = np.array([s for s in itertools.product((-1, 0, 1), repeat=3) if any(s)], np.int64)


def recentre(verts_vx: np.ndarray, dbf: np.ndarray, fixed: np.ndarray,
             anisotropy_nm: tuple[float, float, float], tol_nm: float,
             max_steps: int = 256) -> np.ndarray:
    """New integer positions of ``verts_vx`` (n, 3) in the distance field ``dbf`` (0 outside).

    A step from ``v`` to a neighbour ``q`` is allowed when the ball at ``q`` contains the ball
    at ``v`` within ``tol_nm`` (``|q - v| + dbf[v] <= dbf[q] + tol_nm``) and ``dbf[q] > dbf[v]``;
    the step taken maximises ``dbf[q] - |q - v|``. Containment is transitive, so the end point's
    ball contains the start's. ``fixed`` vertices do not move.

    >>> d = np.zeros((9, 9, 9), np.float32)
    >>> g = np.indices(d.shape).transpose(1, 2, 3, 0) - 4
    >>> d[...] = np.maximum(4.5 - np.linalg.norm(g, axis=-1), 0)  # a ball of radius 4.5
    >>> recentre(np.array([[2, 4, 4], [6, 5, 4]]), d, np.zeros(2, bool), (1.0, 1.0, 1.0), 0.25).tolist()
    [[4, 4, 4], [4, 4, 4]]
    """
    pos = np.asarray(verts_vx, np.int64).copy()
    shape = np.asarray(dbf.shape)
    step_nm = np.linalg.norm(_STEPS * np.asarray(anisotropy_nm, np.float64), axis=1)
    active = np.flatnonzero(~np.asarray(fixed, bool))
    for _ in range(max_steps):
        if len(active) == 0:
            break
        p = pos[active]
        d0 = dbf[tuple(p.T)].astype(np.float64)
        q = p[:, None, :] + _STEPS[None]
        inside = np.all((q >= 0) & (q < shape), axis=2)
        dq = np.zeros(inside.shape)
        dq[inside] = dbf[tuple(q[inside].T)]
        gain = dq - step_nm[None]
        ok = inside & (dq > d0[:, None]) & (gain + tol_nm >= d0[:, None])
        gain[~ok] = -np.inf
        best = np.argmax(gain, axis=1)
        moves = ok[np.arange(len(p)), best]
        pos[active[moves]] = q[np.flatnonzero(moves), best[moves]]
        active = active[moves]
    return pos
