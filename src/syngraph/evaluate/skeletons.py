"""Score the skeletons step against the demo tissue's truth (``gt/skeletons.parquet``, ``gt/cells.parquet``).

Neurons (true type in ``NEURON_TYPES``; a neurite is a tube with a centre line) are scored
against their true trees; every other cell (astrocytes, other glia: lamellar or spongy
segments without a centre-line truth) by how well its skeleton covers its segment. The two
kinds are never pooled.

* ``neuron_node_precision``: fraction of our neuron nodes within the tolerance of the true
  tree (its edges, not only its nodes); ``neuron_node_recall``: fraction of true neuron nodes
  within the tolerance of ours. The tolerance at a point is ``max(2 * largest voxel side,
  local true radius)``. ``neuron_node_recall_kept``: the recall without the nodes of terminal
  branches shorter than ``skeletons.tick_threshold_nm`` (tip not on the volume border), which
  the post-processing removes by design.
* ``neuron_cable_rel_error_median``: median over neurons (>= 1 um of true cable) of
  ``|ours - true| / true``; ``neuron_cells_cable_within_5pct`` (and ``_10pct``): the fraction
  of those neurons within 5 % (10 %).
* ``astrocyte_coverage``: fraction of the non-neuron cells' true voxels within ``coverage_nm``
  of some skeleton node's inscribed sphere (``|v - node| - radius <= coverage_nm``);
  ``astrocyte_nodes_inside``: fraction of their nodes whose voxel belongs to the segment the
  step skeletonized (the cell as ``tables/sv_to_cell.parquet`` agglomerates it: fidelity to
  the segment, not the cells step's merges); ``astrocyte_nodes_inside_true``: the same against
  the true cell (a supervoxel merged into the cell counts as outside);
  ``astrocyte_cells_one_tree_per_piece``: fraction of those cells with exactly one tree per
  26-connected piece of the segment (pieces as the step sees them: strided by
  ``skeletons.downsample``, at least ``skeletons.dust_threshold_vx`` voxels; smaller pieces on
  the volume border may have a tree too).
* ``myelin_accuracy``: fraction of our nodes (all cells) whose ``myelin`` equals that of the
  nearest true edge of the same cell.
* ``per_type``: centre-line precision, recall and cable per true cell type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from scipy.spatial import cKDTree

from syngraph.config import load_config
from syngraph.skeleton import volume_hi_nm
from syngraph.synth.tissue import NEURON_TYPES


def densify(nodes: np.ndarray, parent: np.ndarray, values: dict[str, np.ndarray],
            step_nm: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Points every ``step_nm`` along the edges (child -> parent) plus the nodes; values of the
    child node go with the points of its edge (the parent's at the parent end)."""
    pts = [nodes]
    vals = {k: [np.asarray(v)] for k, v in values.items()}
    has = parent >= 0
    a, b = nodes[has], nodes[parent[has]]
    seg = np.linalg.norm(b - a, axis=1)
    nsub = np.maximum(np.ceil(seg / step_nm).astype(np.int64), 1)
    rep = np.repeat(np.arange(len(a)), nsub)
    t = (np.arange(nsub.sum()) - np.repeat(np.cumsum(nsub) - nsub, nsub)) / np.repeat(nsub, nsub)
    pts.append(a[rep] + (b[rep] - a[rep]) * t[:, None])
    for k, v in values.items():
        vals[k].append(np.asarray(v)[has][rep])
    return np.concatenate(pts), {k: np.concatenate(v) for k, v in vals.items()}


def cable_um(nodes: np.ndarray, parent: np.ndarray) -> float:
    has = parent >= 0
    return float(np.linalg.norm(nodes[has] - nodes[parent[has]], axis=1).sum() / 1000)


def short_terminal_branches(nodes: np.ndarray, parent: np.ndarray, max_len_nm: float,
                            fixed: np.ndarray | None = None) -> np.ndarray:
    """True for the nodes of terminal branches shorter than ``max_len_nm``.

    A terminal branch runs from a tip to the next branch point along the tree (the branch
    point itself is not part of it); its length is the path length from the tip to the branch
    point. Tips where ``fixed`` is true (on the volume border) and trees that are a single path
    have none.

    >>> nodes = np.array([[0.0, 0, 0], [100, 0, 0], [200, 0, 0], [100, 50, 0], [100, 500, 0]])
    >>> short_terminal_branches(nodes, np.array([-1, 0, 1, 1, 3]), 300.0).tolist()
    [True, False, True, False, False]
    """
    n = len(parent)
    out = np.zeros(n, bool)
    has = parent >= 0
    if n < 3:
        return out
    deg = np.bincount(np.r_[parent[has], np.flatnonzero(has)], minlength=n)
    adj: list[list[int]] = [[] for _ in range(n)]
    for c, p in zip(np.flatnonzero(has).tolist(), parent[has].tolist(), strict=True):
        adj[c].append(p)
        adj[p].append(c)
    fix = np.zeros(n, bool) if fixed is None else np.asarray(fixed, bool)
    for tip in np.flatnonzero((deg == 1) & ~fix).tolist():
        path, prev, cur, length = [tip], -1, tip, 0.0
        while True:
            w = next(v for v in adj[cur] if v != prev)
            length += float(np.linalg.norm(nodes[w] - nodes[cur]))
            if length >= max_len_nm or deg[w] == 1:
                break
            if deg[w] >= 3:
                out[path] = True
                break
            path.append(w)
            prev, cur = cur, w
    return out


