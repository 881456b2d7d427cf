"""Spines: connected spine nodes, their neck length and head volume; the cell under a point.

A spine is a connected set of nodes labelled spine neck / spine head. Its neck length is the
cable of its neck nodes (each node stands for half of each incident edge); its head volume is
the volume of the cell's voxels, within a box around the head, whose nearest skeleton node of
the cell is a head node of that spine (a Voronoi partition of the cell's voxels by nodes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from syngraph import compartments as cp
from syngraph.bbox import BBox
from syngraph.steps.compartments.features import Tree


def cell_at_points(workdir: str | Path, xyz_nm: np.ndarray) -> np.ndarray:
    """The cell id (``tables/sv_to_cell.parquet``) of the voxel holding each point (0 = none)."""
    from syngraph.io.volume import open_layer

    sv = open_layer(workdir, "sv")
    vox = np.asarray(sv.info.voxel_size_nm, np.float64)
    ijk = np.floor(np.asarray(xyz_nm, np.float64).reshape(-1, 3) / vox).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(sv.shape)), axis=1)
    ids = np.zeros(len(ijk), np.uint64)
    for i in np.flatnonzero(inside).tolist():
        a = tuple(int(v) for v in ijk[i])
        ids[i] = sv.read(BBox(a, tuple(v + 1 for v in a)))[0, 0, 0]  # type: ignore[arg-type]
    t = pq.read_table(Path(workdir) / "tables" / "sv_to_cell.parquet").sort_by("sv_id")
    svs, cells = t.column("sv_id").to_numpy().astype(np.uint64), t.column("cell_id").to_numpy().astype(np.uint64)
    j = np.clip(np.searchsorted(svs, ids), 0, max(len(svs) - 1, 0))
    return np.where((len(svs) > 0) & (svs[j] == ids) & (ids > 0), cells[j] if len(svs) else 0, 0).astype(np.uint64)


def spine_components(tree: Tree, codes: np.ndarray) -> np.ndarray:
    """Spine id per node (1, 2, ... over connected neck/head nodes; 0 elsewhere).

    >>> t = Tree(np.zeros((5, 3)), np.array([-1, 0, 1, 0, 3]), np.ones(5))
    >>> spine_components(t, np.array([2, 3, 4, 2, 4])).tolist()
    [0, 1, 1, 0, 2]
    """
    n = len(codes)
    sp = np.isin(codes, (cp.SPINE_NECK, cp.SPINE_HEAD))
    e = tree.edges
    e = e[sp[e[:, 0]] & sp[e[:, 1]]]
    _, comp = connected_components(coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)),
                                   directed=False)
    _, ids = np.unique(comp[sp], return_inverse=True)
    out = np.zeros(n, np.int64)
    out[sp] = ids.reshape(-1) + 1
    return out


def neck_lengths_nm(tree: Tree, codes: np.ndarray, spine: np.ndarray) -> np.ndarray:
    """Neck cable (nm) per spine id 1..max (index 0 unused)."""
    cable = tree.node_cable_nm()
    neck = codes == cp.SPINE_NECK
    return np.bincount(spine[neck], cable[neck], minlength=int(spine.max(initial=0)) + 1)


def head_volumes_um3(mask: np.ndarray, origin_nm: np.ndarray, voxel_nm: np.ndarray, nodes_nm: np.ndarray,
                     head: np.ndarray) -> float:
    """Volume (um3) of the ``mask`` voxels (box starting at ``origin_nm``) whose nearest node
    (``nodes_nm``: the cell's nodes near the box) is one where ``head`` is true."""
    if not head.any() or not mask.any():
        return 0.0
    pts = (np.argwhere(mask) + 0.5) * voxel_nm + origin_nm
    _, nearest = cKDTree(nodes_nm).query(pts)
    return float(head[nearest].sum() * np.prod(voxel_nm) / 1e9)


def measure_spines(tree: Tree, codes: np.ndarray, read_mask, voxel_nm: np.ndarray,
                   margin_nm: float = 400.0) -> list[dict[str, float]]:
    """One dict per spine: spine_id, head x/y/z (nm, the head node nearest the heads' mean),
    n_head_nodes, neck_length_nm, head_volume_um3 (NaN without head nodes).

    ``read_mask(lo_vx, hi_vx) -> bool array``: the cell's voxels in a box (XYZ, clipped)."""
    spine = spine_components(tree, codes)
    necks = neck_lengths_nm(tree, codes, spine)
    out = []
    node_tree = cKDTree(tree.nodes_nm)
    for s in range(1, int(spine.max(initial=0)) + 1):
        heads = np.flatnonzero((spine == s) & (codes == cp.SPINE_HEAD))
        members = np.flatnonzero(spine == s)
        if heads.size:
            c = tree.nodes_nm[heads].mean(0)
            rep = heads[np.argmin(np.linalg.norm(tree.nodes_nm[heads] - c, axis=1))]
            r = float(tree.radius_nm[heads].max())
            lo = np.floor((tree.nodes_nm[heads].min(0) - r - margin_nm / 2) / voxel_nm).astype(np.int64)
            hi = np.ceil((tree.nodes_nm[heads].max(0) + r + margin_nm / 2) / voxel_nm).astype(np.int64) + 1
            mask, lo = read_mask(lo, hi)
            near = node_tree.query_ball_point(tree.nodes_nm[rep], float(np.linalg.norm((hi - lo) * voxel_nm)))
            near = np.asarray(sorted(near), np.int64)
            vol = head_volumes_um3(mask, lo * voxel_nm, voxel_nm, tree.nodes_nm[near],
                                   (spine[near] == s) & (codes[near] == cp.SPINE_HEAD))
        else:
            rep, vol = members[0], float("nan")
        x, y, z = (float(v) for v in tree.nodes_nm[rep])
        out.append({"spine_id": s, "x_nm": x, "y_nm": y, "z_nm": z, "n_head_nodes": int(heads.size),
                    "neck_length_nm": float(necks[s]), "head_volume_um3": vol})
    return out
