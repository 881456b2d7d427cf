"""``syngraph import``: copy a volume blockwise from what a lab has into the working store.

The pipeline, top to bottom:

1. :func:`~syngraph.io.sources.open_source` reads the source's metadata (no voxel data).
2. :func:`plan_import` checks it against the layer kind and the project (dtype, shape, voxel
   size) and decides the stored dtype; every error here is raised before anything is written.
3. :func:`import_layer` creates the layer (or reopens a half-finished import) and runs
   :func:`copy_block` over a block grid aligned to the layer's chunks with
   :func:`syngraph.engine.run_tasks`, so an interrupted import resumes where it stopped and
   memory is bounded by one block per worker. Each task opens the source itself.

State of a run: ``<workdir>/steps/import_<layer>/`` (done markers, see syngraph.engine.run), and
``runs.json`` there: wall seconds, ``cpu_s`` and peak memory of each attempt, as the steps record them
(:mod:`syngraph.engine.records`).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from syngraph.bbox import BBox, Vec3, as_vec3
from syngraph.config import CONFIG_NAME, ComputeParams, add_layer, load_config
from syngraph.engine import (
    Block,
    Compute,
    TaskFailure,
    align_block_size,
    block_grid,
    is_done,
    run_tasks,
)
from syngraph.engine.records import StepRun
from syngraph.io.sources import SPATIAL, Source, SourceError, open_source
from syngraph.io.volume import DEFAULT_CHUNKS_XYZ, Layer, create_layer, list_layers, open_layer

Kind = Literal["labels", "probability", "mask"]
KINDS: tuple[str, ...] = ("labels", "probability", "mask")
UNSIGNED = ("uint8", "uint16", "uint32", "uint64")
SIGNED = ("int8", "int16", "int32", "int64")


@dataclass(frozen=True)
class ImportPlan:
    """What will be written: the layer's dtype, shape, voxel size and chunking, and the
    per-block checks (``check_negative`` for signed labels, ``check_nan`` for float maps)."""

    name: str
    kind: str
    dtype: str
    shape_xyz: Vec3
    voxel_size_nm: tuple[float, float, float]
    chunks_xyz: Vec3
    block_size_vx: Vec3
    value_range: float | None
    check_negative: bool = False
    check_nan: bool = False


def step_name(name: str) -> str:
    return f"import_{name}"


def stored_dtype(kind: str, dtype: str, layer: str, source: str) -> tuple[str, bool, bool]:
    """The dtype a source of ``dtype`` is stored as, and whether blocks need a negative / NaN check.

    >>> stored_dtype("labels", "int64", "sv", "seg.h5")
    ('uint64', True, False)
    >>> stored_dtype("probability", "float64", "mi", "mi.zarr")
    ('float32', False, True)
    """
    if kind == "labels":
        if dtype in UNSIGNED:
            return dtype, False, False
        if dtype in SIGNED:
            return "uint64", True, False
        raise SourceError(
            f"layer '{layer}': {source} has dtype {dtype}; labels must be unsigned integers "
            f"(uint8/16/32/64; signed integers without negative values are cast to uint64). "
            f"Convert the source, or import it as kind='probability' or 'mask'"
        )
    if kind == "probability":
        if dtype == "uint8":
            return "uint8", False, False
        if dtype in ("float32", "float64"):
            return "float32", False, True
        raise SourceError(
            f"layer '{layer}': {source} has dtype {dtype}; probability maps must be uint8 "
            f"(0..255) or float32/float64 (0..1, stored as float32). Convert the source"
        )
    if kind == "mask":
        if dtype in ("bool", "uint8"):
            return "uint8", False, False
        raise SourceError(
            f"layer '{layer}': {source} has dtype {dtype}; masks must be bool or uint8. "
            f"Convert the source, or import it as kind='labels'"
        )
    raise SourceError(f"layer '{layer}': kind '{kind}' is not one of {', '.join(KINDS)}")


def _same_voxel(a: Sequence[float], b: Sequence[float]) -> bool:
    return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-6, atol=0))


def plan_import(
    workdir: str | Path,
    name: str,
    src: Source,
    *,
    kind: str = "labels",
    voxel_size_nm: Iterable[float] | None = None,
    block_size_vx: int | Iterable[int] | None = None,
    chunks_xyz: int | Iterable[int] | None = None,
) -> ImportPlan:
    """Validate ``src`` against the project in ``workdir``; raise :class:`SourceError` on a problem."""
    workdir = Path(workdir)
    if "/" in name or name in ("", ".", ".."):
        raise SourceError(f"layer name '{name}' is not a plain name; use e.g. 'sv' or 'mi'")
    dtype, check_negative, check_nan = stored_dtype(kind, src.dtype, name, src.name)

    config = load_config(workdir) if (workdir / CONFIG_NAME).exists() else None
    others = [n for n in list_layers(workdir) if n != name]
    # voxel size: metadata > argument > syngraph.toml > the project's other layers
    given = None if voxel_size_nm is None else tuple(float(v) for v in voxel_size_nm)
    if given is not None and (len(given) != 3 or any(not np.isfinite(v) or v <= 0 for v in given)):
        raise SourceError(
            f"layer '{name}': voxel_size_nm {list(given)} must be 3 positive numbers (x, y, z in nm)"
        )
    if src.voxel_size_nm is not None:
        voxel = src.voxel_size_nm
        if given is not None and not _same_voxel(given, voxel):
            raise SourceError(
                f"layer '{name}': voxel_size_nm {list(given)} was given but {src.name} says "
                f"{list(voxel)} (x, y, z nm) in its metadata; drop the argument to use the "
                f"source's value, or fix the source's metadata"
            )
    elif given is not None:
        voxel = given  # type: ignore[assignment]
    elif config is not None:
        voxel = tuple(config.voxel_size_nm)  # type: ignore[assignment]
    elif others:
        voxel = open_layer(workdir, others[0], partial=True).info.voxel_size_nm
    else:
        raise SourceError(
            f"layer '{name}': {src.name} does not say its voxel size and there is no "
            f"{CONFIG_NAME} in {workdir}; pass voxel_size_nm=(x, y, z) (CLI: --voxel-size-nm X Y Z)"
        )
    if config is not None and not _same_voxel(config.voxel_size_nm, voxel):
        raise SourceError(
            f"layer '{name}': {src.name} has voxel size {list(voxel)} nm but {workdir / CONFIG_NAME} "
            f"says voxel_size_nm = {list(config.voxel_size_nm)}; resample the source or fix the config"
        )
    for other in others:
        info = open_layer(workdir, other, partial=True).info
        if tuple(info.shape_xyz) != tuple(src.shape_xyz):
            raise SourceError(
                f"layer '{name}': {src.name} has shape {list(src.shape_xyz)} (x, y, z) but layer "
                f"'{other}' in {workdir} has {list(info.shape_xyz)}; all layers of a project share "
                f"one shape: crop or pad the source (or check axes=, the axis order)"
            )
        if not _same_voxel(info.voxel_size_nm, voxel):
            raise SourceError(
                f"layer '{name}': {src.name} has voxel size {list(voxel)} nm but layer '{other}' has "
                f"{list(info.voxel_size_nm)}; all layers of a project share one voxel size"
            )

    chunks = as_vec3(chunks_xyz if chunks_xyz is not None else DEFAULT_CHUNKS_XYZ, "chunks_xyz")
    if any(c <= 0 for c in chunks):
        raise SourceError(f"layer '{name}': chunks_xyz {list(chunks)} must be positive")
    chunks = tuple(min(c, s) for c, s in zip(chunks, src.shape_xyz, strict=True))  # type: ignore[assignment]
    if block_size_vx is None and src.plane_axis is not None:
        # a read decodes whole planes: copy slabs of full planes, one chunk deep, each decoded once
        axis = SPATIAL.index(src.plane_axis)
        block = tuple(chunks[i] if i == axis else src.shape_xyz[i] for i in range(3))
    elif block_size_vx is None:
        block = config.compute.block_size_vx if config is not None else ComputeParams().block_size_vx
    else:
        block = as_vec3(block_size_vx, "block_size_vx")
    if any(b <= 0 for b in block):
        raise SourceError(f"layer '{name}': block_size_vx {list(block)} must be positive")
    value_range = {"probability": 255.0 if dtype == "uint8" else 1.0}.get(kind)
    return ImportPlan(
        name=name, kind=kind, dtype=dtype, shape_xyz=src.shape_xyz, voxel_size_nm=voxel,
        chunks_xyz=chunks, block_size_vx=align_block_size(block, chunks),
        value_range=value_range, check_negative=check_negative, check_nan=check_nan,
    )


def convert_block(data: np.ndarray, plan: ImportPlan, where: str) -> np.ndarray:
    """Check one block read from the source and cast it to the stored dtype."""
    if plan.check_negative and data.size and data.min() < 0:
        bad = np.argwhere(data < 0)[0]
        raise SourceError(
            f"layer '{plan.name}': {where} has negative label {int(data[tuple(bad)])} (e.g. at block "
            f"voxel {bad.tolist()}); labels must be >= 0: relabel the source (0 = background)"
        )
    if plan.check_nan and not np.isfinite(data).all():
        bad = np.argwhere(~np.isfinite(data))[0]
        raise SourceError(
            f"layer '{plan.name}': {where} has non-finite values ({data[tuple(bad)]} first at block voxel "
            f"{bad.tolist()}); probability maps must be finite: replace NaN and inf (e.g. np.nan_to_num) "
            f"in the source"
        )
    if plan.check_nan and plan.kind == "probability" and data.size and plan.value_range is not None:
        lo, hi = float(data.min()), float(data.max())
        if lo < 0 or hi > plan.value_range:
            raise SourceError(
                f"layer '{plan.name}': {where} has values in [{lo:g}, {hi:g}], outside [0, {plan.value_range:g}]; "
                f"float probability maps hold 0..1 (uint8 maps 0..255): rescale the source, or import it as "
                f"--kind mask"
            )
    if data.dtype == plan.dtype:
        return data
    return data.astype(plan.dtype)


def copy_block(block: Block, source: Source, layer: Layer, plan: ImportPlan) -> None:
    """Read ``block.core`` from the source, check it, write it to the layer (idempotent)."""
    data = source.read(block.core)
    where = f"{source.name} block {block.core.to_list()}"
    layer.write(convert_block(data, plan, where), block.core.start)


def import_layer(
    workdir: str | Path,
    name: str,
    source: str | os.PathLike[str] | np.ndarray,
    *,
    kind: Kind = "labels",
    voxel_size_nm: Iterable[float] | None = None,
    axes: str | Sequence[str] | None = None,
    dataset: str | None = None,
    block_size_vx: int | Iterable[int] | None = None,
    chunks_xyz: int | Iterable[int] | None = None,
    compute: Compute | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Layer:
    """Copy ``source`` blockwise into layer ``name`` of ``<workdir>/volumes.zarr``.

    Parameters
    ----------
    workdir : path
        The project's working directory (``volumes.zarr`` is created if missing).
    name : str
        Layer name, e.g. ``"sv"``, ``"mi"``.
    source : path, URL or numpy array
        See :func:`syngraph.io.sources.open_source`. A numpy array is **XYZ** unless
        ``axes="zyx"`` says otherwise, and is copied in this process (never sent to workers).
    kind : {"labels", "probability", "mask"}
        labels: unsigned integers, stored as they are (signed ones without negative values are
        stored as uint64); probability: uint8 (0..255) or float (0..1, stored as float32);
        mask: bool or uint8, stored as uint8.
    voxel_size_nm : (x, y, z), optional
        In nm. Used when the source's metadata has none; otherwise it must agree with it.
        Falls back to ``voxel_size_nm`` of ``syngraph.toml``, then to the other layers'.
    axes : str, optional
        The source's axis order (``"zyx"``, ``"xyz"``, ``"czyx"``), overriding its metadata;
        required for sources that do not state it (``.npy``, HDF5 and Zarr arrays without axis
        names): syngraph never guesses.
    dataset : str, optional
        Array key inside a Zarr/N5 group or HDF5 file, or a precomputed scale key.
    block_size_vx : (x, y, z), optional
        Voxels per copy task (default: ``compute.block_size_vx`` of the config), rounded up to
        a multiple of ``chunks_xyz``.
    chunks_xyz : (x, y, z), optional
        Chunk shape of the stored layer (default 128x128x64).
    compute : Compute, optional
        Where the copy tasks run (default: a local Dask cluster).
    overwrite : bool
        Replace an existing layer. Without it an existing, completely imported layer is an
        error, and a half-finished import (same source and parameters) resumes.
    progress : bool, optional
        Show a progress bar (default: when stderr is a terminal).

    Returns
    -------
    Layer
        The imported layer. If ``syngraph.toml`` exists and does not list it, ``[layers.<name>]``
        is appended to it.
    """
    workdir = Path(workdir)
    if kind not in KINDS:
        raise SourceError(f"layer '{name}': kind '{kind}' is not one of {', '.join(KINDS)}")
    src = open_source(source, dataset=dataset, axes=axes)
    plan = plan_import(workdir, name, src, kind=kind, voxel_size_nm=voxel_size_nm,
                       block_size_vx=block_size_vx, chunks_xyz=chunks_xyz)
    step_dir = workdir / "steps" / step_name(name)
    exists = name in list_layers(workdir)
    restart = overwrite or not exists
    if exists and not overwrite:
        if not (step_dir / "manifest.json").exists() or is_done(step_dir):
            raise SourceError(
                f"layer '{name}' already exists in {workdir / 'volumes.zarr'}; pass overwrite=True "
                f"(CLI: --overwrite) to import it again"
            )
        layer = open_layer(workdir, name, partial=True)
        i = layer.info
        have = (tuple(i.shape_xyz), i.dtype, tuple(i.chunks_xyz), i.kind)
        want = (tuple(plan.shape_xyz), plan.dtype, tuple(plan.chunks_xyz), plan.kind)
        if have != want or not _same_voxel(i.voxel_size_nm, plan.voxel_size_nm):
            raise SourceError(
                f"layer '{name}': a half-finished import in {step_dir} wrote shape/dtype/chunks/kind "
                f"{have}, this import needs {want}; pass overwrite=True (CLI: --overwrite) to start over"
            )
    else:
        layer = create_layer(
            workdir, name, plan.shape_xyz, plan.dtype, plan.voxel_size_nm,
            chunks_xyz=plan.chunks_xyz, kind=plan.kind, value_range=plan.value_range,
            overwrite=overwrite,
        )
    if src.format == "array":
        compute = Compute(scheduler="serial")  # the data lives in this process
    if plan.check_negative:
        warnings.warn(
            f"layer '{name}': {src.name} has signed dtype {src.dtype}; storing as uint64 "
            f"(negative values raise an error)", stacklevel=2,
        )
    blocks = block_grid(BBox.from_shape(plan.shape_xyz), plan.block_size_vx)
    params = {
        "source": src.name, "format": src.format, "axes": "".join(src.axes),
        "source_dtype": src.dtype, **{k: v for k, v in asdict(plan).items()},
    }
    fn = functools.partial(copy_block, source=src, layer=layer, plan=plan)
    try:
        with StepRun(step_dir, overwrite=restart):  # steps/import_<name>/runs.json: seconds, cpu_s, peak memory
            run_tasks(fn, blocks, step_dir, params=params, compute=compute, overwrite=restart,
                      desc=f"import {name}", progress=progress)
    except TaskFailure as exc:
        cause = exc.__cause__
        if isinstance(cause, SourceError):
            raise SourceError(
                f"{cause} (import of layer '{name}' stopped; the layer is partly written: fix the "
                f"source and run the same import again to resume, or pass overwrite=True / --overwrite)"
            ) from exc
        raise
    add_layer(workdir, name, plan.kind)  # so syngraph.toml [layers] lists what the run will use
    return open_layer(workdir, name)