def score_cell(gt: dict[str, np.ndarray], ours: dict[str, np.ndarray], min_tol_nm: float,
               short: np.ndarray | None = None) -> dict[str, Any]:
    """Counts for one cell; arrays: nodes (n,3) nm, parent, radius, myelin (optional);
    ``short``: true nodes on terminal branches the step removes by design (not counted in
    ``recalled_kept`` / ``n_true_kept``)."""
    gvals = {"radius": gt["radius"]}
    if "myelin" in gt:
        gvals["myelin"] = gt["myelin"]
    gpts, gv = densify(gt["nodes"], gt["parent"], gvals, min_tol_nm / 4)
    tol_g = np.maximum(gv["radius"], min_tol_nm)
    kept = np.ones(len(gt["nodes"]), bool) if short is None else ~np.asarray(short, bool)
    out: dict[str, Any] = {"n_ours": len(ours["nodes"]), "n_true": len(gt["nodes"]),
                           "n_true_kept": int(kept.sum())}
    if len(ours["nodes"]):
        d, j = cKDTree(gpts).query(ours["nodes"])
        out["precise"] = int((d <= tol_g[j]).sum())
        opts, _ = densify(ours["nodes"], ours["parent"], {}, min_tol_nm / 4)
        d2, _ = cKDTree(opts).query(gt["nodes"])
        hit = d2 <= np.maximum(gt["radius"], min_tol_nm)
        out["recalled"] = int(hit.sum())
        out["recalled_kept"] = int((hit & kept).sum())
        if "myelin" in ours and "myelin" in gv:
            out["myelin_ok"] = int((np.asarray(ours["myelin"], bool) == gv["myelin"][j].astype(bool)).sum())
    else:
        out.update(precise=0, recalled=0, recalled_kept=0, myelin_ok=0)
    out["cable_true_um"] = cable_um(gt["nodes"], gt["parent"])
    out["cable_ours_um"] = cable_um(ours["nodes"], ours["parent"]) if len(ours["nodes"]) else 0.0
    return out


def _by_cell(table: Any, id_col: str, xyz: tuple[str, str, str], radius: str) -> dict[int, dict[str, np.ndarray]]:
    cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
    ids = cols[id_col].astype(np.uint64)
    order = np.lexsort((cols["node_id"], ids))
    ids = ids[order]
    bounds = np.r_[0, np.flatnonzero(ids[1:] != ids[:-1]) + 1, len(ids)]
    out = {}
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        rows = order[a:b]
        node_id = cols["node_id"][rows]
        pos = {int(n): i for i, n in enumerate(node_id.tolist())}
        par = np.array([pos.get(int(p), -1) for p in cols["parent_id"][rows].tolist()], np.int64)
        d = {
            "nodes": np.stack([cols[c][rows] for c in xyz], 1).astype(np.float64),
            "parent": par,
            "radius": cols[radius][rows].astype(np.float64),
        }
        if "myelin" in cols:
            d["myelin"] = cols["myelin"][rows].astype(bool)
        out[int(ids[a])] = d
    return out


def within_spheres(points_nm: np.ndarray, centres_nm: np.ndarray, radius_nm: np.ndarray,
                   margin_nm: float) -> np.ndarray:
    """True for points within ``margin_nm`` of some sphere (``|p - c| - r <= margin_nm``), exactly.

    >>> within_spheres(np.array([[0.0, 0, 0], [30, 0, 0]]), np.array([[10.0, 0, 0]]), np.array([5.0]), 10.0).tolist()
    [True, False]
    """
    if len(centres_nm) == 0:
        return np.zeros(len(points_nm), bool)
    tree = cKDTree(centres_nm)
    r = np.asarray(radius_nm, np.float64)
    d, _ = tree.query(points_nm)
    out = d <= margin_nm + r.min()
    unsure = np.flatnonzero(~out & (d <= margin_nm + r.max()))
    for i, near in zip(unsure.tolist(), tree.query_ball_point(points_nm[unsure], margin_nm + r.max()), strict=True):
        j = np.asarray(near, np.int64)
        out[i] = bool(np.any(np.linalg.norm(centres_nm[j] - points_nm[i], axis=1) - r[j] <= margin_nm))
    return out


