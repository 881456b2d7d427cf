"""Cell meshes: one welded, closed surface per cell from its supervoxels' voxels.

A cell's voxels are max-pooled by ``meshes.sv_downsample`` (a pooled voxel is in the cell when any
of its ``ds`` voxels is, so thin processes survive), padded with one empty voxel and meshed with
zmesh's marching cubes. Pooling windows are aligned to the global grid (window ``j`` covers voxels
``[j * ds, (j + 1) * ds)``), so neighbouring cells' meshes line up.

Two passes, both resumable tasks:

1. ``steps/cells_occupancy``: per block of the ``sv`` layer (block size rounded up to a multiple of
   ``ds``), every pooled voxel each supervoxel occupies (``sv_id``, ``px``, ``py``, ``pz``; sorted).
   It does not depend on the supervoxel graph, so edits reuse it.
2. ``steps/cells_mesh`` (``edit_mesh`` for edits): batches of cells; a cell's pooled mask is the
   union of its supervoxels' occupancy read from the blocks its bounding box touches. A cell costs
   its pooled bounding box (``prod(ds)`` times less than its voxels' box), not a read of the
   full-resolution volume.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from syngraph.bbox import BBox
from syngraph.config import ProjectConfig
from syngraph.engine import (
    Block,
    Compute,
    ManifestMismatch,
    align_block_size,
    block_grid,
    run_tasks,
)
from syngraph.io.ids import ids_in
from syngraph.io.volume import Layer, open_layer
from syngraph.meshes import shrink_to_volume, write_info, write_mesh
from syngraph.project import Project

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
    id: int
    cell_ids: tuple[int, ...]


def _read_occupancy(step_dir: Path, blocks: list[Block], sv_ids: np.ndarray) -> pa.Table:
    parts = [pq.read_table(step_dir / "tasks" / f"{b.id:08d}.parquet", filters=ids_in("sv_id", sv_ids))
             for b in blocks]
    if not parts:
        return pa.table({"sv_id": pa.array([], pa.uint64()),
                         **{k: pa.array([], pa.int32()) for k in ("px", "py", "pz")}})
    return pa.concat_tables(parts)


def mesh_cells_task(task: MeshTask, workdir: str, config: ProjectConfig) -> None:
    """Task: mesh a batch of cells from the occupancy of their supervoxels."""
    project = Project(workdir)
    blocks, ds, layer = _occupancy_blocks(workdir, config)
    vs = layer.info.voxel_size_nm
    cells = pq.read_table(project.table_path("cells"), filters=ids_in("cell_id", task.cell_ids))
    s2c = pq.read_table(project.table_path("sv_to_cell"), filters=ids_in("cell_id", task.cell_ids))
    svs_all = s2c.column("sv_id").to_numpy()
    cell_of = s2c.column("cell_id").to_numpy()
    mesh_dir = project.workdir / "meshes" / "cells"
    write_info(mesh_dir)
    step_dir = project.step_dir(OCCUPANCY_STEP)
    rows = cells.to_pylist()
    boxes = [BBox(tuple(r[f"bbox_min_{a}_vx"] for a in "xyz"), tuple(r[f"bbox_max_{a}_vx"] for a in "xyz")) for r in rows]
    touched = [b for b in blocks if any(not b.core.intersect(box).empty for box in boxes)]
    occ = _read_occupancy(step_dir, touched, svs_all)
    occ_sv = occ.column("sv_id").to_numpy()
    pts = np.stack([occ.column(k).to_numpy() for k in ("px", "py", "pz")], 1) if occ.num_rows else np.zeros((0, 3), np.int32)
    for row, box in zip(rows, boxes, strict=True):
        cid = int(row["cell_id"])
        p = pts[np.isin(occ_sv, svs_all[cell_of == cid])]
        lo = np.asarray(box.start) // np.asarray(ds)
        hi = -(-np.asarray(box.stop) // np.asarray(ds))
        pooled = np.zeros(tuple(hi - lo), bool)
        if len(p):
            q = p - lo
            pooled[q[:, 0], q[:, 1], q[:, 2]] = True
        verts, faces = mesh_pooled(pooled, tuple(int(v) for v in lo * np.asarray(ds)), vs, ds,  # type: ignore[arg-type]
                                   int(row["size_vx"]))
        write_mesh(mesh_dir, cid, verts, faces)


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
    """Mesh the given cells (the occupancy pass first, if it has not run), about 32 cells a task."""
    compute_occupancy(workdir, config=config, compute=compute, progress=progress, overwrite=overwrite_occupancy)
    ids = [int(c) for c in np.sort(np.asarray(cell_ids, np.uint64))]
    tasks = [MeshTask(i, tuple(ids[k : k + 32])) for i, k in enumerate(range(0, len(ids), 32))]
    run_tasks(
        functools.partial(mesh_cells_task, workdir=str(workdir), config=config),
        tasks,
        Project(workdir).step_dir(step),
        params={"downsample": list(config.meshes.sv_downsample), "n": len(ids)},
        compute=compute,
        desc=step,
        progress=progress,
        overwrite=overwrite,
    )
