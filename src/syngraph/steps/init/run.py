"""The ``init`` step: organelle instances, object properties, meshes, organelle-to-supervoxel overlap.

The pipeline, top to bottom (each pass is a resumable engine run under ``<wd>/steps/init/<pass>``)::

    validate   per block: min / max / NaN / foreground counts of every map    -> errors before any work
    segment    per block (read with the morphology halo): threshold, open, close, then components
               (or components of the mask and of the eroded seeds) -> block-local ids in scratch
    stitch     per block: provisional id pairs that touch across its upper faces
    (resolve)  csgraph over the pairs: exact global ids, merged sizes, size filter -> mappings/
    watershed  per block, seeded-watershed layers only: grow global seeds inside each mask component
    (resolve)  watershed objects' merged sizes, size filter -> mappings/
    relabel    per block, read one voxel beyond its upper faces: final ids into <layer>_seg, property
               pieces, organelle x sv overlap counts, marching-cubes pieces of every meshed layer
    (reduce)   tables/<layer>.parquet and tables/overlap.parquet
    assemble   per group of objects: weld pieces, simplify, write meshes/<layer>/ (precomputed)

Scratch labels live in ``<wd>/steps/init/scratch/<layer>_<kind>/<block>.npy`` (see
:mod:`syngraph.steps.init.scratch`) and are deleted after success.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cc3d
import fastremap
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from syngraph.bbox import BBox
from syngraph.config import ProjectConfig, load_config
from syngraph.engine import (
    Block,
    Compute,
    align_block_size,
    block_grid,
    read_task_tables,
    run_tasks,
    session,
)
from syngraph.engine.run import write_table_atomic
from syngraph.io.volume import Layer, VolumeError, create_layer, open_layer
from syngraph.meshes import is_closed, write_info, write_mesh
from syngraph.steps.init import meshes as mesh_ops
from syngraph.steps.init import scratch
from syngraph.steps.init.overlap import OVERLAP_SCHEMA, block_overlap, reduce_overlap
from syngraph.steps.init.props import block_props, reduce_props
from syngraph.steps.init.segment import (
    aniso_structure,
    erode,
    foreground,
    label_components,
    morph_halo,
    watershed_per_component,
)
from syngraph.steps.init.stitch import face_pairs, provisional, resolve
from syngraph.steps.init.validate import (
    DEFAULT_RANGE,
    InitInputError,
    MapCheck,
    check_layer_match,
    check_stats,
    map_stats,
)

STEP = "init"
TABLE_COLUMNS = (
    ["id", "size_vx"]
    + [f"bbox_min_{a}_vx" for a in "xyz"]
    + [f"bbox_max_{a}_vx" for a in "xyz"]
    + [f"rep_{a}_vx" for a in "xyz"]
    + [f"com_{a}_vx" for a in "xyz"]
    + ["mesh_area_um2"]
)


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class LayerPlan:
    """How one layer is processed (normalised from the config once, at the boundary)."""

    name: str
    source: str  # layer name in volumes.zarr
    mode: str  # "cc" | "ws" | "labels" (existing instances) | "sv"
    input_kind: str = "labels"  # config kind of the input: probability | mask | labels
    value_range: float = 1.0  # full scale of a probability map
    threshold_value: float = 0.0  # foreground: value > threshold_value
    min_size_vx: int = 0
    min_seed_vx: int = 0
    opening: int = 0
    closing: int = 0
    erosions: int = 0
    connectivity: int = 6
    halo: tuple[int, int, int] = (0, 0, 0)
    mesh_ds: tuple[int, int, int] | None = (4, 4, 2)

    @property
    def seg(self) -> str:
        return "sv" if self.mode == "sv" else f"{self.name}_seg"


@dataclass(frozen=True)
class Ctx:
    """Everything a block task needs (picklable)."""

    workdir: str
    shape_xyz: tuple[int, int, int]
    voxel_size_nm: tuple[float, float, float]
    chunks_xyz: tuple[int, int, int]
    block_size: tuple[int, int, int]
    layers: tuple[LayerPlan, ...]
    sv_source: str
    mesh_simplify: bool = True
    mesh_reduction: int = 50
    mesh_max_error_nm: float = 40.0

    @property
    def step_dir(self) -> Path:
        return Path(self.workdir) / "steps" / STEP

    @property
    def scratch(self) -> Path:
        return self.step_dir / "scratch"

    @property
    def volume(self) -> BBox:
        return BBox.from_shape(self.shape_xyz)

    def organelles(self) -> list[LayerPlan]:
        return [p for p in self.layers if p.mode != "sv"]


def planned_organelles(config: ProjectConfig) -> list[str]:
    """The organelle layers init reads: those configured under ``[organelles]`` that have a layer."""
    return [name for name in config.organelles if name in config.layers]


def plan(workdir: str | Path, config: ProjectConfig) -> Ctx:
    """Check the inputs named by ``config`` (before any block runs) and normalise them into a Ctx."""
    workdir = Path(workdir)
    if "sv" not in config.layers:
        raise InitInputError(
            f"{workdir / 'syngraph.toml'}: no 'sv' entry in [layers]; the init step needs the cell "
            f"supervoxels: add [layers.sv] path = \"sv\", kind = \"labels\" and import them"
        )

    def _open(name: str) -> Layer:
        src = config.layers[name].path or name
        try:
            return open_layer(workdir, src)
        except VolumeError as exc:
            raise InitInputError(
                f"layer '{name}' is named in {workdir / 'syngraph.toml'} [layers] but {exc}; "
                f"or remove it from [layers]"
            ) from exc

    sv = _open("sv")
    if config.layers["sv"].kind != "labels" or sv.dtype.kind != "u":
        raise InitInputError(
            f"layer 'sv' ({sv.path}) must be an unsigned integer label layer (got dtype {sv.dtype}, "
            f"kind {config.layers['sv'].kind!r}); import the supervoxel segmentation as labels"
        )
    vs = tuple(float(v) for v in sv.info.voxel_size_nm)
    plans = [
        LayerPlan(
            "sv", sv.info.name, "sv",
            mesh_ds=None if "sv" in config.meshes.exclude else tuple(config.meshes.sv_downsample),
        )
    ]
    for name in planned_organelles(config):
        op = config.organelles[name]
        lay = _open(name)
        check_layer_match(sv, lay, "organelle")
        kind = config.layers[name].kind
        ds = None if name in config.meshes.exclude else tuple(op.mesh_downsample)
        if kind == "labels":
            if lay.dtype.kind != "u":
                raise InitInputError(
                    f"layer '{name}' ({lay.path}) is declared kind = \"labels\" but has dtype {lay.dtype}; "
                    f"instance labels must be unsigned integers (or declare it a probability map)"
                )
            plans.append(LayerPlan(name, lay.info.name, "labels", min_size_vx=op.min_size_vx, mesh_ds=ds))
            continue
        rng = 1.0
        if kind == "mask":
            tv = 0.0
        else:
            rng = lay.info.value_range if lay.info.value_range is not None else DEFAULT_RANGE.get(lay.info.dtype)
            if rng is None:
                raise InitInputError(
                    f"layer '{name}' ({lay.path}): a probability map of dtype {lay.info.dtype} needs a "
                    f"value_range; re-import it with one (uint8: 255, float32: 1.0)"
                )
            tv = float(op.threshold) * float(rng)
        mode = "ws" if op.erosions > 0 else "cc"
        halo = morph_halo(vs, op.opening, op.closing, op.erosions if mode == "ws" else 0)
        plans.append(
            LayerPlan(
                name, lay.info.name, mode, input_kind=kind, value_range=float(rng) if kind != "mask" else 1.0,
                threshold_value=tv, min_size_vx=op.min_size_vx,
                min_seed_vx=op.min_seed_vx, opening=op.opening, closing=op.closing,
                erosions=op.erosions, connectivity=op.connectivity, halo=halo, mesh_ds=ds,
            )
        )
    chunks = tuple(sv.info.chunks_xyz)
    bs = align_block_size(config.compute.block_size_vx, chunks)
    for p in plans:
        if p.mesh_ds is not None and any(b % d for b, d in zip(bs, p.mesh_ds, strict=True)):
            raise InitInputError(
                f"block size {list(bs)} (compute.block_size_vx rounded up to the chunks {list(chunks)}) is "
                f"not a multiple of the mesh downsampling {list(p.mesh_ds)} of layer '{p.name}'; "
                f"choose a block size divisible by it"
            )
    return Ctx(
        workdir=str(workdir),
        shape_xyz=tuple(sv.info.shape_xyz),
        voxel_size_nm=vs,  # type: ignore[arg-type]
        chunks_xyz=chunks,  # type: ignore[arg-type]
        block_size=bs,
        layers=tuple(plans),
        sv_source=sv.info.name,
        mesh_simplify=config.meshes.simplify,
        mesh_reduction=config.meshes.simplification_factor,
        mesh_max_error_nm=config.meshes.max_error_nm,
    )


def _params(ctx: Ctx, **extra: Any) -> dict[str, Any]:
    d = {"layers": [p.__dict__ for p in ctx.layers], "block_size": ctx.block_size, "shape": ctx.shape_xyz}
    d.update(extra)
    return json.loads(json.dumps(d, default=list))


# ----------------------------------------------------------------------------- block tasks


@functools.lru_cache(maxsize=8)
def _grid(ctx: Ctx) -> dict[tuple[int, int, int], tuple[int, BBox]]:
    return {b.index: (b.id, b.core) for b in block_grid(ctx.volume, ctx.block_size)}


def _scratch_read(
    ctx: Ctx, name: str, box: BBox, mapping: tuple[np.ndarray, np.ndarray] | None = None, per_block: bool = True
) -> np.ndarray:
    return scratch.read(ctx.scratch, name, box, _grid(ctx), ctx.block_size, mapping, per_block)


def _read_halo(layer: Layer, core: BBox, halo: tuple[int, int, int], volume: BBox) -> tuple[np.ndarray, BBox]:
    box = core.grow(halo, clip=volume)
    return layer.read(box), box


def validate_task(block: Block, ctx: Ctx) -> pa.Table:
    rows: dict[str, list[Any]] = {k: [] for k in ("layer", "min", "max", "n_nan", "n_fg", "n")}
    for p in ctx.organelles():
        if p.mode not in ("cc", "ws"):
            continue
        st = map_stats(open_layer(ctx.workdir, p.source).read(block.core), p.threshold_value)
        rows["layer"].append(p.name)
        for k, v in st.items():
            rows[k].append(v)
    return pa.table(rows)


def _pieces(labels_local: np.ndarray, n: int, block: Block, layer: str, kind: str) -> dict[str, np.ndarray]:
    """Provisional id, size and global bbox of every local label 1..n of one block."""
    off = np.asarray(block.core.start, np.int64)
    if n == 0:
        counts = np.zeros(0, np.int64)
        bb = np.zeros((0, 6), np.int64)
    else:
        st = cc3d.statistics(labels_local, no_slice_conversion=True)
        counts = np.asarray(st["voxel_counts"][1 : n + 1], np.int64)
        bb = np.asarray(st["bounding_boxes"][1 : n + 1], np.int64)
    ids = provisional(np.arange(1, n + 1, dtype=np.uint64), block.id)
    out = {
        "layer": np.array([layer] * n, object),
        "kind": np.array([kind] * n, object),
        "id": ids,
        "size_vx": counts,
    }
    for i, a in enumerate("xyz"):
        out[f"bbox_min_{a}_vx"] = bb[:, 2 * i] + off[i]
    for i, a in enumerate("xyz"):
        out[f"bbox_max_{a}_vx"] = bb[:, 2 * i + 1] + 1 + off[i]
    return out


def segment_task(block: Block, ctx: Ctx) -> pa.Table:
    """Per layer: the block's objects with block-local ids (written to scratch) and their pieces."""
    parts = []
    st = aniso_structure(ctx.voxel_size_nm)
    for p in ctx.organelles():
        if p.mode == "labels":
            lab = open_layer(ctx.workdir, p.source).read(block.core)
            ids, counts = fastremap.unique(lab, return_counts=True)
            keep = ids != 0
            n = int(keep.sum())
            parts.append(
                {"layer": np.array([p.name] * n, object), "kind": np.array(["obj"] * n, object),
                 "id": ids[keep].astype(np.uint64), "size_vx": counts[keep].astype(np.int64)}
            )
            continue
        prob, box = _read_halo(open_layer(ctx.workdir, p.source), block.core, p.halo, ctx.volume)
        mask_h = foreground(prob, p.threshold_value, 1.0, st, p.opening, p.closing)
        del prob
        core = block.core.local_slices(box)
        conn = 26 if p.mode == "ws" else p.connectivity
        lab, n = label_components(mask_h[core], conn, return_n=True)
        scratch.write(ctx.scratch, f"{p.name}_cc", block.id, lab)
        parts.append(_pieces(lab, n, block, p.name, "cc"))
        if p.mode == "ws":
            seeds, n = label_components(erode(mask_h, st, p.erosions)[core], p.connectivity, return_n=True)
            scratch.write(ctx.scratch, f"{p.name}_seeds", block.id, seeds)
            piece = _pieces(seeds, n, block, p.name, "seed")
            # the mask component holding each seed (a seed lies inside one component)
            m = seeds != 0
            key = fastremap.unique((seeds[m].astype(np.uint64) << np.uint64(32)) | lab[m].astype(np.uint64))
            parent = np.zeros(n, np.uint64)
            parent[(key >> np.uint64(32)).astype(np.int64) - 1] = provisional(key & np.uint64(0xFFFFFFFF), block.id)
            piece["parent"] = parent
            parts.append(piece)
    return _concat(parts)