def score_cover(voxels_vx: np.ndarray, ours: dict[str, np.ndarray], voxel_size_nm: tuple[float, float, float],
                cell_at: Any, coverage_nm: float, max_points: int = 200_000) -> dict[str, Any]:
    """Coverage and fidelity of one non-tubular cell's skeleton.

    ``voxels_vx``: (n, 3) the cell's true voxels; ``cell_at(ijk) -> bool`` whether voxels belong
    to the cell. Coverage is measured on an even subsample of at most ``max_points`` voxels.
    """
    vs = np.asarray(voxel_size_nm, np.float64)
    step = max(1, -(-len(voxels_vx) // max_points))
    pts = voxels_vx[::step].astype(np.float64) * vs
    covered = within_spheres(pts, ours["nodes"], ours["radius"], coverage_nm)
    ijk = np.rint(ours["nodes"] / vs).astype(np.int64)
    return {"voxels_sampled": len(pts), "voxels_covered": int(covered.sum()),
            "n_ours": len(ijk), "nodes_inside": int(cell_at(ijk).sum()),
            "n_trees": int((ours["parent"] < 0).sum())}


def _sv_to_cell(path: Path) -> dict[int, int]:
    t = pq.read_table(path, columns=["sv_id", "cell_id"])
    return dict(zip(t.column("sv_id").to_numpy().tolist(), t.column("cell_id").to_numpy().tolist(), strict=True))


def _true_cells(workdir: Path, at_vx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The true cell id of every voxel (``sv`` layer relabelled by ``gt/sv_to_cell.parquet``),
    and the step's cell id (``tables/sv_to_cell.parquet``) at the voxels ``at_vx`` (n, 3)."""
    import fastremap

    from syngraph.io.volume import open_layer

    sv = np.asarray(open_layer(workdir, "sv").read())
    at = np.zeros((0, 3), np.int64) if at_vx is None else np.asarray(at_vx, np.int64)
    ok = np.all((at >= 0) & (at < np.asarray(sv.shape)), axis=1)
    step = np.zeros(len(at), np.uint64)
    if ok.any():
        table = _sv_to_cell(workdir / "tables" / "sv_to_cell.parquet")
        step[ok] = [table.get(int(v), 0) for v in sv[at[ok, 0], at[ok, 1], at[ok, 2]].tolist()]
    table = _sv_to_cell(workdir / "gt" / "sv_to_cell.parquet")
    table = {int(v): table.get(int(v), 0) for v in fastremap.unique(sv)}  # supervoxels in no cell: 0
    return fastremap.remap(sv, table, in_place=True), step


def _pieces(cell_mask: np.ndarray, downsample: tuple[int, int, int], min_vx: int,
            faces: np.ndarray) -> tuple[int, int]:
    """26-connected pieces of a mask as the step sees them (strided): those of at least ``min_vx``
    voxels, and the smaller ones on a face where ``faces`` (3 x 2: low, high per axis) is true
    (the volume border: the step keeps them when their skeleton reaches it)."""
    import cc3d

    ds = np.ascontiguousarray(cell_mask[:: downsample[0], :: downsample[1], :: downsample[2]])
    cc, n = cc3d.connected_components(ds, connectivity=26, return_N=True)
    large = np.bincount(cc.reshape(-1), minlength=n + 1) >= min_vx
    border = np.zeros(n + 1, bool)
    for ax in range(3):
        for side, on in zip((0, -1), faces[ax], strict=True):
            if on:
                border[np.take(cc, side, axis=ax).reshape(-1)] = True
    return int(large[1:].sum()), int((border & ~large)[1:].sum())


def score_skeletons(
    workdir: str | Path, *, min_cable_um: float = 1.0, in_scope_only: bool = True, coverage_nm: float = 1000.0
) -> dict[str, Any]:
    """Neuron centre-line scores, non-tubular cell coverage and myelin accuracy vs the demo truth.

    ``in_scope_only``: score the true cells the pipeline is meant to keep, those whose in-volume
    bounding-box diagonal exceeds ``cells.min_cc_size_nm`` (smaller border fragments are pruned by
    design, as in the cells score); their count is reported as ``cells_out_of_scope``.
    """
    workdir = Path(workdir)
    gt_path = workdir / "gt" / "skeletons.parquet"
    ours_path = workdir / "tables" / "skeletons.parquet"
    for p, fix in ((gt_path, "create a demo with `syngraph synth DIR`"),
                   (ours_path, "run `syngraph run skeletons` first")):
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist; {fix}")
    cfg = load_config(workdir)
    vs = cfg.voxel_size_nm
    min_tol = 2.0 * max(vs)
    gt = _by_cell(pq.read_table(gt_path), "cell_id", ("x_nm", "y_nm", "z_nm"), "radius_nm")
    n_out = 0
    cells_path = workdir / "gt" / "cells.parquet"
    if in_scope_only and cells_path.exists() and "bbox_diag_nm" in pq.read_schema(cells_path).names:
        cells = pq.read_table(cells_path, columns=["cell_id", "bbox_diag_nm"])
        keep = {int(c) for c, d in zip(cells["cell_id"].to_numpy(), cells["bbox_diag_nm"].to_numpy(), strict=True)
                if d > cfg.cells.min_cc_size_nm}
        n_out = sum(1 for c in gt if c not in keep)
        gt = {c: g for c, g in gt.items() if c in keep}
    ours = _by_cell(pq.read_table(ours_path), "neuron", ("x", "y", "z"), "radius")
    empty = {"nodes": np.zeros((0, 3)), "parent": np.zeros(0, np.int64), "radius": np.zeros(0)}
    types = _true_types(cells_path) or {}
    tubular = {c for c in gt if types.get(c, "neuron") in (*NEURON_TYPES, "neuron")}
    per_cell = {}
    hi = _volume_hi_nm(workdir, vs)
    for cid, g in gt.items():
        border = np.zeros(len(g["nodes"]), bool) if hi is None else np.any(
            (g["nodes"] <= 0.5 * min(vs)) | (g["nodes"] >= hi - 0.5 * min(vs)), axis=1)
        short = short_terminal_branches(g["nodes"], g["parent"], cfg.skeletons.tick_threshold_nm, border)
        per_cell[cid] = score_cell(g, ours.get(cid, empty), min_tol, short)
    neurons = [s for c, s in per_cell.items() if c in tubular]
    errs = np.array([abs(s["cable_ours_um"] - s["cable_true_um"]) / s["cable_true_um"]
                     for s in neurons if s["cable_true_um"] >= min_cable_um])
    has_myelin = "myelin" in pq.read_schema(ours_path).names
    n_ours = sum(s["n_ours"] for s in per_cell.values())
    out: dict[str, Any] = {
        "cells_true": len(gt),
        "cells_out_of_scope": n_out,
        "cells_ours": len(ours),
        "cells_missing": sorted(set(gt) - set(ours)),
        "tolerance_nm": f"max({min_tol:g}, local radius)",
        "neuron_cells": len(neurons),
        "neuron_node_precision": sum(s["precise"] for s in neurons) / max(sum(s["n_ours"] for s in neurons), 1),
        "neuron_node_recall": sum(s["recalled"] for s in neurons) / max(sum(s["n_true"] for s in neurons), 1),
        "neuron_node_recall_kept": (sum(s["recalled_kept"] for s in neurons)
                                    / max(sum(s["n_true_kept"] for s in neurons), 1)),
        "neuron_cable_rel_error_median": float(np.median(errs)) if len(errs) else float("nan"),
        "neuron_cells_cable_within_5pct": float((errs <= 0.05).mean()) if len(errs) else float("nan"),
        "neuron_cells_cable_within_10pct": float((errs <= 0.10).mean()) if len(errs) else float("nan"),
        "myelin_accuracy": (sum(int(s.get("myelin_ok", 0)) for s in per_cell.values()) / max(n_ours, 1)
                            if has_myelin else float("nan")),
    }
    others = sorted(set(gt) - tubular)
    if others:
        out.update(_score_non_tubular(workdir, cfg, others, ours, empty, coverage_nm, per_cell))
    out["per_type"] = _per_type(types or None, per_cell, min_cable_um)
    out["per_cell"] = per_cell
    return out


def _score_non_tubular(workdir: Path, cfg: Any, ids: list[int], ours: dict[int, dict[str, np.ndarray]],
                       empty: dict[str, np.ndarray], coverage_nm: float,
                       per_cell: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """``astrocyte_*`` coverage, nodes inside and trees per piece over the non-neuron cells."""
    vs = np.asarray(cfg.voxel_size_nm, np.float64)
    node_vx = {cid: np.rint(ours.get(cid, empty)["nodes"] / vs).astype(np.int64) for cid in ids}
    truth, step_ids = _true_cells(workdir, np.concatenate([node_vx[c] for c in ids]))
    bounds = np.cumsum([0] + [len(node_vx[c]) for c in ids])
    tot = dict(voxels_sampled=0, voxels_covered=0, n_ours=0, nodes_inside=0, nodes_inside_true=0)
    one_tree = []
    shape = np.asarray(truth.shape)
    for k, cid in enumerate(ids):
        vox = np.argwhere(truth == cid)
        if len(vox) == 0:
            continue

        def cell_at(ijk: np.ndarray, cid: int = cid) -> np.ndarray:
            ok = np.all((ijk >= 0) & (ijk < shape), axis=1)
            res = np.zeros(len(ijk), bool)
            res[ok] = truth[ijk[ok, 0], ijk[ok, 1], ijk[ok, 2]] == cid
            return res

        s = score_cover(vox, ours.get(cid, empty), cfg.voxel_size_nm, cell_at, coverage_nm)
        s["nodes_inside_true"] = s["nodes_inside"]
        s["nodes_inside"] = int((step_ids[bounds[k]:bounds[k + 1]] == cid).sum())
        lo, hi = vox.min(0), vox.max(0) + 1
        crop = truth[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == cid
        # strided on the volume's grid, as the step strides it
        ds = cfg.skeletons.downsample_for(cfg.voxel_size_nm)
        off = [(-int(a)) % int(d) for a, d in zip(lo, ds, strict=True)]
        faces = np.stack([lo == 0, hi == shape], 1)
        s["pieces"], small = _pieces(crop[off[0]:, off[1]:, off[2]:], ds, cfg.skeletons.dust_threshold_vx, faces)
        one_tree.append(s["pieces"] <= s["n_trees"] <= s["pieces"] + small)
        per_cell[cid].update(s)
        for k in tot:
            tot[k] += s[k]
    return {
        "astrocyte_cells": len(one_tree),
        "astrocyte_coverage": tot["voxels_covered"] / max(tot["voxels_sampled"], 1),
        "astrocyte_nodes_inside": tot["nodes_inside"] / max(tot["n_ours"], 1),
        "astrocyte_nodes_inside_true": tot["nodes_inside_true"] / max(tot["n_ours"], 1),
        "astrocyte_cells_one_tree_per_piece": float(np.mean(one_tree)) if one_tree else float("nan"),
    }


def _true_types(cells_path: Path) -> dict[int, str] | None:
    """True cell type per cell id (``gt/cells.parquet`` column ``type``), if known."""
    if not cells_path.exists() or "type" not in pq.read_schema(cells_path).names:
        return None
    t = pq.read_table(cells_path, columns=["cell_id", "type"])
    return dict(zip(t.column("cell_id").to_pylist(), t.column("type").to_pylist(), strict=True))


def _group_scores(cells: list[dict[str, Any]], min_cable_um: float) -> dict[str, Any]:
    """The centre-line numbers over a group of cells (``score_cell`` outputs)."""
    long = [s for s in cells if s["cable_true_um"] >= min_cable_um]
    ok = [abs(s["cable_ours_um"] - s["cable_true_um"]) <= 0.05 * s["cable_true_um"] for s in long]
    return {
        "cells": len(cells),
        "nodes_true": sum(s["n_true"] for s in cells),
        "node_precision": sum(s["precise"] for s in cells) / max(sum(s["n_ours"] for s in cells), 1),
        "node_recall": sum(s["recalled"] for s in cells) / max(sum(s["n_true"] for s in cells), 1),
        "node_recall_kept": (sum(s["recalled_kept"] for s in cells)
                             / max(sum(s["n_true_kept"] for s in cells), 1)),
        "cells_cable_within_5pct": float(np.mean(ok)) if ok else float("nan"),
    }


def _per_type(kind: dict[int, str] | None, per_cell: dict[int, dict[str, Any]],
              min_cable_um: float) -> dict[str, Any]:
    """The centre-line numbers per true cell type."""
    if kind is None:
        return {}
    return {name: _group_scores([s for c, s in per_cell.items() if kind.get(c, "unknown") == name], min_cable_um)
            for name in sorted({kind.get(c, "unknown") for c in per_cell})}


def _volume_hi_nm(workdir: Path, voxel_size_nm: tuple[float, float, float]) -> np.ndarray | None:
    """The far corner of the volume in nm (centre of the last voxel), from the ``sv`` layer."""
    from syngraph.io.volume import list_layers, open_layer

    if "sv" not in list_layers(workdir):
        return None
    return volume_hi_nm(open_layer(workdir, "sv").shape, voxel_size_nm)
