"""What a run checks before it starts (``syngraph config check`` and ``syngraph run``).

Beyond what loading syngraph.toml validates (types, unknown keys): every parameter's range, every
layer named in ``[layers]`` (exists, metadata readable, dtype for its kind, shape and voxel size
those of ``sv`` and the config), every file named (``rag``, models), and the scheduler address.
Each problem is one line naming the key, layer or file, the bad value and the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from syngraph.config import ConfigError, ProjectConfig, SkeletonParams, load_config, project_path

# unitless fractions and probabilities (any key ending so, e.g. sym_threshold, ratio_min)
FRACTION_KEYS = ("threshold", "ratio_min", "ratio_max", "_frac", "fraction")
LABEL_DTYPES = ("uint8", "uint16", "uint32", "uint64")


def _leaves(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """``(dotted key, field name, value)`` of every scalar or tuple in the config."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            yield from _leaves(value, key + ".")
        elif isinstance(value, dict):
            for k, sub in value.items():
                if isinstance(sub, BaseModel):
                    yield from _leaves(sub, f"{key}.{k}.")
        else:
            yield key, name, value


def _range_problem(key: str, name: str, value: Any) -> str | None:
    """The rule for one parameter, from its name: fractions in [0, 1], downsampling and sizes >= 1,
    unit-suffixed quantities and counts >= 0, finite numbers."""
    if isinstance(value, bool) or value is None or isinstance(value, str | list):
        return None
    values = list(value) if isinstance(value, tuple) else [value]
    if not all(isinstance(v, int | float) and np.isfinite(v) for v in values):
        return f"[{key}] = {value!r} must be finite numbers"
    if name.endswith(FRACTION_KEYS) and not name.endswith(("_nm", "_vx")):
        lo, hi = 0.0, 1.0
    elif "downsample" in name or name.endswith(("block_size_vx", "factor", "filter_size_vx", "box_vx")):
        lo, hi = 1, None
    elif name == "smooth_weight":
        lo, hi = 0.0, 0.5
    else:
        lo, hi = 0, None
    if any(v < lo or (hi is not None and v > hi) for v in values):
        rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        return f"[{key}] = {list(value) if isinstance(value, tuple) else value} is out of range: each value must be {rng}"
    return None


def parameter_problems(cfg: ProjectConfig) -> list[str]:
    """Out-of-range parameters and malformed compute settings."""
    problems = [p for key, name, value in _leaves(cfg) if (p := _range_problem(key, name, value))]
    mem = cfg.compute.memory_limit
    if mem != "auto":
        from dask.utils import parse_bytes

        try:
            ok = parse_bytes(mem) > 0
        except (ValueError, TypeError):
            ok = False
        if not ok:
            problems.append(f'[compute.memory_limit] = "{mem}" is not a memory size; use "auto" or e.g. "4GiB"')
    for name, org in cfg.organelles.items():
        if org.ratio_min > org.ratio_max:
            problems.append(f"[organelles.{name}] ratio_min {org.ratio_min} > ratio_max {org.ratio_max}; "
                            f"the cell assignment would keep nothing")
    if problem := block_problem(cfg.skeletons, cfg.voxel_size_nm):
        problems.append(problem)
    return problems


