"""Compartments at synapses: each partner's label at the synapse, spine head volume, direction.

A partner's compartment is the smoothed label of its skeleton node whose surface (centre
distance minus radius) is nearest the synapse centre (``tables/compartments_nodes.parquet``); a postsynaptic shaft label becomes spine_head where the
synapse lies more than 300 nm beyond the node's radius (a spine the skeleton does not follow).
``post_spine_head_volume_um3`` is the head volume of the spine (``tables/spines.parquet``) when
the node is a spine head of a measured spine, else NaN.

Direction: the vesicle clouds (the synapses step) decide; where they have none, or their
confidence is below ``min_vesicle_conf`` and the compartments say clearly otherwise (one side
axon / bouton, the other dendrite / soma), the compartments decide. ``direction_source`` says
which won (``vesicles``, ``compartments``, ``none``); ``compartments_pre_cell_id`` is the side
the compartments call presynaptic (0 when they cannot tell) and ``direction_disagree`` marks
synapses where the two disagree, so both are reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.spatial import cKDTree

from syngraph import compartments as cp

NEAREST_K = 16
SWAP = (("pre_cell_id", "post_cell_id"), ("pre_sv_id", "post_sv_id"), ("vc_pre_vx", "vc_post_vx"),
        ("mi_pre_vx", "mi_post_vx"), ("vc_pre_dist_nm", "vc_post_dist_nm"),
        ("mi_pre_dist_nm", "mi_post_dist_nm"))


def nearest_labels(nodes: pa.Table, cell_ids: np.ndarray, xyz_nm: np.ndarray,
                   protrusion_nm: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(label name, spine id) of the node of cell ``cell_ids[i]`` whose sphere (radius) surface
    is nearest ``xyz_nm[i]``, among its :data:`NEAREST_K` nearest nodes ("unknown", 0 for cells
    without nodes): a synapse on a soma belongs to the soma, not to a thin neurite passing closer
    to it. With ``protrusion_nm``, a point on a shaft farther
    than the node's radius + ``protrusion_nm`` from it sits on a protrusion the skeleton does not
    follow: a spine head."""
    labels = np.full(len(cell_ids), "unknown", dtype=object)
    spine = np.zeros(len(cell_ids), np.int64)
    cid = nodes.column("cell_id").to_numpy()
    pts = np.stack([nodes.column(c).to_numpy() for c in ("x_nm", "y_nm", "z_nm")], 1)
    lab = np.asarray(nodes.column("label").to_pylist(), dtype=object)
    sid = nodes.column("spine_id").to_numpy()
    rad = nodes.column("radius_nm").to_numpy()
    order = np.argsort(cid, kind="stable")
    u, start = np.unique(cid[order], return_index=True)
    stop = np.r_[start[1:], len(order)]
    for c in np.unique(cell_ids):
        k = np.searchsorted(u, c)
        if k >= len(u) or u[k] != c:
            continue
        rows = order[start[k]:stop[k]]
        q = np.flatnonzero(cell_ids == c)
        k_near = min(NEAREST_K, len(rows))
        d, j = cKDTree(pts[rows]).query(xyz_nm[q], k=k_near)
        d, j = d.reshape(len(q), k_near), j.reshape(len(q), k_near)
        surface = d - rad[rows[j]]  # distance to each node's sphere: the nearest surface wins
        best = np.argmin(surface, axis=1)
        j, gap = j[np.arange(len(q)), best], surface[np.arange(len(q)), best]
        labels[q] = lab[rows[j]]
        spine[q] = sid[rows[j]]
        if protrusion_nm is not None:
            out = (labels[q] == cp.name(cp.SHAFT)) & (gap > protrusion_nm)
            labels[q[out]] = cp.name(cp.SPINE_HEAD)
    return labels, spine


def compartment_pre(label_a: np.ndarray, label_b: np.ndarray) -> np.ndarray:
    """+1 where the compartments say side a is presynaptic, -1 side b, 0 undecided.

    >>> compartment_pre(np.array(["bouton", "shaft", "axon"]), np.array(["spine_head", "axon", "axon"])).tolist()
    [1, -1, 0]
    """
    axonal = {cp.name(c) for c in cp.AXONAL}
    target = {cp.name(c) for c in cp.DENDRITE | {cp.SOMA}}
    a_ax = np.isin(label_a, list(axonal))
    b_ax = np.isin(label_b, list(axonal))
    a_t = np.isin(label_a, list(target))
    b_t = np.isin(label_b, list(target))
    return np.where(a_ax & b_t, 1, np.where(b_ax & a_t, -1, 0))


def annotate_synapses(workdir: str | Path, syn: pa.Table, voxel_size_nm: tuple[float, float, float],
                      min_vesicle_conf: float = 0.2, protrusion_nm: float = 300.0) -> pa.Table:
    """``syn`` (the synapses step's table) with pre/post compartments, spine head volume and the
    direction settled as the module says; unchanged if the compartments step has not run."""
    wd = Path(workdir)
    path = wd / "tables" / "compartments_nodes.parquet"
    if not path.exists() or syn.num_rows == 0:
        return syn
    nodes = pq.read_table(path, columns=["cell_id", "x_nm", "y_nm", "z_nm", "radius_nm", "label", "spine_id"])
    xyz = np.stack([syn.column(f"{a}_vx").to_numpy() * float(v) for a, v in zip("xyz", voxel_size_nm, strict=True)], 1)
    pre, post = syn.column("pre_cell_id").to_numpy(), syn.column("post_cell_id").to_numpy()
    lab_pre, _ = nearest_labels(nodes, pre, xyz)
    lab_post, _ = nearest_labels(nodes, post, xyz)
    says = compartment_pre(lab_pre, lab_post)  # +1: pre is right, -1: swapped
    source = np.asarray(syn.column("direction_source").to_pylist(), dtype=object)
    conf = syn.column("direction_conf").to_numpy()
    weak = (source == "none") | (conf < min_vesicle_conf)
    flip = (says == -1) & weak
    cols = {n: syn.column(n).to_numpy(zero_copy_only=False) for n in syn.column_names}
    for a, b in SWAP:
        if a in cols and b in cols:
            cols[a], cols[b] = np.where(flip, cols[b], cols[a]), np.where(flip, cols[a], cols[b])
    cols["direction_source"] = np.where(flip | ((says == 1) & (source == "none")), "compartments", source)
    cols["compartments_pre_cell_id"] = np.where(says == 1, pre, np.where(says == -1, post, 0)).astype(np.uint64)
    cols["direction_disagree"] = (says == -1) & (source != "none")
    new_pre, new_post = cols["pre_cell_id"], cols["post_cell_id"]
    lab_pre, _ = nearest_labels(nodes, new_pre, xyz)
    lab_post, sp_post = nearest_labels(nodes, new_post, xyz, protrusion_nm)
    cols["pre_compartment"] = lab_pre
    cols["post_compartment"] = lab_post
    cols["post_spine_head_volume_um3"] = head_volumes(wd, new_post, sp_post, lab_post)
    out = {k: pa.array(v.tolist() if v.dtype == object else v) for k, v in cols.items()}
    return pa.table(out)


def head_volumes(wd: Path, cells: np.ndarray, spine: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.full(len(cells), np.nan, np.float32)
    path = wd / "tables" / "spines.parquet"
    if not path.exists():
        return out
    t = pq.read_table(path).to_pandas().set_index(["cell_id", "spine_id"])["head_volume_um3"]
    for i in np.flatnonzero(labels == "spine_head").tolist():
        key = (int(cells[i]), int(spine[i]))
        if key in t.index:
            out[i] = float(t.loc[key])
    return out
