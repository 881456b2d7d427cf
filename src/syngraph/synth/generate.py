"""``synthesize``: write a demo working directory with realistic toy tissue and full ground truth.

The pipeline, top to bottom:

1. :func:`~syngraph.synth.tissue.build_tissue` builds the global geometry (small arrays) from the
   seed and saves it to ``steps/synth/tissue.npz``;
2. the engine renders every block (:func:`~syngraph.synth.blocks.synth_block`) and writes all
   volume layers plus per-block statistics;
3. the statistics are reduced to the ground-truth tables (:mod:`syngraph.synth.truth`), the
   supervoxel graph ``rag.parquet`` and the config ``syngraph.toml``.

Same seed, shape and voxel size give the same bytes whatever the block size or worker count.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from syngraph.bbox import BBox, as_vec3
from syngraph.config import LayerSource, default_config, write_config
from syngraph.engine import Compute, align_block_size, block_grid, read_task_tables, run_tasks
from syngraph.engine.run import write_table_atomic
from syngraph.errors import InputError
from syngraph.io.volume import DEFAULT_CHUNKS_XYZ, create_layer
from syngraph.synth import truth
from syngraph.synth.blocks import VOLUME_LAYERS, load_indexed, read_block_tables, synth_block
from syngraph.synth.params import DEMO_SEED, SynthParams
from syngraph.synth.tissue import CELL_TYPES, build_tissue

STEP = "synth"
BIG_ID_OFFSET = 2**64 - 2**32  # ids above 2**63: the top of the uint64 range

LAYER_SPECS: dict[str, tuple[str, str, float | None]] = {
    # name: (dtype, kind, value_range)
    "sv": ("uint64", "labels", None),
    "mi": ("uint8", "probability", 255),
    "vc": ("uint8", "probability", 255),
    "sj": ("uint8", "probability", 255),
    "syn_type": ("uint8", "probability", 255),
    "myelin": ("uint8", "probability", 255),
    "gt_cells": ("uint64", "labels", None),
    "gt_mi": ("uint64", "labels", None),
    "gt_vc": ("uint64", "labels", None),
    "gt_sj": ("uint64", "labels", None),
    "gt_compartments": ("uint8", "labels", None),
    "gt_myelin": ("uint8", "mask", None),
}
assert set(LAYER_SPECS) == set(VOLUME_LAYERS)

DEMO_MIN_CC_SIZE_NM = 1000.0
"""Pruning threshold written into the demo config: the reference's 5000 nm would prune every cell
of a 256x256x128 volume (its diagonal is 4.8 um); 1000 nm prunes the border fragments."""


@dataclass
class SynthReport:
    """What :func:`synthesize` wrote, with counts and timings."""

    out_dir: str
    shape_xyz: tuple[int, int, int]
    voxel_size_nm: tuple[float, float, float]
    seed: int
    n_cells: int = 0
    cells_by_type: dict[str, int] = field(default_factory=dict)
    n_fragments: int = 0
    n_sv: int = 0
    n_true_edges: int = 0
    n_false_edges: int = 0
    n_synapses: int = 0
    n_symmetric: int = 0
    n_mi: int = 0
    n_vc: int = 0
    n_myelinated_cells: int = 0
    foreground_fraction: float = 0.0
    geometry_s: float = 0.0
    render_s: float = 0.0
    tables_s: float = 0.0
    total_s: float = 0.0
    mvx_per_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class SynthError(InputError):
    """Bad arguments to :func:`synthesize` or an output directory in the way."""


def _check_args(shape_xyz, voxel_size_nm, seed) -> tuple[tuple[int, int, int], tuple[float, float, float], int]:
    shape = as_vec3(shape_xyz, "shape_xyz")
    if any(s < 16 for s in shape):
        raise SynthError(f"shape_xyz {list(shape)} is too small: every axis needs >= 16 voxels (e.g. 128 128 64)")
    vs = tuple(float(v) for v in voxel_size_nm)
    if len(vs) != 3 or any(not np.isfinite(v) or v <= 0 for v in vs):
        raise SynthError(f"voxel_size_nm {list(vs)} must be 3 positive numbers (x, y, z in nm), e.g. 10 10 25")
    if int(seed) != seed or seed < 0:
        raise SynthError(f"seed must be a non-negative integer, got {seed!r}")
    return shape, vs, int(seed)  # type: ignore[return-value]


_OUTPUTS = ("syngraph.toml", "volumes.zarr", "gt", "tables", "meshes", "steps", "rag.parquet")


def synthesize(
    out_dir: str | Path,
    shape_xyz: Iterable[int] = (256, 256, 128),
    seed: int = DEMO_SEED,
    voxel_size_nm: Iterable[float] = (10, 10, 25),
    *,
    block_size_vx: Iterable[int] | None = None,
    chunks_xyz: Iterable[int] | None = None,
    compute: Compute | None = None,
    big_ids: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    params: SynthParams | None = None,
    organelle_maps: bool = True,
) -> SynthReport:
    """Write a demo working directory with synthetic tissue and its ground truth.

    Parameters
    ----------
    out_dir : the working directory to create (must not hold a project unless ``overwrite``).
    shape_xyz : volume shape in voxels (XYZ).
    seed : random seed; the same seed gives byte-identical outputs.
    voxel_size_nm : XYZ voxel size in nm (the tissue is built in nm, then rasterised).
    block_size_vx : block size of the rendering tasks (default: the config's, aligned to chunks).
    chunks_xyz : chunk shape of the layers (default: the store's default, 128x128x64).
    compute : where the tasks run (default: a local Dask cluster, see :class:`Compute`).
    big_ids : offset every supervoxel and cell id by 2**64 - 2**32 (tests 64-bit id handling).
    overwrite : replace an existing project in ``out_dir`` (its volumes, tables and steps).
    progress : show a progress bar (default: when stderr is a terminal).
    params : tissue parameters (densities, sizes); see :class:`SynthParams`.
    organelle_maps : list ``mi`` and ``vc`` as project layers (rendered and in ``gt/`` either way);
        presets (:mod:`syngraph.synth.presets`) set it with ``params`` and the voxel size.

    Writes ``syngraph.toml``, ``volumes.zarr/{sv,mi,vc,sj,syn_type,myelin,gt_*}``,
    ``rag.parquet`` and ``gt/{cells,sv_to_cell,sv_edges,synapses,skeletons,organelles}.parquet``
    (see docs/synth.md). An interrupted run resumes where it stopped when called again with the
    same arguments.
    """
    t_start = time.perf_counter()
    shape, vs, seed = _check_args(shape_xyz, voxel_size_nm, seed)
    params = params or SynthParams()
    out = Path(out_dir)
    step_dir = out / "steps" / STEP
    run_params = {"shape_xyz": list(shape), "voxel_size_nm": list(vs), "seed": seed,
                  "chunks_xyz": None if chunks_xyz is None else list(as_vec3(chunks_xyz)),
                  "big_ids": bool(big_ids), "params": params.to_dict()}
    complete = (out / "syngraph.toml").exists() and (out / "gt" / "cells.parquet").exists()
    started = (step_dir / "manifest.json").exists()
    if overwrite:
        for name in _OUTPUTS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    elif complete or (any((out / n).exists() for n in _OUTPUTS) and not started):
        raise SynthError(
            f"{out} already holds a syngraph project; pass overwrite=True (CLI: --overwrite) to "
            f"replace it, or choose another directory"
        )
    resume = started and not overwrite
    out.mkdir(parents=True, exist_ok=True)
    step_dir.mkdir(parents=True, exist_ok=True)

    # 1. global geometry
    t0 = time.perf_counter()
    tissue = build_tissue(shape, vs, seed, params)
    tissue_path = step_dir / "tissue.npz"
    tmp = step_dir / f"tissue.tmp{os.getpid()}.npz"
    np.savez(tmp, **tissue.to_npz_dict())
    tmp.replace(tissue_path)
    geometry_s = time.perf_counter() - t0

    # 2. render blockwise
    t0 = time.perf_counter()
    chunks = tuple(min(c, s) for c, s in zip(
        as_vec3(chunks_xyz if chunks_xyz is not None else DEFAULT_CHUNKS_XYZ, "chunks_xyz"), shape,
        strict=True))
    for name, (dtype, kind, value_range) in LAYER_SPECS.items():
        if resume and (out / "volumes.zarr" / name / "0" / "zarr.json").exists():
            continue
        create_layer(out, name, shape, dtype, vs, chunks_xyz=chunks, kind=kind,
                     value_range=value_range, overwrite=True)
    if block_size_vx is None:
        block_size_vx = default_config(vs).compute.block_size_vx
    bs = align_block_size(as_vec3(block_size_vx, "block_size_vx"), chunks)
    blocks = block_grid(BBox.from_shape(shape), bs)
    id_offset = BIG_ID_OFFSET if big_ids else 0
    fn = functools.partial(synth_block, workdir=str(out), tissue_path=str(tissue_path),
                           id_offset=id_offset, params=params, volume_shape=shape)
    run_tasks(fn, blocks, step_dir, params=run_params, compute=compute, desc="synth",
              progress=progress)
    render_s = time.perf_counter() - t0

    # 3. ground truth and the supervoxel graph
    t0 = time.perf_counter()
    ix = load_indexed(str(tissue_path), id_offset, tissue_path.stat().st_mtime)
    sv = truth.sv_table(ix, read_block_tables(step_dir, "sv"))
    cells = truth.cells_table(ix, sv)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xED6E]))
    sv_edges, rag, contacts = truth.edges(ix, sv, read_block_tables(step_dir, "pairs"), 0.3, rng)
    synapses = truth.synapses_table(ix, read_block_tables(step_dir, "syn_faces"),
                                    read_block_tables(step_dir, "syn_sides"),
                                    read_block_tables(step_dir, "syn_point"), sv)
    organelles = truth.organelles_table(ix, read_block_tables(step_dir, "organelles"))
    skeletons = truth.skeletons_table(ix, np.unique(sv["cell_index"].to_numpy()))
    meta = {"seed": str(seed), "shape_xyz": str(list(shape)), "voxel_size_nm": str(list(vs)),
            "generator": "syngraph.synth"}
    gt = out / "gt"
    write_table_atomic(cells, gt / "cells.parquet", meta)
    write_table_atomic(pa.table({"sv_id": sv["sv_id"], "cell_id": sv["cell_id"]}),
                       gt / "sv_to_cell.parquet", meta)
    write_table_atomic(sv.drop(["cell_index"]), gt / "sv.parquet", meta)
    write_table_atomic(sv_edges, gt / "sv_edges.parquet", meta)
    write_table_atomic(contacts, gt / "sv_contacts.parquet", meta)
    write_table_atomic(synapses, gt / "synapses.parquet", meta)
    write_table_atomic(skeletons, gt / "skeletons.parquet", meta)
    write_table_atomic(organelles, gt / "organelles.parquet", meta)
    write_table_atomic(rag, out / "rag.parquet", meta)
    cfg = default_config(vs)
    cfg.layers = {
        "sv": LayerSource(path="sv", kind="labels"),
        "mi": LayerSource(path="mi"),
        "vc": LayerSource(path="vc"),
        "sj": LayerSource(path="sj"),
        "syn_type": LayerSource(path="syn_type"),
        "myelin": LayerSource(path="myelin"),
    }
    if not organelle_maps:
        cfg.layers = {k: v for k, v in cfg.layers.items() if k not in ("mi", "vc")}
    cfg.rag = "rag.parquet"
    cfg.cells.min_cc_size_nm = DEMO_MIN_CC_SIZE_NM
    write_config(out, cfg)
    tables_s = time.perf_counter() - t0

    summary = read_task_tables(step_dir)
    fg = int(pa.compute.sum(summary["foreground_vx"]).as_py()) if summary is not None else 0
    n_vox = int(np.prod(shape))
    types = cells["type"].to_pylist()
    signs = synapses["sign"].to_numpy()
    myelinated = set(skeletons.filter(skeletons["myelin"])["cell_id"].to_pylist())
    total = time.perf_counter() - t_start
    return SynthReport(
        out_dir=str(out), shape_xyz=shape, voxel_size_nm=vs, seed=seed,
        n_cells=cells.num_rows,
        cells_by_type={t: types.count(t) for t in CELL_TYPES},
        n_fragments=int(np.sum(cells["fragment"].to_numpy())),
        n_sv=sv.num_rows, n_true_edges=sv_edges.num_rows,
        n_false_edges=rag.num_rows - sv_edges.num_rows,
        n_synapses=synapses.num_rows, n_symmetric=int(np.sum(signs < 0)),
        n_mi=int(np.sum(organelles["layer"].to_numpy(zero_copy_only=False) == "mi")),
        n_vc=int(np.sum(organelles["layer"].to_numpy(zero_copy_only=False) == "vc")),
        n_myelinated_cells=len(myelinated),
        foreground_fraction=fg / n_vox,
        geometry_s=geometry_s, render_s=render_s, tables_s=tables_s, total_s=total,
        mvx_per_s=n_vox / 1e6 / total,
    )