def _concat(parts: list[dict[str, np.ndarray]]) -> pa.Table:
    cols = ["layer", "kind", "id", "size_vx"] + [f"bbox_min_{a}_vx" for a in "xyz"] + [f"bbox_max_{a}_vx" for a in "xyz"]
    cols.append("parent")
    out: dict[str, Any] = {}
    for c in cols:
        arrs = [pt.get(c) for pt in parts]
        n = [len(pt["id"]) for pt in parts]
        arrs = [a if a is not None else np.zeros(k, np.int64) for a, k in zip(arrs, n, strict=True)]
        if c in ("layer", "kind"):
            out[c] = pa.array(np.concatenate(arrs).tolist() if arrs else [], pa.string())
        elif c in ("id", "parent"):
            out[c] = pa.array(np.concatenate(arrs).astype(np.uint64) if arrs else np.zeros(0, np.uint64))
        else:
            out[c] = pa.array(np.concatenate(arrs).astype(np.int64) if arrs else np.zeros(0, np.int64))
    return pa.table(out)


def _scratch_kinds(p: LayerPlan) -> list[str]:
    return {"cc": ["cc"], "ws": ["cc", "seeds"]}.get(p.mode, [])


def stitch_task(block: Block, ctx: Ctx) -> pa.Table:
    """Provisional id pairs touching across the block's upper x, y and z faces."""
    layers, kinds, a, b = [], [], [], []
    vol = ctx.volume
    for p in ctx.organelles():
        for kind in _scratch_kinds(p):
            conn = 26 if (p.mode == "ws" and kind == "cc") else p.connectivity
            for ax in range(3):
                if block.core.stop[ax] >= vol.stop[ax]:
                    continue
                start = list(block.core.start)
                stop = [min(s + 1, e) for s, e in zip(block.core.stop, vol.stop, strict=True)]
                start[ax] = block.core.stop[ax] - 1
                stop[ax] = block.core.stop[ax] + 1
                slab = _scratch_read(ctx, f"{p.name}_{kind}", BBox(tuple(start), tuple(stop)))  # type: ignore[arg-type]
                pairs = face_pairs(slab, ax, conn)
                layers += [p.name] * len(pairs)
                kinds += ["seed" if kind == "seeds" else "cc"] * len(pairs)
                a.append(pairs[:, 0])
                b.append(pairs[:, 1])
    return pa.table(
        {
            "layer": pa.array(layers, pa.string()),
            "kind": pa.array(kinds, pa.string()),
            "a": np.concatenate(a) if a else np.zeros(0, np.uint64),
            "b": np.concatenate(b) if b else np.zeros(0, np.uint64),
        }
    )