def block_problem(p: SkeletonParams, voxel_size_nm: tuple[float, float, float]) -> str | None:
    """``[skeletons.block_size_vx]`` not a multiple of the downsampling for ``voxel_size_nm``, or None."""
    ds = p.downsample_for(voxel_size_nm)
    block = p.block_size_vx
    if min(ds) < 1 or not any(b % d for b, d in zip(block, ds, strict=True)):
        return None
    fix = [max(d, b // d * d) for b, d in zip(block, ds, strict=True)]
    return (f"[skeletons.block_size_vx] = {list(block)} must be a multiple of "
            f"[skeletons.downsample] = {list(ds)}; e.g. {fix}")


def layer_problems(workdir: Path, cfg: ProjectConfig) -> list[str]:
    """``[layers.sv]`` and every layer in ``[layers]``: present, readable, dtype for its kind, on the sv grid."""
    from syngraph.io.volume import VolumeError, open_layer

    problems: list[str] = []
    if "sv" not in cfg.layers:
        problems.append(f'no [layers.sv]; every step needs the cell supervoxels: add [layers.sv] path = "sv", '
                        f'kind = "labels" and `syngraph import sv SOURCE --wd {workdir}`')
    opened = {}
    for key, src in cfg.layers.items():
        name = src.path or key
        try:
            lay = open_layer(workdir, name)
        except VolumeError as exc:
            problems.append(f"layer '{key}' is named in [layers] but unusable: {exc}; or remove it from [layers]")
            continue
        opened[key] = lay
        dtype = lay.info.dtype
        if src.kind == "labels" and dtype not in LABEL_DTYPES:
            problems.append(f"layer '{key}' ({lay.path}) is [layers.{key}] kind labels but has dtype {dtype}; "
                            f"re-import it with `syngraph import {key} SOURCE --kind labels --overwrite`")
        if src.kind == "probability" and dtype not in ("uint8", "float32"):
            problems.append(f"layer '{key}' ({lay.path}) is a probability map of dtype {dtype}; "
                            f"re-import it as uint8 (0-255) or float (0-1) with --overwrite")
        meta = lay.path / "0" / "zarr.json"
        try:
            import json

            shape = json.loads(meta.read_text())["shape"]
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"layer '{key}': array metadata {meta} is unreadable ({exc}); "
                            f"re-import the layer with `syngraph import {key} SOURCE --overwrite`")
            continue
        if list(shape)[::-1] != list(lay.info.shape_xyz):
            problems.append(f"layer '{key}': array shape {shape[::-1]} (x, y, z) differs from its attributes "
                            f"{list(lay.info.shape_xyz)}; re-import the layer with --overwrite")
        if not np.allclose(lay.info.voxel_size_nm, cfg.voxel_size_nm, rtol=1e-6):
            problems.append(f"layer '{key}' has voxel size {list(lay.info.voxel_size_nm)} nm but voxel_size_nm "
                            f"in syngraph.toml is {list(cfg.voxel_size_nm)}; fix voxel_size_nm or re-import "
                            f"the layer with --voxel-size-nm")
    sv = opened.get("sv")
    for key, lay in opened.items():
        if sv is not None and key != "sv" and lay.info.shape_xyz != sv.info.shape_xyz:
            problems.append(f"layer '{key}' has shape {list(lay.info.shape_xyz)} but sv has "
                            f"{list(sv.info.shape_xyz)}; re-import it on the sv grid (crop or pad the source)")
    return problems


def file_problems(workdir: Path, cfg: ProjectConfig) -> list[str]:
    """The files syngraph.toml names: the rag (format readable), the models (load)."""
    from syngraph.errors import InputError

    problems: list[str] = []
    if cfg.rag:
        path = project_path(workdir, cfg.rag)
        if not path.is_file():
            problems.append(f'rag = "{cfg.rag}": {path} does not exist; fix the path (relative to the '
                            f"working directory) or remove the key")
        else:
            problem = _rag_problem(path)
            if problem:
                problems.append(f'rag = "{cfg.rag}": {problem}')
    from syngraph.models import astrocyte, celltypes, compartments, embeddings
    from syngraph.models.files import load_model_file
    from syngraph.models.synapse import load_forest

    for key, name, load in (("cells.astrocyte_model", cfg.cells.astrocyte_model, astrocyte.load_model),
                            ("compartments.model", cfg.compartments.model, compartments.load_model),
                            ("celltypes.model", cfg.celltypes.model, celltypes.load_model),
                            ("embeddings.model", cfg.embeddings.model, embeddings.load_encoders),
                            ("synapses.model", cfg.synapses.model, load_forest)):
        if not name:
            continue
        try:
            load_model_file(load, project_path(workdir, name), key)
        except (InputError, ImportError) as exc:
            problems.append(str(exc))
    return problems


def _rag_problem(path: Path) -> str | None:
    """Whether the rag file's header reads in its format (the edges are checked by the rag step)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_schema(path)
        elif suffix == ".npy":
            np.load(path, mmap_mode="r", allow_pickle=False)
        elif suffix not in (".csv", ".tsv", ".txt"):
            return f"unknown format '{suffix}'; use .csv/.tsv/.txt, .npy or .parquet"
    except Exception as exc:  # each reader has its own error types
        return f"{path} is not a readable {suffix} file ({type(exc).__name__}: {exc}); write it again"
    return None


def check_project(workdir: str | Path, scheduler: str | None = None) -> ProjectConfig:
    """Load syngraph.toml and check everything above; raise :class:`ConfigError` listing every
    problem (one line each). ``scheduler`` overrides ``[compute] scheduler``."""
    from syngraph.engine.compute import SchedulerAddressError, check_scheduler

    wd = Path(workdir)
    cfg = load_config(wd)
    problems = parameter_problems(cfg) + layer_problems(wd, cfg) + file_problems(wd, cfg)
    if len(problems) == 1:
        raise ConfigError(f"{wd / 'syngraph.toml'}: {problems[0]}")
    if problems:
        raise ConfigError("\n".join([f"{wd / 'syngraph.toml'}: {len(problems)} problems",
                                      *(f"  {p}" for p in problems)]))
    try:
        check_scheduler(scheduler or cfg.compute.scheduler)
    except SchedulerAddressError as exc:
        raise ConfigError(f"[compute.scheduler]: {exc}") from exc
    return cfg
