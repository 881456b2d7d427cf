"""Step ``skeletons``: one skeleton per cell, joined exactly across blocks, with myelin.

Top to bottom:

1. per block (engine task, :func:`skeleton_block`): read the ``sv`` layer for the block's trace
   region + halo, downsample by striding (``skeletons.downsample``, by default from the voxel size), relabel supervoxels to cell
   ids (``tables/sv_to_cell.parquet``; others -> 0), skeletonize every piece with kimimaro
   (:func:`.teasar.skeletonize_block`; cells of kind astrocyte in ``tables/cells.parquet`` with
   ``astrocyte_teasar_const_nm`` and ``astrocyte_max_paths``), and, if a ``myelin`` layer
   exists, the myelin fraction around every vertex (:mod:`.myelin`). Returns one row per vertex.
2. per cell (:func:`finish_cell`): join the pieces where their vertices coincide
   (:func:`.join.join_pieces`), remove dust (trees under ``dust_threshold_vx`` voxels unless
   they reach the volume border), with
   ``peel_face_slivers`` peel paths along a volume face on a sliver's ridge, retract
   tips from the surface to the centre of their end cap (ends on the volume border stay),
   smooth the voxel staircase, thin to ``node_spacing_nm`` (keeping bends), remove trees under
   ``dust_nm`` of cable (unless they reach the volume border), tips that lie inside the lumen
   of another part of the tree (the
   parallel paths a block face running along a neurite creates) and ticks under
   ``tick_threshold_nm``, vote myelin over ``myelin_window_nm`` of path, and order each tree
   from its thickest node.
3. write ``tables/skeletons.parquet`` (navis layout), ``tables/skeleton_stats.parquet``, and
   Neuroglancer precomputed skeletons in ``skeletons/`` (:mod:`syngraph.skeleton_io`).
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path
from typing import Any

import fastremap
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from syngraph.bbox import BBox
from syngraph.checks import block_problem
from syngraph.config import ProjectConfig, SkeletonParams, load_config
from syngraph.engine import Block, Compute, block_grid, read_task_tables, run_tasks
from syngraph.errors import InputError, StepOrderError
from syngraph.io.volume import Layer, list_layers, open_layer
from syngraph.skeleton import Forest, orient, stats, volume_hi_nm
from syngraph.steps.skeletons.join import join_pieces
from syngraph.steps.skeletons.myelin import POOL_VX, box_fraction, path_window_vote, pooled_fraction
from syngraph.steps.skeletons.postprocess import (
    exit_tips,
    extend_exits,
    on_volume_border,
    peel_face_ridges,
    remove_dust,
    remove_redundant_branches,
    remove_ticks,
    retract_tips,
    smooth,
    straighten,
    thin,
)
from syngraph.steps.skeletons.teasar import TeasarParams, skeletonize_block

STEP = "skeletons"


def teasar_params(p: SkeletonParams, kind: str = "neuron") -> TeasarParams:
    """kimimaro's TEASAR parameters for cells of ``kind`` (neuron or astrocyte)."""
    astro = kind == "astrocyte"
    return TeasarParams(
        scale=p.teasar_scale,
        const=p.astrocyte_teasar_const_nm if astro else p.teasar_const_nm,
        pdrf_scale=p.pdrf_scale,
        pdrf_exponent=p.pdrf_exponent,
        soma_detection_threshold=p.soma_detection_threshold_nm,
        soma_acceptance_threshold=p.soma_acceptance_threshold_nm,
        soma_invalidation_scale=p.soma_invalidation_scale,
        soma_invalidation_const=p.soma_invalidation_const_nm,
        max_paths=p.astrocyte_max_paths if astro else p.max_paths,
    )


def astrocyte_ids(workdir: str | Path) -> np.ndarray:
    """Cell ids of kind astrocyte in ``tables/cells.parquet`` (none if there is no such table:
    every cell is skeletonized as a neuron)."""
    path = Path(workdir) / "tables" / "cells.parquet"
    if not path.exists() or "kind" not in pq.read_schema(path).names:
        return np.zeros(0, np.uint64)
    t = pq.read_table(path, columns=["cell_id", "kind"])
    kind = np.asarray(t.column("kind").to_pylist(), dtype=object)
    return np.sort(t.column("cell_id").to_numpy().astype(np.uint64)[kind == "astrocyte"])


# ---------------------------------------------------------------------------- block geometry