def _mapping_path(ctx: Ctx, layer: str, kind: str) -> Path:
    return ctx.step_dir / "mappings" / f"{layer}_{kind}.parquet"


def _load_mapping(ctx: Ctx, layer: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    t = pq.read_table(_mapping_path(ctx, layer, kind))
    return t.column("src").to_numpy(), t.column("dst").to_numpy()


def _remap(arr: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Map the ids of ``arr`` through sorted ``src`` -> ``dst`` (0 stays 0; every id must be in src)."""
    uniq = fastremap.unique(arr)
    uniq = uniq[uniq != 0]
    idx = np.searchsorted(src, uniq)
    if len(uniq) and ((idx >= len(src)).any() or (src[np.minimum(idx, len(src) - 1)] != uniq).any()):
        raise RuntimeError("init: an id in a scratch volume has no mapping; rerun with overwrite=True")
    table = {int(k): int(v) for k, v in zip(uniq, dst[idx], strict=True)}
    table[0] = 0
    return fastremap.remap(arr, table, preserve_missing_labels=False).astype(np.uint64, copy=False)


def ws_halo(p: LayerPlan, block_size: tuple[int, int, int]) -> tuple[int, int, int]:
    """Context (voxels) a block reads around its core for the watershed: a quarter block, at least
    twice the morphology halo. Components inside it get the whole-volume result."""
    return tuple(max(b // 4, 2 * h) for b, h in zip(block_size, p.halo, strict=True))  # type: ignore[return-value]


def watershed_task(block: Block, ctx: Ctx) -> pa.Table:
    """Seeded watershed around the block's core (global seed ids); writes the core to scratch.

    The region is the block grown by :func:`ws_halo`, shrunk to the components (26-connected mask
    pieces) that meet the core plus one voxel of background. Every voxel gets a global seed id, so
    an object crossing block faces keeps one id.
    """
    layers, ids, sizes = [], [], []
    vol = ctx.volume
    for p in ctx.organelles():
        if p.mode != "ws":
            continue
        comps = pq.read_table(ctx.step_dir / "mappings" / f"{p.name}_comps.parquet")
        cmin = np.stack([comps.column(f"bbox_min_{a}_vx").to_numpy() for a in "xyz"], 1)
        cmax = np.stack([comps.column(f"bbox_max_{a}_vx").to_numpy() for a in "xyz"], 1)
        hit = ((cmin < block.core.stop).all(1)) & ((cmax > block.core.start).all(1))
        out = np.zeros(block.core.shape, np.uint64)
        if hit.any():
            lo = np.maximum(cmin[hit].min(0) - 1, 0)
            hi = np.minimum(cmax[hit].max(0) + 1, vol.stop)
            region = BBox(tuple(int(v) for v in lo), tuple(int(v) for v in hi))  # type: ignore[arg-type]
            region = region.intersect(block.core.grow(ws_halo(p, ctx.block_size), clip=vol))
            cc = _scratch_read(ctx, f"{p.name}_cc", region, _load_mapping(ctx, p.name, "cc"))
            # components only in the halo have no voxel in the core: not flooded
            cc = fastremap.mask_except(cc, comps.column("id").to_numpy()[hit].tolist())
            seeds = _scratch_read(ctx, f"{p.name}_seeds", region, _load_mapping(ctx, p.name, "seed"))
            ws = watershed_per_component(cc, seeds, ctx.voxel_size_nm)
            ns_src, ns_dst = _load_mapping(ctx, p.name, "noseed")
            if len(ns_src):  # seedless components: the whole component is one object
                lut = np.zeros(len(comps) + 1, np.uint64)
                lut[ns_src.astype(np.int64)] = ns_dst
                ws = np.where(ws == 0, lut[cc], ws)
            del cc, seeds
            inter = region.intersect(block.core)
            out[inter.local_slices(block.core)] = ws[inter.local_slices(region)]
        scratch.write(ctx.scratch, f"{p.name}_ws", block.id, out)
        u, c = fastremap.unique(out, return_counts=True)
        keep = u != 0
        layers += [p.name] * int(keep.sum())
        ids.append(u[keep].astype(np.uint64))
        sizes.append(c[keep].astype(np.int64))
    return pa.table(
        {
            "layer": pa.array(layers, pa.string()),
            "id": np.concatenate(ids) if ids else np.zeros(0, np.uint64),
            "size_vx": np.concatenate(sizes) if sizes else np.zeros(0, np.int64),
        }
    )


def _final_labels(ctx: Ctx, p: LayerPlan, box: BBox) -> np.ndarray:
    """Final ids (uint64) of organelle layer ``p`` over ``box``."""
    mapping = _load_mapping(ctx, p.name, "final")
    if p.mode == "labels":
        return _remap(open_layer(ctx.workdir, p.source).read(box), *mapping)
    if p.mode == "cc":
        return _scratch_read(ctx, f"{p.name}_cc", box, mapping, per_block=True)
    return _scratch_read(ctx, f"{p.name}_ws", box, mapping, per_block=False)


def _mesh_pieces(ctx: Ctx, p: LayerPlan, block: Block, lab_ext: np.ndarray) -> np.ndarray:
    """Marching-cubes pieces of layer ``p`` in this block, from its final labels read one voxel
    beyond the block's upper faces; saved to mesh_pieces/. Returns the ids meshed."""
    assert p.mesh_ds is not None
    vol = ctx.volume
    ds = p.mesh_ds
    crop = mesh_ops.downsample(lab_ext, ds)
    origin = tuple(s // d for s, d in zip(block.core.start, ds, strict=True))
    pieces = mesh_ops.block_pieces(
        crop, origin,
        pad_lo=[s == 0 for s in block.core.start],
        pad_hi=[s == e for s, e in zip(block.core.stop, vol.stop, strict=True)],
    )
    path = _pieces_path(ctx, p.name, block.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **pieces)
    tmp.replace(path)
    return pieces["ids"]


def relabel_task(block: Block, ctx: Ctx) -> pa.Table:
    """Final ids into <layer>_seg, property pieces of every layer, organelle x sv overlap counts
    (relabel/overlap/) and the block's mesh pieces (mesh_pieces/, listed in relabel/mesh/)."""
    vol = ctx.volume
    meshing = any(p.mesh_ds is not None for p in ctx.layers)
    box = block.core
    if meshing:  # one voxel beyond the upper faces: the marching-cubes cells shared with the next block
        box = BBox(block.core.start, tuple(min(s + 1, e) for s, e in zip(block.core.stop, vol.stop, strict=True)))  # type: ignore[arg-type]
    core = block.core.local_slices(box)
    sv_ext = open_layer(ctx.workdir, ctx.sv_source).read(box)
    sv = sv_ext[core]
    props = []
    t = block_props(sv, block.core.start)
    props.append(t.append_column("layer", pa.array(["sv"] * t.num_rows, pa.string())))
    mesh_layers: list[str] = []
    mesh_ids: list[np.ndarray] = []
    for p in ctx.layers:
        if p.mode == "sv" and p.mesh_ds is not None:
            ids = _mesh_pieces(ctx, p, block, sv_ext)
            mesh_layers += [p.name] * len(ids)
            mesh_ids.append(ids)
    del sv_ext
    ov: dict[str, list[Any]] = {"layer": [], "organelle_id": [], "sv_id": [], "overlap_vx": []}
    for p in ctx.organelles():
        lab_ext = _final_labels(ctx, p, box)
        lab = lab_ext[core]
        open_layer(ctx.workdir, p.seg).write(lab, block.core.start)
        t = block_props(lab, block.core.start)
        props.append(t.append_column("layer", pa.array([p.name] * t.num_rows, pa.string())))
        o, s, c = block_overlap(lab, sv)
        ov["layer"] += [p.name] * len(o)
        ov["organelle_id"].append(o)
        ov["sv_id"].append(s)
        ov["overlap_vx"].append(c)
        if p.mesh_ds is not None:
            ids = _mesh_pieces(ctx, p, block, lab_ext)
            mesh_layers += [p.name] * len(ids)
            mesh_ids.append(ids)
        del lab_ext, lab
    ovt = pa.table(
        {
            "layer": pa.array(ov["layer"], pa.string()),
            "organelle_id": np.concatenate(ov["organelle_id"]) if ov["organelle_id"] else np.zeros(0, np.uint64),
            "sv_id": np.concatenate(ov["sv_id"]) if ov["sv_id"] else np.zeros(0, np.uint64),
            "overlap_vx": np.concatenate(ov["overlap_vx"]) if ov["overlap_vx"] else np.zeros(0, np.int64),
        }
    )
    write_table_atomic(ovt, ctx.step_dir / "relabel" / "overlap" / f"{block.id:08d}.parquet")
    mt = pa.table(
        {
            "layer": pa.array(mesh_layers, pa.string()),
            "id": np.concatenate(mesh_ids) if mesh_ids else np.zeros(0, np.uint64),
            "block": np.full(len(mesh_layers), block.id, np.int64),
        }
    )
    write_table_atomic(mt, ctx.step_dir / "relabel" / "mesh" / f"{block.id:08d}.parquet")
    return pa.concat_tables(props)


def _pieces_path(ctx: Ctx, layer: str, block_id: int) -> Path:
    return ctx.step_dir / "mesh_pieces" / layer / f"{block_id:08d}.npz"


@dataclass(frozen=True)
class AssembleTask:
    """Objects whose meshes one task welds: (layer, id, block ids with pieces)."""

    id: int
    items: tuple[tuple[str, int, tuple[int, ...]], ...] = field(default=())


def _task_pieces(ctx: Ctx, task: AssembleTask) -> dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray]]]:
    """The pieces of the task's objects, in block order: each block's file is read once and freed,
    so the task holds its objects' pieces, not every piece of the blocks they touch."""
    wanted: dict[tuple[str, int], list[int]] = {}
    for layer, obj, blocks in task.items:
        for b in blocks:
            wanted.setdefault((layer, b), []).append(obj)
    out: dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray]]] = {(lay, o): [] for lay, o, _ in task.items}
    for (layer, b), objs in sorted(wanted.items(), key=lambda kv: kv[0][1]):
        with np.load(_pieces_path(ctx, layer, b)) as z:
            got = mesh_ops.pieces_of({k: z[k] for k in z.files}, objs)
        for obj, piece in got.items():
            out[(layer, obj)].append(piece)
    return out


