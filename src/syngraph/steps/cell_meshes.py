"""Cell meshes: one welded, closed surface per cell from its supervoxels' voxels.

A cell's voxels are max-pooled by ``meshes.sv_downsample`` (a pooled voxel is in the cell when any
of its ``ds`` voxels is, so thin processes survive), padded with one empty voxel and meshed with
zmesh's marching cubes. Pooling windows are aligned to the global grid (window ``j`` covers voxels
``[j * ds, (j + 1) * ds)``), so neighbouring cells' meshes line up.

Passes, all resumable tasks:

1. ``steps/cells_occupancy``: per block of the ``sv`` layer (block size rounded up to a multiple of
   ``ds``), every pooled voxel each supervoxel occupies (``sv_id``, ``px``, ``py``, ``pz``; sorted).
   It does not depend on the supervoxel graph, so edits reuse it.
2. ``steps/cells_mesh/measure`` and ``steps/cells_mesh`` (``edit_mesh`` for edits), per occupancy
   block: each cell meeting the block is meshed over the marching-cubes cells the block owns (its
   pooled core plus one voxel beyond the upper faces, as init's blocks), from the occupancy of the
   block and its neighbours. The first pass sums each cell's area and volume polynomial over its
   blocks, from which the driver finds the cell's inward shift (:func:`mesh_cells`); the second
   writes one fragment per cell and block. A task holds one block's occupancy and one cell's pooled
   block at a time, whatever the size of the cell.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from syngraph.bbox import BBox
from syngraph.config import ProjectConfig
from syngraph.engine import (
    Block,
    Compute,
    ManifestMismatch,
    align_block_size,
    block_grid,
    read_task_tables,
    run_tasks,
)
from syngraph.io.ids import ids_in
from syngraph.io.volume import Layer, open_layer
from syngraph.meshes import (
    area,
    shrink_distance,
    shrink_to_volume,
    vertex_normals,
    volume_polynomial,
    write_fragment,
    write_info,
    write_manifest,
)
from syngraph.project import Project
from syngraph.steps.init.meshes import block_pieces, piece_of, to_nm

OCCUPANCY_STEP = "cells_occupancy"
Vec3 = tuple[int, int, int]


def pool_any(mask: np.ndarray, ds: Vec3) -> np.ndarray:
    """Max-pool a boolean mask by ``ds`` (the upper border padded with empty voxels)."""
    if tuple(ds) == (1, 1, 1):
        return mask
    pad = [(0, (-s) % d) for s, d in zip(mask.shape, ds, strict=True)]
    m = np.pad(mask, pad)
    sx, sy, sz = (s // d for s, d in zip(m.shape, ds, strict=True))
    return m.reshape(sx, ds[0], sy, ds[1], sz, ds[2]).any(axis=(1, 3, 5))


def mesh_pooled(pooled: np.ndarray, offset_vx: Vec3, voxel_size_nm: tuple[float, float, float],
                ds: Vec3 = (1, 1, 1), n_voxels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A closed, welded mesh of a pooled mask whose voxel ``j`` covers full-resolution voxels
    ``offset_vx + [j * ds, (j + 1) * ds)``: ``(vertices (n, 3) float32 nm, faces (k, 3) uint32)``.

    Vertices are in nm with voxel ``i`` spanning ``[i, i + 1) * voxel_size_nm`` (Neuroglancer), so
    the surface lies on the outer faces of the pooled voxels. Max pooling inflates the surface (by
    up to one pooled voxel, most for small and thin cells); given the object's full-resolution
    ``n_voxels``, :func:`~syngraph.meshes.shrink_to_volume` moves it back inward (at most half a
    pooled voxel) until it encloses their volume.
    """
    import zmesh

    m = np.pad(np.asarray(pooled).astype(np.uint8), 1)
    res = tuple(float(v) * d for v, d in zip(voxel_size_nm, ds, strict=True))
    mesher = zmesh.Mesher(res)
    mesher.mesh(np.asfortranarray(m))
    if 1 not in mesher.ids():
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint32)
    mesh = mesher.get(1, normals=False)
    mesher.clear()
    # zmesh puts pooled voxel j of the padded grid at (j + 1) * r; in nm (Neuroglancer: voxel i
    # spans [i, i + 1) * v) its centre is offset * v + j * r + r / 2, so surfaces lie on voxel faces
    shift = np.array([o * v - r / 2 for o, v, r in zip(offset_vx, voxel_size_nm, res, strict=True)])
    verts = (mesh.vertices.astype(np.float64) + shift).astype(np.float32)
    faces = mesh.faces.astype(np.uint32)
    if n_voxels is not None and tuple(ds) != (1, 1, 1):
        verts = shrink_to_volume(verts, faces, n_voxels * float(np.prod(voxel_size_nm)), min(res) / 2)
    return verts, faces