def block_regions(block: BBox, shape_vx: tuple[int, int, int], ds: tuple[int, int, int],
                  halo_ds: tuple[int, int, int]) -> tuple[BBox, BBox, BBox]:
    """(trace, read, own) boxes at skeleton resolution for a full-resolution block ``block``.

    ``own`` is the block's core; the trace region adds one voxel plane on each high side that
    has a neighbour (the plane both blocks share); the read region adds the EDT halo.
    """
    shape_ds = tuple(-(-s // d) for s, d in zip(shape_vx, ds, strict=True))
    start = tuple(a // d for a, d in zip(block.start, ds, strict=True))
    stop = tuple(-(-b // d) for b, d in zip(block.stop, ds, strict=True))
    trace = BBox(start, tuple(min(b + 1, s) for b, s in zip(stop, shape_ds, strict=True)))  # type: ignore[arg-type]
    return trace, trace.grow(halo_ds, clip=BBox.from_shape(shape_ds)), BBox(start, stop)  # type: ignore[arg-type]


def read_downsampled(layer: Layer, box_ds: BBox, ds: tuple[int, int, int], slab: int = 32) -> np.ndarray:
    """Read ``box_ds`` (skeleton resolution) from a full-resolution layer by striding, in z slabs."""
    dx, dy, dz = ds
    shape = layer.shape
    out = np.zeros(box_ds.shape, layer.dtype, order="F")
    x0, x1 = box_ds.start[0] * dx, min(box_ds.stop[0] * dx, shape[0])
    y0, y1 = box_ds.start[1] * dy, min(box_ds.stop[1] * dy, shape[1])
    for k0 in range(box_ds.start[2], box_ds.stop[2], slab):
        k1 = min(k0 + slab, box_ds.stop[2])
        z0, z1 = k0 * dz, min(k1 * dz, shape[2])
        data = layer.read(BBox((x0, y0, z0), (x1, y1, z1)))
        out[:, :, k0 - box_ds.start[2]:k1 - box_ds.start[2]] = data[::dx, ::dy, ::dz]
    return out


def relabel_to_cells(sv: np.ndarray, sv_ids: np.ndarray, cell_ids: np.ndarray) -> np.ndarray:
    """Supervoxel ids -> cell ids (uint64); supervoxels not in ``sv_ids`` (sorted) become 0."""
    present = fastremap.unique(sv)
    pos = np.searchsorted(sv_ids, present)
    pos_c = np.minimum(pos, max(len(sv_ids) - 1, 0))
    found = (len(sv_ids) > 0) & (sv_ids[pos_c] == present) if len(sv_ids) else np.zeros(len(present), bool)
    mapping = {int(s): (int(cell_ids[p]) if f else 0) for s, p, f in zip(present, pos_c, found, strict=True)}
    mapping[0] = 0
    out = fastremap.remap(sv.astype(np.uint64, copy=False), mapping, preserve_missing_labels=True)
    return np.asfortranarray(out)


def myelin_fraction_at(layer: Layer, points_vx: np.ndarray, box_vx: tuple[int, int, int],
                       threshold: float) -> np.ndarray:
    """Fraction of myelin-map voxels ``> threshold`` in a ``box_vx`` box around each point.

    Evaluated on the map pooled 4x4x4 on a grid fixed to the volume origin (as the reference
    does at mag 4), so a point gets the same value whichever block computes it.
    """
    if len(points_vx) == 0:
        return np.zeros(0, np.float32)
    pool = np.asarray(POOL_VX)
    box_p = tuple(max(1, round(b / p)) for b, p in zip(box_vx, POOL_VX, strict=True))
    pts_p = np.asarray(points_vx, np.int64) // pool
    half = np.asarray(box_p) // 2
    lo_p = np.maximum(pts_p.min(0) - half - 1, 0)
    hi_p = pts_p.max(0) - half + np.asarray(box_p) + 1
    shape_p = -(-np.asarray(layer.shape) // pool)
    hi_p = np.minimum(hi_p, shape_p)
    lo, hi = lo_p * pool, np.minimum(hi_p * pool, np.asarray(layer.shape))
    data = layer.read(BBox(tuple(lo.tolist()), tuple(hi.tolist())))  # type: ignore[arg-type]
    padded = np.zeros(tuple(((hi_p - lo_p) * pool).tolist()), data.dtype)
    padded[: data.shape[0], : data.shape[1], : data.shape[2]] = data
    frac = pooled_fraction(padded, threshold)
    return box_fraction(frac, pts_p - lo_p, box_p).astype(np.float32)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- per block


def skeleton_block(
    block: Block,
    *,
    workdir: str,
    params: dict[str, Any],
    voxel_size_nm: tuple[float, float, float],
    myelin: bool,
    astrocytes: np.ndarray | None = None,
) -> pa.Table:
    """Engine task: the skeleton vertices of one block (see the module docstring);
    ``astrocytes``: sorted ids of the cells of kind astrocyte."""
    p = SkeletonParams.model_validate(params)
    ds = p.downsample_for(voxel_size_nm)
    layer = open_layer(workdir, "sv")
    aniso = tuple(float(v * d) for v, d in zip(voxel_size_nm, ds, strict=True))
    halo = tuple(int(math.ceil(p.edt_halo_nm / a)) for a in aniso)
    trace, read, own = block_regions(block.core, layer.shape, ds, halo)  # type: ignore[arg-type]
    svs = read_downsampled(layer, read, ds)  # type: ignore[arg-type]
    mapping = pq.read_table(Path(workdir) / "tables" / "sv_to_cell.parquet", columns=["sv_id", "cell_id"])
    sv_ids = mapping.column("sv_id").to_numpy().astype(np.uint64)
    order = np.argsort(sv_ids, kind="stable")
    cells = relabel_to_cells(svs, sv_ids[order], mapping.column("cell_id").to_numpy().astype(np.uint64)[order])
    del svs
    present = fastremap.unique(cells)
    astro = np.zeros(0, np.uint64) if astrocytes is None else np.asarray(astrocytes, np.uint64)
    by_label = {int(c): teasar_params(p, "astrocyte") for c in present[np.isin(present, astro)].tolist()}
    bs = skeletonize_block(
        cells, trace.local_slices(read), anisotropy_nm=aniso, teasar=teasar_params(p),  # type: ignore[arg-type]
        teasar_by_label=by_label, own_shape=own.shape,
    )
    del cells
    vx = bs.vertex_vx + np.asarray(trace.start, np.int64)
    cols: dict[str, Any] = {
        "block": pa.array(np.full(len(bs), block.id, np.int64)),
        "cell_id": pa.array(bs.cell_id, pa.uint64()),
        "x": pa.array(vx[:, 0].astype(np.int32)),
        "y": pa.array(vx[:, 1].astype(np.int32)),
        "z": pa.array(vx[:, 2].astype(np.int32)),
        "radius_nm": pa.array(bs.radius_nm.astype(np.float32)),
        "parent": pa.array(bs.parent),
        "piece": pa.array(bs.piece),
        "piece_vx": pa.array(bs.piece_vx),
        "face_ridge": pa.array(bs.face_ridge),
    }
    if myelin:
        mlayer = open_layer(workdir, "myelin")
        vr = mlayer.info.value_range or (255.0 if mlayer.dtype == np.uint8 else 1.0)
        frac = myelin_fraction_at(mlayer, vx * np.asarray(ds), tuple(p.myelin_box_vx), 0.5 * float(vr))  # type: ignore[arg-type]
        cols["myelin_frac"] = pa.array(frac)
    return pa.table(cols)


# ---------------------------------------------------------------------------- per cell


def finish_cell(
    vertex_vx: np.ndarray,
    parent: np.ndarray,
    radius_nm: np.ndarray,
    piece_key: np.ndarray,
    piece_vx: np.ndarray,
    *,
    spacing_nm: tuple[float, float, float],
    params: SkeletonParams,
    myelin_frac: np.ndarray | None = None,
    volume_shape_vx: tuple[int, int, int] | None = None,
    volume_hi_nm: np.ndarray | None = None,
    face_ridge: np.ndarray | None = None,
) -> Forest:
    """Join, thin, clean and annotate one cell's block pieces (pure; see the module docstring).

    Node attributes: ``myelin_raw`` (more than half the box above half scale) and ``myelin``
    (the ``myelin_window_nm`` path-window majority of ``myelin_raw``), when ``myelin_frac`` is given.
    ``volume_shape_vx`` is the volume's shape at skeleton resolution: ends on its border are
    where a neurite leaves the volume and are neither retracted nor removed as ticks (None: the
    volume border is not known, every end is treated as a surface end); ``volume_hi_nm``, the
    volume's last voxel centre at full resolution: those ends then move along their axis onto
    the border plane (:func:`.postprocess.extend_exits`). ``face_ridge``
    (:func:`.teasar.face_ridge`, per vertex) with ``params.peel_face_slivers``: paths along a
    volume face on a sliver's ridge are peeled (:func:`.postprocess.peel_face_ridges`).
    """
    attrs = {} if myelin_frac is None else {"myelin_frac": np.asarray(myelin_frac, np.float32)}
    if face_ridge is not None and params.peel_face_slivers:
        attrs["face_ridge"] = np.asarray(face_ridge, bool)  # joined by OR
    forest, tree_vx = join_pieces(vertex_vx, parent, radius_nm, piece_key, piece_vx, spacing_nm, attrs)
    # dust by voxels first (the reference's per-object dust threshold), on the joined trees; a
    # tree on the volume border is the stub of a neurite leaving the volume, however small
    forest = remove_dust(forest, 0.0, tree_vx, params.dust_threshold_vx,
                         fixed=on_volume_border(forest.nodes_nm, spacing_nm, volume_shape_vx))
    if "face_ridge" in forest.attrs:
        ridge = forest.attrs.pop("face_ridge")
        forest = peel_face_ridges(forest, ridge, on_volume_border(forest.nodes_nm, spacing_nm, volume_shape_vx, 2))

    def exits(f: Forest) -> np.ndarray:  # ends where a neurite leaves the volume
        return exit_tips(f, on_volume_border(f.nodes_nm, spacing_nm, volume_shape_vx), max(spacing_nm))

    forest = retract_tips(forest, exits(forest), 1.5 * min(spacing_nm))
    step_nm = 1.01 * float(np.linalg.norm(spacing_nm))  # voxel steps only
    if params.taut_iterations > 0:
        forest = straighten(forest, 0.5 * np.asarray(spacing_nm), params.taut_iterations, max_edge_nm=step_nm)
    else:
        forest = smooth(forest, params.smooth_iterations, params.smooth_weight, max_edge_nm=step_nm)
    forest = thin(forest, params.node_spacing_nm, params.node_max_deviation_nm)
    forest = remove_dust(forest, params.dust_nm,
                         fixed=on_volume_border(forest.nodes_nm, spacing_nm, volume_shape_vx))
    forest = remove_redundant_branches(forest, max(spacing_nm))
    forest = remove_ticks(forest, params.tick_threshold_nm, exits(forest))
    # ticks removed at a branch point can turn a hook at the end of a branch into a tip
    forest = retract_tips(forest, exits(forest), 1.5 * min(spacing_nm))
    if volume_hi_nm is not None:
        forest = extend_exits(forest, exits(forest), volume_hi_nm, 2.0 * max(spacing_nm), np.asarray(spacing_nm))
    if myelin_frac is not None:
        raw = forest.attrs.pop("myelin_frac") > 0.5
        voted = path_window_vote(forest.nodes_nm, forest.edges, raw, params.myelin_window_nm)
        forest.attrs["myelin_raw"] = raw
        forest.attrs["myelin"] = voted.astype(bool)
    return forest


def _group_rows(table: pa.Table) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Columns as numpy with global parent indices, plus per-cell row ranges (sorted by cell)."""
    cols = {name: table.column(name).to_numpy() for name in table.column_names}
    block = cols["block"]
    starts = np.r_[0, np.flatnonzero(block[1:] != block[:-1]) + 1]
    base = np.zeros(len(block), np.int64)
    base[starts] = starts
    base = np.maximum.accumulate(base)
    par = cols["parent"]
    cols["parent"] = np.where(par >= 0, par + base, -1)
    cols["piece_key"] = block.astype(np.int64) * (1 << 32) + cols["piece"]
    order = np.argsort(cols["cell_id"], kind="stable")
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    sorted_cols = {k: v[order] for k, v in cols.items()}
    sp = sorted_cols["parent"]
    sorted_cols["parent"] = np.where(sp >= 0, inv[np.maximum(sp, 0)], -1)
    cell = sorted_cols["cell_id"]
    bounds = np.r_[0, np.flatnonzero(cell[1:] != cell[:-1]) + 1, len(cell)]
    return sorted_cols, bounds[:-1], bounds[1:]


def build_skeletons(table: pa.Table, params: SkeletonParams,
                    spacing_nm: tuple[float, float, float],
                    volume_shape_vx: tuple[int, int, int] | None = None,
                    volume_hi_nm: np.ndarray | None = None) -> dict[int, Forest]:
    """Every cell's finished skeleton from the blocks' vertex rows."""
    if table.num_rows == 0:
        return {}
    cols, lo, hi = _group_rows(table)
    out: dict[int, Forest] = {}
    has_myelin = "myelin_frac" in cols
    vxyz = np.stack([cols["x"], cols["y"], cols["z"]], 1).astype(np.int64)
    for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
        cid = int(cols["cell_id"][a])
        out[cid] = finish_cell(
            vxyz[a:b], cols["parent"][a:b] - np.where(cols["parent"][a:b] >= 0, a, 0),
            cols["radius_nm"][a:b], cols["piece_key"][a:b], cols["piece_vx"][a:b],
            spacing_nm=spacing_nm, params=params,
            myelin_frac=cols["myelin_frac"][a:b] if has_myelin else None,
            volume_shape_vx=volume_shape_vx, volume_hi_nm=volume_hi_nm,
            face_ridge=cols["face_ridge"][a:b] if "face_ridge" in cols else None,
        )
    return out


# ---------------------------------------------------------------------------- the step


def _check_inputs(workdir: Path) -> None:
    if not (workdir / "tables" / "sv_to_cell.parquet").exists():
        raise StepOrderError(
            f"{workdir / 'tables' / 'sv_to_cell.parquet'} does not exist: the skeletons step needs "
            f"the cells step's supervoxel -> cell table; run `syngraph run cells` first"
        )
    if "sv" not in list_layers(workdir):
        raise StepOrderError(f"no layer 'sv' in {workdir}; import the supervoxel segmentation first")


def run_skeletons(
    workdir: str | Path,
    *,
    config: ProjectConfig | None = None,
    compute: Compute | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run the step; writes ``tables/skeletons.parquet``, ``tables/skeleton_stats.parquet`` and
    ``skeletons/`` (Neuroglancer precomputed). Returns a summary dict."""
    from syngraph import skeleton_io

    workdir = Path(workdir)
    cfg = config or load_config(workdir)
    compute = compute or Compute.from_config(cfg.compute)
    p = cfg.skeletons
    _check_inputs(workdir)
    sv = open_layer(workdir, "sv")
    voxel = tuple(float(v) for v in sv.info.voxel_size_nm)
    if problem := block_problem(p, voxel):  # type: ignore[arg-type]
        raise InputError(problem)
    ds = p.downsample_for(voxel)  # type: ignore[arg-type]
    has_myelin = "myelin" in list_layers(workdir)
    if has_myelin:
        m = open_layer(workdir, "myelin")
        if tuple(m.shape) != tuple(sv.shape):
            raise InputError(
                f"layer 'myelin' has shape {list(m.shape)} but 'sv' has {list(sv.shape)}; the myelin "
                f"map must be on the segmentation's voxel grid (resample it on import)"
            )
    blocks = block_grid(sv.bbox, p.block_size_vx)
    astro = astrocyte_ids(workdir)
    fn = functools.partial(
        skeleton_block, workdir=str(workdir), params=p.model_dump(mode="json"),
        voxel_size_nm=voxel, myelin=has_myelin, astrocytes=astro,
    )
    step_dir = workdir / "steps" / STEP
    report = run_tasks(
        fn, blocks, step_dir,
        params={"skeletons": p.model_dump(mode="json"), "myelin": has_myelin,
                "astrocytes": hashlib.sha1(astro.tobytes()).hexdigest()},
        compute=compute, desc=STEP, progress=progress, overwrite=overwrite,
    )
    table = read_task_tables(step_dir)
    spacing = tuple(v * d for v, d in zip(voxel, ds, strict=True))
    shape_ds = tuple(-(-s // d) for s, d in zip(sv.shape, ds, strict=True))
    hi_nm = volume_hi_nm(sv.shape, voxel)
    skels = build_skeletons(table, p, spacing, shape_ds, hi_nm) if table is not None else {}  # type: ignore[arg-type]
    skeleton_io.write_skeletons(workdir, skels)
    n_nodes = sum(len(f) for f in skels.values())
    return {
        "cells": len(skels),
        "nodes": n_nodes,
        "blocks": report.n_tasks,
        "block_peak_rss_mb": report.peak_rss_mb,
        "block_seconds": report.seconds,
    }


__all__ = ["build_skeletons", "finish_cell", "run_skeletons", "skeleton_block", "orient", "stats"]