def assemble_task(task: AssembleTask, ctx: Ctx) -> pa.Table:
    res = {p.name: tuple(d * v for d, v in zip(p.mesh_ds, ctx.voxel_size_nm, strict=True))
           for p in ctx.layers if p.mesh_ds is not None}
    out: dict[str, list[Any]] = {"layer": [], "id": [], "mesh_area_um2": [], "n_faces": [], "closed": []}
    task_pieces = _task_pieces(ctx, task)
    for layer, obj, _ in task.items:
        pieces = task_pieces.pop((layer, obj))
        v, f, a = mesh_ops.assemble(
            pieces, res[layer], simplify=ctx.mesh_simplify,
            reduction_factor=ctx.mesh_reduction, max_error_nm=ctx.mesh_max_error_nm,
        )
        write_mesh(Path(ctx.workdir) / "meshes" / layer, obj, v, f)
        out["layer"].append(layer)
        out["id"].append(obj)
        out["mesh_area_um2"].append(a)
        out["n_faces"].append(len(f))
        out["closed"].append(is_closed(f))
    return pa.table(
        {
            "layer": pa.array(out["layer"], pa.string()),
            "id": pa.array(out["id"], pa.uint64()),
            "mesh_area_um2": pa.array(out["mesh_area_um2"], pa.float64()),
            "n_faces": pa.array(out["n_faces"], pa.int64()),
            "closed": pa.array(out["closed"], pa.bool_()),
        }
    )