def mesh_mask(mask: np.ndarray, offset_vx: Vec3, voxel_size_nm: tuple[float, float, float],
              downsample: Vec3 = (1, 1, 1)) -> tuple[np.ndarray, np.ndarray]:
    """A closed, welded mesh of a binary mask starting at ``offset_vx`` (pooled from there by
    ``downsample``): ``(vertices (n, 3) float32 nm, faces (k, 3) uint32)``."""
    ds = tuple(int(d) for d in downsample)
    return mesh_pooled(pool_any(mask, ds), offset_vx, voxel_size_nm, ds, int(np.count_nonzero(mask)))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- occupancy


def block_occupancy(labels: np.ndarray, origin_vx: Vec3, ds: Vec3, slab: int = 8) -> pa.Table:
    """Every pooled voxel each label occupies in one block: ``sv_id``, ``px``, ``py``, ``pz``
    (global pooled indices), sorted. ``origin_vx`` must be a multiple of ``ds``; the block's upper
    border is padded with background. Works in slabs of ``slab`` pooled planes along x."""
    if any(o % d for o, d in zip(origin_vx, ds, strict=True)):
        raise ValueError(f"block origin {list(origin_vx)} is not a multiple of the downsampling {list(ds)}")
    pad = [(0, (-s) % d) for s, d in zip(labels.shape, ds, strict=True)]
    lab = np.pad(labels, pad) if any(p[1] for p in pad) else labels
    sx, sy, sz = (s // d for s, d in zip(lab.shape, ds, strict=True))
    o = [o // d for o, d in zip(origin_vx, ds, strict=True)]
    parts = []
    for x0 in range(0, sx, slab):
        nx = min(slab, sx - x0)
        w = lab[x0 * ds[0]:(x0 + nx) * ds[0]].reshape(nx, ds[0], sy, ds[1], sz, ds[2])
        w = w.transpose(0, 2, 4, 1, 3, 5).reshape(nx * sy * sz, -1)
        first = w[:, 0]
        mixed = (w[:, 1:] != first[:, None]).any(axis=1)  # most windows hold one label: no sort
        one = np.flatnonzero(~mixed & (first != 0))
        several = np.flatnonzero(mixed)
        w = np.sort(w[several], axis=1)
        new = np.ones(w.shape, bool)
        new[:, 1:] = w[:, 1:] != w[:, :-1]
        row, col = np.nonzero(new & (w != 0))
        win = np.concatenate([one, several[row]])
        px, py, pz = np.unravel_index(win, (nx, sy, sz))
        parts.append((np.concatenate([first[one], w[row, col]]), px + x0 + o[0], py + o[1], pz + o[2]))
    ids, px, py, pz = (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in range(4))
    order = np.lexsort((pz, py, px, ids))
    return pa.table({
        "sv_id": ids[order].astype(np.uint64),
        **{k: v[order].astype(np.int32) for k, v in (("px", px), ("py", py), ("pz", pz))},
    })


def _occupancy_blocks(workdir: str | Path, config: ProjectConfig) -> tuple[list[Block], Vec3, Layer]:
    ds = tuple(int(d) for d in config.meshes.sv_downsample)
    layer = open_layer(workdir, "sv")
    bs = align_block_size(config.compute.block_size_vx, ds)
    return block_grid(layer.bbox, bs), ds, layer  # type: ignore[return-value]


def occupancy_task(block: Block, workdir: str, ds: Vec3) -> pa.Table:
    return block_occupancy(open_layer(workdir, "sv").read(block.core), block.core.start, ds)


def compute_occupancy(workdir: str | Path, *, config: ProjectConfig, compute: Compute | None,
                      progress: bool | None, overwrite: bool = False) -> None:
    """Pass 1 (resumable; a finished pass is reused). It is a cache of the ``sv`` layer: its
    parameters include a digest of ``tables/sv.parquet``, and a pass made with other parameters
    (pooling, blocks, another volume) is redone instead of refused."""
    blocks, ds, layer = _occupancy_blocks(workdir, config)
    project = Project(workdir)
    sv_table = project.table_path("sv")
    params = {"downsample": list(ds), "block_size_vx": list(blocks[0].core.shape) if blocks else [],
              "shape": list(layer.shape),
              "sv_table": hashlib.sha256(sv_table.read_bytes()).hexdigest() if sv_table.exists() else None}
    run = functools.partial(run_tasks, functools.partial(occupancy_task, workdir=str(workdir), ds=ds), blocks,
                            project.step_dir(OCCUPANCY_STEP), params=params, compute=compute,
                            desc="cell occupancy", progress=progress)
    try:
        run(overwrite=overwrite)
    except ManifestMismatch:
        run(overwrite=True)


# --------------------------------------------------------------------------- meshes


def remove_cell_mesh(mesh_dir: Path, obj_id: int) -> None:
    """Delete one cell's manifest and fragments (manifest first, so no dangling manifest remains)."""
    manifest = mesh_dir / f"{int(obj_id)}:0"
    if not manifest.exists():
        return
    frags = json.loads(manifest.read_text())["fragments"]
    manifest.unlink()
    for name in frags:
        (mesh_dir / name).unlink(missing_ok=True)


@dataclass(frozen=True)
class MeshTask:
    """One occupancy block, the cells (of those to mesh) whose bounding box meets it, and the
    occupancy blocks its cells' pooled voxels are read from (one pooled voxel below the core,
    two above: :func:`_near_box`)."""

    id: int
    block: Block
    cell_ids: tuple[int, ...]
    near_blocks: tuple[int, ...]


def _pooled_range(core: BBox, ds: Vec3, shape: Vec3) -> tuple[np.ndarray, np.ndarray]:
    """The pooled voxels ``[lo, hi)`` of a block core (pooled voxel ``j`` covers ``[j*ds, (j+1)*ds)``)."""
    n_pooled = -(-np.asarray(shape) // ds)
    return np.asarray(core.start) // ds, np.minimum(-(-np.asarray(core.stop) // ds), n_pooled)


def _near_box(core: BBox, ds: Vec3, shape: Vec3) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution box a task reads pooled voxels from: one pooled voxel below the core, two above."""
    lo, hi = _pooled_range(core, ds, shape)
    return (lo - 1) * ds, (hi + 2) * ds


def _crop_pieces(pts: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_pooled: np.ndarray,
                 close_hi: np.ndarray | bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Marching-cubes piece (integer half-voxel vertices, faces) of the pooled voxels ``pts`` in
    ``[lo, hi)`` (global pooled indices), cut to the voxels' extent plus one empty voxel, closed by
    one empty voxel where the range meets the volume border (as init's blocks; on the upper side
    only where ``close_hi``: the closing cells there belong to the last block)."""
    inside = np.all((pts >= lo) & (pts < hi), axis=1)
    p = pts[inside]
    if not len(p):
        return np.zeros((0, 3), np.int32), np.zeros((0, 3), np.uint32)
    a = np.maximum(lo, p.min(0) - 1)
    b = np.minimum(hi, p.max(0) + 2)
    mask = np.zeros(tuple(b - a), np.uint8)
    q = p - a
    mask[q[:, 0], q[:, 1], q[:, 2]] = 1
    got = piece_of(block_pieces(mask, tuple(int(v) for v in a), tuple(a == 0), tuple((b == n_pooled) & close_hi)), 1)
    return got if got is not None else (np.zeros((0, 3), np.int32), np.zeros((0, 3), np.uint32))


def _keys(q: np.ndarray) -> np.ndarray:
    """One int64 per half-voxel vertex (coordinates >= -1 and < 2**20)."""
    b = q.astype(np.int64) + 2
    return (b[:, 0] << 42) | (b[:, 1] << 21) | b[:, 2]


def _canonical_faces(q: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces rotated to start at their smallest vertex (orientation kept) and sorted by vertex keys,
    so that two blocks sum a shared vertex's face normals in the same order (same float result)."""
    k = _keys(q)[faces]
    start = np.argmin(k, axis=1)
    idx = (start[:, None] + np.arange(3)) % 3
    f = np.take_along_axis(faces, idx, axis=1)
    k = np.take_along_axis(k, idx, axis=1)
    return f[np.lexsort((k[:, 2], k[:, 1], k[:, 0]))]


def block_cell_piece(pts: np.ndarray, core_lo: np.ndarray, core_hi: np.ndarray, n_pooled: np.ndarray,
                     res_nm: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One cell's surface in one block of the pooled grid: vertices (float64 nm), faces and unit
    vertex normals of the marching-cubes cells the block owns (``[core_lo, core_hi)``, plus the
    border-closing cells at the volume's lower faces). ``pts``: the cell's pooled voxels within one
    voxel below and two above the core. Normals come from the faces of one more cell on every side,
    so a vertex shared with a neighbouring block gets the same normal there, bit for bit."""
    q, f = _crop_pieces(pts, core_lo, np.minimum(core_hi + 1, n_pooled), n_pooled, core_hi == n_pooled)
    if not len(f):
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint32), np.zeros((0, 3))
    v = to_nm(q, res_nm).astype(np.float64)
    if (pts.min(0) > core_lo).all() and (pts.max(0) < core_hi - 1).all():  # no face near a block face
        return v, f, vertex_normals(v, f)
    qe, fe = _crop_pieces(pts, np.maximum(core_lo - 1, 0), np.minimum(core_hi + 2, n_pooled), n_pooled)
    ne = vertex_normals(to_nm(qe, res_nm).astype(np.float64), _canonical_faces(qe, fe))
    ke = _keys(qe)
    order = np.argsort(ke)
    n = ne[order[np.searchsorted(ke, _keys(q), sorter=order)]]
    return v, f, n


def _task_cells(task: MeshTask, workdir: str, config: ProjectConfig) -> tuple[dict[int, np.ndarray], dict]:
    """The pooled voxels of each of the task's cells near its block (one voxel below the core, two
    above), and the geometry of the pooled grid."""
    project = Project(workdir)
    ds = tuple(int(d) for d in config.meshes.sv_downsample)
    layer = open_layer(workdir, "sv")
    lo, hi = _pooled_range(task.block.core, ds, layer.shape)
    s2c = pq.read_table(project.table_path("sv_to_cell"), filters=ids_in("cell_id", task.cell_ids)).sort_by("sv_id")
    sv_ids = s2c.column("sv_id").to_numpy()
    cell_of_sv = s2c.column("cell_id").to_numpy()
    rng = ids_in("sv_id", sv_ids)
    for a, l0, h0 in zip(("px", "py", "pz"), lo - 1, hi + 2, strict=True):
        rng = rng & (pc.field(a) >= int(l0)) & (pc.field(a) < int(h0))
    step_dir = project.step_dir(OCCUPANCY_STEP)
    parts = [pq.read_table([str(step_dir / "tasks" / f"{b:08d}.parquet") for b in task.near_blocks],
                           filters=rng)] if len(sv_ids) and task.near_blocks else []
    out: dict[int, np.ndarray] = {int(c): np.zeros((0, 3), np.int64) for c in task.cell_ids}
    if parts:
        occ = pa.concat_tables(parts)
        cells = cell_of_sv[np.searchsorted(sv_ids, occ.column("sv_id").to_numpy())]
        order = np.argsort(cells, kind="stable")
        cells = cells[order]
        pts = np.stack([occ.column(k).to_numpy()[order].astype(np.int64) for k in ("px", "py", "pz")], 1)
        starts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
        for c, p in zip(cells[starts], np.split(pts, starts[1:]), strict=True):
            out[int(c)] = p  # a pooled voxel may repeat (several supervoxels of the cell)
    res = tuple(float(v) * d for v, d in zip(layer.info.voxel_size_nm, ds, strict=True))
    return out, {"lo": lo, "hi": hi, "n_pooled": -(-np.asarray(layer.shape) // ds), "res": res}


def measure_task(task: MeshTask, workdir: str, config: ProjectConfig) -> pa.Table:
    """Pass 1: per cell, its surface area and volume polynomial (see
    :func:`syngraph.meshes.volume_polynomial`) over the faces this block owns."""
    pts_of, g = _task_cells(task, workdir, config)
    rows: dict[str, list] = {"cell_id": [], "area_nm2": [], **{f"v{k}": [] for k in range(4)}}
    for cid, pts in pts_of.items():
        v, f, n = block_cell_piece(pts, g["lo"], g["hi"], g["n_pooled"], g["res"])
        if not len(f):
            continue
        rows["cell_id"].append(cid)
        rows["area_nm2"].append(area(v, f))
        for k, c in enumerate(volume_polynomial(v, f, n)):
            rows[f"v{k}"].append(float(c))
    return pa.table({"cell_id": pa.array(rows["cell_id"], pa.uint64()),
                     **{k: pa.array(v, pa.float64()) for k, v in rows.items() if k != "cell_id"}})


def write_task(task: MeshTask, workdir: str, config: ProjectConfig, shift_nm: dict[int, float]) -> pa.Table:
    """Pass 2: each cell's piece in this block, moved inward by its cell's ``shift_nm`` along the
    normals, as fragment ``<cell>:0:<block id + 1>``; returns the fragments written."""
    pts_of, g = _task_cells(task, workdir, config)
    mesh_dir = Path(workdir) / "meshes" / "cells"
    written = []
    for cid, pts in pts_of.items():
        v, f, n = block_cell_piece(pts, g["lo"], g["hi"], g["n_pooled"], g["res"])
        if len(f):
            write_fragment(mesh_dir, f"{cid}:0:{task.block.id + 1}", (v - shift_nm.get(cid, 0.0) * n).astype(np.float32), f)
            written.append(cid)
    return pa.table({"cell_id": pa.array(written, pa.uint64()), "block": pa.array([task.block.id + 1] * len(written), pa.int64())})


def mesh_cells(
    workdir: str | Path,
    cell_ids: np.ndarray,
    *,
    config: ProjectConfig,
    compute: Compute | None,
    progress: bool | None,
    step: str = "cells_mesh",
    overwrite: bool = True,
    overwrite_occupancy: bool = False,
) -> None:
    """Mesh the given cells block by block (the occupancy pass first, if it has not run).

    Memory is set by the block: a task meshes, for each cell meeting its block, the marching-cubes
    cells the block owns (as init's blocks do), from the occupancy of its own and its neighbours'
    blocks. Pass 1 (``<step>/measure``) sums each cell's area and volume polynomial over its blocks;
    the driver turns them into the inward shift that gives the cell its voxels' volume (the same
    chord steps as :func:`syngraph.meshes.shrink_to_volume` on the whole mesh); pass 2 (``<step>``)
    writes one fragment per cell and block, shifted, and the driver lists them in the manifest.
    Pieces of one cell share their border vertices exactly, so :func:`syngraph.meshes.read_mesh`
    welds them into the closed whole-cell mesh."""
    compute_occupancy(workdir, config=config, compute=compute, progress=progress, overwrite=overwrite_occupancy)
    project = Project(workdir)
    ids = np.sort(np.asarray(cell_ids, np.uint64))
    cells = pq.read_table(project.table_path("cells"), filters=ids_in("cell_id", ids)) if len(ids) else None
    blocks, ds, layer = _occupancy_blocks(workdir, config)
    tasks = []
    if cells is not None and cells.num_rows:
        bmin = np.stack([cells.column(f"bbox_min_{a}_vx").to_numpy() for a in "xyz"], 1)
        bmax = np.stack([cells.column(f"bbox_max_{a}_vx").to_numpy() for a in "xyz"], 1)
        cid = cells.column("cell_id").to_numpy()
        starts = np.array([b.core.start for b in blocks]).reshape(-1, 3)
        stops = np.array([b.core.stop for b in blocks]).reshape(-1, 3)
        block_ids = np.array([b.id for b in blocks], np.int64)
        for b in blocks:  # a cell meets a block's owned marching-cubes cells only near its core
            lo, hi = np.asarray(b.core.start) - ds, np.asarray(b.core.stop) + ds
            hit = np.all((bmin < hi) & (bmax > lo), axis=1)
            if hit.any():
                near_lo, near_hi = _near_box(b.core, ds, layer.shape)
                near = block_ids[np.all((starts < near_hi) & (stops > near_lo), axis=1)]
                tasks.append(MeshTask(len(tasks), b, tuple(int(c) for c in cid[hit]), tuple(int(i) for i in near)))
    params = {"downsample": list(config.meshes.sv_downsample), "n": len(ids),
              "cells": hashlib.sha256(ids.tobytes()).hexdigest()[:16], "per_block": 1}
    run = functools.partial(run_tasks, compute=compute, progress=progress, overwrite=overwrite)
    step_dir = project.step_dir(step)
    shift: dict[int, float] = {}
    if tuple(ds) != (1, 1, 1):  # without pooling the surface is exact: nothing to measure
        run(functools.partial(measure_task, workdir=str(workdir), config=config), tasks, step_dir / "measure",
            params=params, desc=f"{step}: measure")
        shift = _shifts(read_task_tables(step_dir / "measure"), cells, layer.info.voxel_size_nm, ds)
    mesh_dir = project.workdir / "meshes" / "cells"
    write_info(mesh_dir)
    run(functools.partial(write_task, workdir=str(workdir), config=config, shift_nm=shift), tasks, step_dir,
        params={**params, "shift": hashlib.sha256(json.dumps(sorted(shift.items())).encode()).hexdigest()[:16]},
        desc=step)
    frags = read_task_tables(step_dir)
    by_cell: dict[int, list[int]] = {int(c): [] for c in ids}
    if frags is not None:
        for c, b in zip(frags.column("cell_id").to_numpy().tolist(), frags.column("block").to_numpy().tolist(), strict=True):
            by_cell[int(c)].append(int(b))
    for c, bl in by_cell.items():
        write_manifest(mesh_dir, c, [f"{c}:0:{b}" for b in sorted(bl)])


def _shifts(measured: pa.Table | None, cells: pa.Table | None, voxel_size_nm: tuple[float, float, float],
            ds: Vec3) -> dict[int, float]:
    """Per cell, the shift along the normals that brings its pooled surface to its voxels' volume
    (pooled by ``ds``; the caller skips it without pooling)."""
    if measured is None or cells is None:
        return {}
    ids = measured.column("cell_id").to_numpy()
    order = np.argsort(ids, kind="stable")  # sum each cell's blocks in block order
    ids = ids[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    sums = {k: np.add.reduceat(measured.column(k).to_numpy()[order], starts) for k in ("area_nm2", "v0", "v1", "v2", "v3")}
    size = dict(zip(cells.column("cell_id").to_numpy().tolist(), cells.column("size_vx").to_numpy().tolist(), strict=True))
    max_offset = min(float(v) * d for v, d in zip(voxel_size_nm, ds, strict=True)) / 2
    vox_nm3 = float(np.prod(voxel_size_nm))
    return {int(c): shrink_distance(np.array([sums[f"v{k}"][i] for k in range(4)]), float(sums["area_nm2"][i]),
                                    size[int(c)] * vox_nm3, max_offset)
            for i, c in enumerate(ids[starts])}
