"""Pre- and postsynaptic points: the partner voxel nearest to each synapse centre.

CAVE and neuPrint store a synapse as three points (pre, post, centre); the synapses step keeps only
the centre. For each synapse, the ``sv`` layer is read in a window of ``radius_nm`` around the
centre and the nearest voxel (in nm) of the pre (post) supervoxel is its pre (post) point; where
none lies in the window, the centre stands in.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from syngraph.bbox import BBox
from syngraph.io.volume import Layer


def nearest_voxel(window: np.ndarray, origin_vx: np.ndarray, centre_vx: np.ndarray, label: int,
                  voxel_size_nm: np.ndarray) -> np.ndarray | None:
    """Global XYZ voxel of ``label`` in ``window`` (starting at ``origin_vx``) nearest to
    ``centre_vx`` in nm, or None.

    >>> w = np.zeros((5, 5, 1), np.uint64); w[4, 2, 0] = 7; w[0, 0, 0] = 7
    >>> nearest_voxel(w, np.array([10, 10, 0]), np.array([13, 12, 0]), 7, np.ones(3)).tolist()
    [14, 12, 0]
    """
    idx = np.argwhere(window == label)
    if len(idx) == 0:
        return None
    d = ((idx + origin_vx - centre_vx) * voxel_size_nm) ** 2
    return (idx[np.argmin(d.sum(1))] + origin_vx).astype(np.int64)


def partner_points_vx(sv: Layer, centre_vx: np.ndarray, pre_sv: np.ndarray, post_sv: np.ndarray,
                      radius_nm: float = 200.0, tile_vx: tuple[int, int, int] = (256, 256, 64),
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(pre (n, 3), post (n, 3))`` int64 XYZ voxels of each synapse's partners (see module).

    Synapses are grouped by the ``tile_vx`` tile that holds their centre, and each tile reads the
    box covering its synapses' windows once, so memory is bounded by the tile and reads do not
    grow with the synapse count.
    """
    vs = np.asarray(sv.info.voxel_size_nm, np.float64)
    r = np.maximum(np.ceil(radius_nm / vs), 1).astype(np.int64)
    centre_vx = np.asarray(centre_vx, np.int64).reshape(-1, 3)
    pre, post = centre_vx.copy(), centre_vx.copy()
    if len(centre_vx) == 0:
        return pre, post
    tile = centre_vx // np.asarray(tile_vx, np.int64)
    _, group, counts = np.unique(tile, axis=0, return_inverse=True, return_counts=True)
    for members in np.split(np.argsort(group.ravel(), kind="stable"), np.cumsum(counts)[:-1]):
        c = centre_vx[members]
        box = BBox(tuple(int(v) for v in c.min(0) - r), tuple(int(v) for v in c.max(0) + r + 1)).intersect(sv.bbox)
        if box.empty:
            continue
        win = sv.read(box)
        for i in members:
            b = BBox.from_shape(2 * r + 1, offset=centre_vx[i] - r).intersect(box)  # the synapse's window
            if b.empty:
                continue
            sub = win[b.local_slices(box)]
            for out, label in ((pre, pre_sv[i]), (post, post_sv[i])):
                p = nearest_voxel(sub, np.asarray(b.start, np.int64), centre_vx[i], int(label), vs)
                if p is not None:
                    out[i] = p
    return pre, post


def with_partner_points(synapses: pa.Table, sv: Layer) -> pa.Table:
    """The synapses table with ``pre_{x,y,z}_vx`` and ``post_{x,y,z}_vx`` columns added."""
    centre = np.stack([synapses[f"{a}_vx"].to_numpy() for a in "xyz"], 1)
    pre, post = partner_points_vx(sv, centre, synapses["pre_sv_id"].to_numpy(), synapses["post_sv_id"].to_numpy())
    for side, pts in (("pre", pre), ("post", post)):
        for k, a in enumerate("xyz"):
            synapses = synapses.append_column(f"{side}_{a}_vx", pa.array(pts[:, k], pa.int64()))
    return synapses