# ----------------------------------------------------------------------------- driver helpers


def _write_mapping(ctx: Ctx, layer: str, kind: str, src: np.ndarray, dst: np.ndarray) -> None:
    write_table_atomic(
        pa.table({"src": np.asarray(src, np.uint64), "dst": np.asarray(dst, np.uint64)}),
        _mapping_path(ctx, layer, kind),
    )


def _select(t: pa.Table, **eq: str) -> pa.Table:
    for k, v in eq.items():
        t = t.filter(pc.equal(t.column(k), v))
    return t


def _resolve_pieces(pieces: pa.Table, pairs: pa.Table, layer: str, kind: str, min_size: int):
    pt = _select(pieces, layer=layer, kind=kind)
    pr = _select(pairs, layer=layer, kind=kind)
    pr_arr = np.stack([pr.column("a").to_numpy(), pr.column("b").to_numpy()], 1) if pr.num_rows else np.zeros((0, 2), np.uint64)
    bmin = np.stack([pt.column(f"bbox_min_{a}_vx").to_numpy() for a in "xyz"], 1)
    bmax = np.stack([pt.column(f"bbox_max_{a}_vx").to_numpy() for a in "xyz"], 1)
    return resolve(pt.column("id").to_numpy(), pt.column("size_vx").to_numpy(), pr_arr, min_size, bmin, bmax)


def _ensure_layer(ctx: Ctx, workdir: Path | str, name: str) -> Layer:
    try:
        lay = open_layer(workdir, name)
        if tuple(lay.info.shape_xyz) == tuple(ctx.shape_xyz) and lay.info.dtype == "uint64":
            return lay
    except VolumeError:
        pass
    return create_layer(
        workdir, name, ctx.shape_xyz, "uint64", ctx.voxel_size_nm, chunks_xyz=ctx.chunks_xyz,
        kind="labels", overwrite=True,
    )


def run_init(
    workdir: str | Path,
    *,
    config: ProjectConfig | None = None,
    compute: Compute | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run the init step on ``workdir``; return a summary (objects per layer, seconds per pass).

    Writes ``<layer>_seg`` label layers (uint64) for every configured organelle layer,
    ``tables/{sv,<organelle>...,overlap}.parquet``, meshes under ``meshes/<layer>/`` and engine state
    under ``steps/init/``. Inputs are checked before any block runs (:class:`InitInputError`).
    A rerun resumes finished blocks and gives the same ids and bytes; ``overwrite=True`` starts over.
    """
    t_all = time.perf_counter()
    workdir = Path(workdir)
    config = config or load_config(workdir)
    ctx = plan(workdir, config)
    compute = compute or Compute.from_config(config.compute)
    if overwrite and ctx.step_dir.exists():
        shutil.rmtree(ctx.step_dir)
    blocks = block_grid(ctx.volume, ctx.block_size)
    sd = ctx.step_dir
    passes: dict[str, dict[str, float]] = {}

    def _run(name: str, fn: Callable[..., pa.Table], tasks: list[Any], **extra: Any) -> None:
        rep = run_tasks(functools.partial(fn, ctx=ctx), tasks, sd / name, params=_params(ctx, **extra),
                        progress=progress, desc=f"init/{name}")
        passes[name] = {"seconds": rep.seconds, "peak_rss_mb": rep.peak_rss_mb, "tasks": rep.n_tasks,
                        "done": rep.n_done}

    orgs = ctx.organelles()
    with session(compute):
        # validate ------------------------------------------------------------------------
        if any(p.mode in ("cc", "ws") for p in orgs):
            _run("validate", validate_task, blocks)
            checks = [MapCheck(p.name, str(workdir / "volumes.zarr" / p.source), p.input_kind,
                               p.value_range, p.threshold_value)
                      for p in orgs if p.mode in ("cc", "ws")]
            check_stats(checks, read_task_tables(sd / "validate"))
        # segment + stitch + resolve ---------------------------------------------------------
        _run("segment", segment_task, blocks)
        _run("stitch", stitch_task, blocks)
        pieces = read_task_tables(sd / "segment")
        pairs = read_task_tables(sd / "stitch")
        for p in orgs:
            if p.mode == "labels":
                t = _select(pieces, layer=p.name)
                ids = t.column("id").to_numpy()
                uniq, inv = np.unique(ids, return_inverse=True)
                size = np.bincount(inv, weights=t.column("size_vx").to_numpy()).astype(np.int64)
                _write_mapping(ctx, p.name, "final", uniq, np.where(size >= p.min_size_vx, uniq, 0))
            elif p.mode == "cc":
                r = _resolve_pieces(pieces, pairs, p.name, "cc", p.min_size_vx)
                _write_mapping(ctx, p.name, "final", r.src, r.dst)
            else:
                r = _resolve_pieces(pieces, pairs, p.name, "cc", 0)
                _write_mapping(ctx, p.name, "cc", r.src, r.dst)
                comps = {"id": np.arange(1, len(r.size_vx) + 1, dtype=np.uint64)}
                comps.update({f"bbox_min_{a}_vx": r.bbox_min[:, i] for i, a in enumerate("xyz")})
                comps.update({f"bbox_max_{a}_vx": r.bbox_max[:, i] for i, a in enumerate("xyz")})
                write_table_atomic(pa.table(comps), sd / "mappings" / f"{p.name}_comps.parquet")
                s = _resolve_pieces(pieces, pairs, p.name, "seed", p.min_seed_vx)
                _write_mapping(ctx, p.name, "seed", s.src, s.dst)
                # mask components left without a seed (e.g. flat objects that the erosions remove)
                # become one object each, ids after the seeds' (the reference drops them)
                sp = _select(pieces, layer=p.name, kind="seed")
                g_seed = s.dst[np.searchsorted(s.src, sp.column("id").to_numpy())] if sp.num_rows else np.zeros(0, np.uint64)
                g_comp = r.dst[np.searchsorted(r.src, sp.column("parent").to_numpy())] if sp.num_rows else np.zeros(0, np.uint64)
                has = np.zeros(len(r.size_vx) + 1, bool)
                has[g_comp[g_seed != 0].astype(np.int64)] = True
                noseed = (np.flatnonzero(~has[1:]) + 1).astype(np.uint64)
                _write_mapping(ctx, p.name, "noseed", noseed,
                               len(s.size_vx) + np.arange(1, len(noseed) + 1, dtype=np.uint64))
        # watershed ---------------------------------------------------------------------------
        if any(p.mode == "ws" for p in orgs):
            _run("watershed", watershed_task, blocks)
            ws = read_task_tables(sd / "watershed")
            for p in orgs:
                if p.mode != "ws":
                    continue
                t = _select(ws, layer=p.name)
                uniq, inv = np.unique(t.column("id").to_numpy(), return_inverse=True)
                size = np.bincount(inv, weights=t.column("size_vx").to_numpy()).astype(np.int64)
                keep = size >= p.min_size_vx
                dst = np.zeros(len(uniq), np.uint64)
                dst[keep] = np.arange(1, keep.sum() + 1, dtype=np.uint64)
                _write_mapping(ctx, p.name, "final", uniq.astype(np.uint64), dst)
        # relabel, properties, overlap ------------------------------------------------------------
        for p in orgs:
            _ensure_layer(ctx, workdir, p.seg)
        _run("relabel", relabel_task, blocks)
        props = read_task_tables(sd / "relabel")
        tables: dict[str, pa.Table] = {}
        for p in ctx.layers:
            tables[p.name] = reduce_props(_select(props, layer=p.name).drop_columns(["layer"]))
        ov_files = sorted((sd / "relabel" / "overlap").glob("*.parquet"))
        ov = pa.concat_tables([pq.read_table(f) for f in ov_files]) if ov_files else None
        overlap_parts = []
        for p in orgs:
            t = _select(ov, layer=p.name) if ov is not None else None
            tp = tables[p.name]
            if t is None or t.num_rows == 0:
                continue
            overlap_parts.append(
                reduce_overlap(p.name, t.column("organelle_id").to_numpy(), t.column("sv_id").to_numpy(),
                               t.column("overlap_vx").to_numpy(), tp.column("id").to_numpy(),
                               tp.column("size_vx").to_numpy())
            )
        overlap = pa.concat_tables(overlap_parts) if overlap_parts else OVERLAP_SCHEMA.empty_table()
        # meshes ------------------------------------------------------------------------------
        area: dict[str, dict[int, float]] = {}
        mesh_summary: dict[str, Any] = {}
        if any(p.mesh_ds is not None for p in ctx.layers):
            m_files = sorted((sd / "relabel" / "mesh").glob("*.parquet"))
            mt = pa.concat_tables([pq.read_table(f) for f in m_files]) if m_files else None
            tasks = _assemble_tasks(ctx, mt, tables, blocks)
            for p in ctx.layers:
                if p.mesh_ds is not None:
                    mdir = workdir / "meshes" / p.name
                    mdir.mkdir(parents=True, exist_ok=True)
                    write_info(mdir)
            _run("assemble", assemble_task, tasks, simplify=ctx.mesh_simplify)
            at = read_task_tables(sd / "assemble")
            for p in ctx.layers:
                if p.mesh_ds is None:
                    continue
                t = _select(at, layer=p.name) if at is not None else None
                meshed = set(t.column("id").to_pylist()) if t is not None else set()
                # objects that vanish at the mesh downsampling (striding misses them): an empty
                # manifest each, mesh_area_um2 0, counted in the summary as "empty"
                lost = [i for i in tables[p.name].column("id").to_pylist() if i not in meshed]
                for i in lost:
                    if not (workdir / "meshes" / p.name / f"{i}:0").exists():
                        write_mesh(workdir / "meshes" / p.name, i, np.zeros((0, 3), np.float32),
                                   np.zeros((0, 3), np.uint32))
                if t is not None:
                    area[p.name] = dict(zip(t.column("id").to_pylist(), t.column("mesh_area_um2").to_pylist(), strict=True))
                nf = t.column("n_faces").to_numpy() if t is not None else np.zeros(0, np.int64)
                mesh_summary[p.name] = {
                    "meshes": len(meshed),
                    "faces": int(nf.sum()),
                    "closed": int(pc.sum(t.column("closed").cast(pa.int64())).as_py() or 0) if t is not None else 0,
                    "empty": len(lost) + int((nf == 0).sum()),
                }
    # tables -------------------------------------------------------------------------------------
    summary: dict[str, Any] = {"layers": {}, "passes": passes}
    for p in ctx.layers:
        t = tables[p.name]
        ids = t.column("id").to_pylist()
        if p.mesh_ds is None:
            a = np.full(len(ids), np.nan)
        else:
            lut = area.get(p.name, {})
            a = np.array([lut.get(i, 0.0) for i in ids], np.float64)
        t = t.append_column("mesh_area_um2", pa.array(a, pa.float64()))
        t = t.select(TABLE_COLUMNS)
        write_table_atomic(t, workdir / "tables" / f"{p.name}.parquet", {"syngraph_step": STEP})
        summary["layers"][p.name] = {"mode": p.mode, "objects": t.num_rows, **mesh_summary.get(p.name, {})}
    write_table_atomic(overlap, workdir / "tables" / "overlap.parquet", {"syngraph_step": STEP})
    if ctx.scratch.exists():
        shutil.rmtree(ctx.scratch)
    summary["seconds"] = time.perf_counter() - t_all
    summary["peak_rss_mb"] = max([v["peak_rss_mb"] for v in passes.values()] + [0.0])
    summary["block_size_vx"] = list(ctx.block_size)
    summary["n_blocks"] = len(blocks)
    return summary


def _assemble_tasks(ctx: Ctx, mt: pa.Table | None, tables: dict[str, pa.Table], blocks: list[Block]) -> list[AssembleTask]:
    """Group objects by the block holding their bounding box's first corner (one task per block)."""
    if mt is None or mt.num_rows == 0:
        return []
    layer = np.array(mt.column("layer").to_pylist(), object)
    ids = mt.column("id").to_numpy()
    blk = mt.column("block").to_numpy()
    order = np.lexsort((blk, ids, np.searchsorted(sorted(set(layer)), layer)))
    groups: dict[int, list[tuple[str, int, tuple[int, ...]]]] = {}
    gs = [-(-s // b) for s, b in zip(ctx.shape_xyz, ctx.block_size, strict=True)]
    i = 0
    n = len(order)
    while i < n:
        j = i
        while j < n and layer[order[j]] == layer[order[i]] and ids[order[j]] == ids[order[i]]:
            j += 1
        bl = tuple(int(blk[order[k]]) for k in range(i, j))
        home = min(bl)
        groups.setdefault(home, []).append((str(layer[order[i]]), int(ids[order[i]]), bl))
        i = j
    del gs
    return [AssembleTask(k, tuple(v)) for k, v in sorted(groups.items())]
