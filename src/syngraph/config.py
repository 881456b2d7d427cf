"""The project config (``syngraph.toml`` in the working directory), validated with pydantic.

Defaults live here and nowhere else; ``syngraph config init`` writes them as a commented TOML
file generated from these models, and docs/config.md is generated the same way.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CONFIG_NAME = "syngraph.toml"


class ConfigError(ValueError):
    """The config file is missing or has a bad key or value."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LayerSource(_Model):
    """One input layer."""

    path: str = Field(
        description="Source of the layer: a layer name in volumes.zarr (default: the layer's own "
        "name), or any path `syngraph import` reads (zarr, n5, precomputed, h5, tif, npy)"
    )
    kind: Literal["labels", "probability", "mask"] = Field(
        "probability", description="labels (instance ids), probability (map) or mask (binary)"
    )


class OrganelleParams(_Model):
    """Instance segmentation and cell assignment of one organelle layer (reference defaults)."""

    threshold: float = Field(description="fraction of full scale; foreground is prob > threshold")
    min_size_vx: int = Field(description="objects smaller than this (voxels) are dropped")
    min_seed_vx: int = Field(10, description="watershed seeds smaller than this are dropped")
    opening: int = Field(1, description="iterations of binary opening")
    closing: int = Field(1, description="iterations of binary closing")
    erosions: int = Field(0, description="erosions for watershed seeds; 0 = connected components")
    connectivity: Literal[6, 18, 26] = Field(
        6, description="voxel connectivity of objects and watershed seeds (reference: 6)"
    )
    mesh_downsample: tuple[int, int, int] = Field((4, 4, 2), description="XYZ mesh downsampling")
    ratio_min: float = Field(description="cell assignment: overlap ratio must be > this")
    ratio_max: float = Field(1.0, description="cell assignment: overlap ratio must be <= this")
    assign_min_size_vx: int = Field(description="cell assignment: organelle size must be > this")


def _default_organelles() -> dict[str, OrganelleParams]:
    return {
        "mi": OrganelleParams(
            threshold=0.428571429, min_size_vx=500, min_seed_vx=50, erosions=4,
            ratio_min=0.5, ratio_max=1.0, assign_min_size_vx=2786,
        ),
        "vc": OrganelleParams(
            threshold=0.285714286, min_size_vx=100, min_seed_vx=10, erosions=0,
            ratio_min=0.5, ratio_max=1.0, assign_min_size_vx=1584,
        ),
        "sj": OrganelleParams(
            threshold=0.19047619, min_size_vx=100, min_seed_vx=10, erosions=0,
            mesh_downsample=(2, 2, 1), ratio_min=0.1, ratio_max=0.9, assign_min_size_vx=498,
        ),
    }


class MeshParams(_Model):
    sv_downsample: tuple[int, int, int] = Field((4, 4, 2), description="XYZ downsampling of cell supervoxel meshes")
    simplification_factor: int = Field(50, description="zmesh target reduction factor")
    max_error_nm: float = Field(40.0, description="zmesh maximum simplification error in nm")
    simplify: bool = Field(True, description="simplify meshes (costs ~23x the meshing itself)")
    exclude: list[str] = Field(
        default_factory=list, description='layers not to mesh, their mesh_area_um2 then NaN; ["sv"] saves about a '
        "fifth of init where no one needs supervoxel meshes (the viewer shows cells with meshes/cells)",
    )


class CellParams(_Model):
    min_cc_size_nm: float = Field(
        5000.0, description="prune components whose bounding-box diagonal (nm) is <= this; 0 = off"
    )
    astrocyte_threshold: float = Field(0.5, description="astrocyte probability threshold")
    max_component_sv: int = Field(
        0, description="error if a component of the input graph has more supervoxels than this; 0 = no limit"
    )
    astrocyte_model: str | None = Field(
        None, description="astrocyte classifier (.npz written by `syngraph train astrocytes`); none = the built-in default"
    )
    mesh: bool = Field(True, description="write a welded, closed mesh per cell to meshes/cells/")


class SkeletonParams(_Model):
    """TEASAR skeletons with kimimaro (reference parameters), joined exactly across blocks."""

    teasar_scale: float = Field(1.0, description="TEASAR invalidation ball: radius = scale * DBF + const (the reference uses 2; 1 reaches side branches such as spines and boutons, see docs/skeletons.md)")
    teasar_const_nm: float = Field(500.0, description="TEASAR invalidation ball constant in nm")
    pdrf_exponent: int = Field(4, description="TEASAR penalty field exponent")
    pdrf_scale: float = Field(100000.0, description="TEASAR penalty field scale")
    soma_detection_threshold_nm: float = Field(1000.0, description="DBF above this (nm) tests for a soma")
    soma_acceptance_threshold_nm: float = Field(3000.0, description="DBF above this (nm) is a soma")
    soma_invalidation_scale: float = Field(1.0, description="soma invalidation ball scale")
    soma_invalidation_const_nm: float = Field(2000.0, description="soma invalidation ball constant in nm")
    max_paths: int = Field(100, description="TEASAR paths per piece per block, besides one per border target")
    astrocyte_teasar_const_nm: float = Field(
        50.0,
        description="TEASAR invalidation ball constant in nm for cells of kind astrocyte (tables/cells.parquet): "
        "their thin processes branch every ~0.7 um, and the reference's 500 nm never targets a branch "
        "shorter than 2 r + const; neurons keep teasar_const_nm",
    )
    astrocyte_max_paths: int = Field(
        300, description="TEASAR paths per piece per block for cells of kind astrocyte (see astrocyte_teasar_const_nm)"
    )
    dust_threshold_vx: int = Field(
        1000, description="trees of fewer voxels (at skeleton resolution, summed over blocks) are dropped, "
        "unless they reach the volume border"
    )
    downsample: tuple[int, int, int] | None = Field(
        None,
        description="XYZ downsampling (striding) before TEASAR; none = from the voxel size: per axis the "
        "largest divisor of block_size_vx that is at most floor(skeleton_voxel_nm / side), at least 1 "
        "(8x8x1 at 4x4x40 nm, 4x4x1 at 6x6x30 and 8x8x40 nm, 2x2x1 at 10x10x25 and 16x16x40 nm)",
    )
    skeleton_voxel_nm: float = Field(
        32.0,
        description="largest skeleton voxel side when downsample is none: the thinnest neurites "
        "(radius ~50 nm, 100 nm across) stay >= 3 voxels across; 20 costs 6x the CPU at 16x16x40 nm "
        "for the same scores (docs/skeletons.md)",
    )
    block_size_vx: tuple[int, int, int] = Field(
        (256, 256, 256),
        description="XYZ block size in full-resolution voxels (a multiple of downsample); "
        "a worker needs about 60 bytes per downsampled voxel of a block; blocks are the unit of "
        "parallel work (a 512x512x256 volume is 4 blocks)",
    )

    def downsample_for(self, voxel_size_nm: tuple[float, float, float]) -> tuple[int, int, int]:
        """The XYZ downsampling for a voxel size: ``downsample``, or per axis the largest divisor of
        ``block_size_vx`` that is at most ``floor(skeleton_voxel_nm / side)`` (at least 1).

        >>> SkeletonParams().downsample_for((8.0, 8.0, 40.0))
        (4, 4, 1)
        >>> SkeletonParams().downsample_for((10.0, 10.0, 25.0))  # 3 does not divide 256
        (2, 2, 1)
        """
        if self.downsample is not None:
            return tuple(int(d) for d in self.downsample)  # type: ignore[return-value]
        caps = (max(1, int(self.skeleton_voxel_nm // float(v))) for v in voxel_size_nm)
        return tuple(  # type: ignore[return-value]
            max(d for d in range(1, cap + 1) if block % d == 0)
            for cap, block in zip(caps, self.block_size_vx, strict=True)
        )
    edt_halo_nm: float = Field(
        500.0, description="halo (nm) read around a block for the distance-to-boundary field (radii)"
    )
    dust_nm: float = Field(250.0, description="trees with less cable (nm) are dropped")
    tick_threshold_nm: float = Field(500.0, description="tip branches shorter than this (nm) are removed")
    node_spacing_nm: float = Field(100.0, description="target spacing of nodes after thinning")
    node_max_deviation_nm: float = Field(
        5.0, description="thinning keeps a node where dropping it would move the skeleton by more (nm)"
    )
    smooth_iterations: int = Field(
        1, description="smoothing passes along the paths before thinning (flatten the voxel staircase)"
    )
    smooth_weight: float = Field(
        0.15,
        description="weight w of each neighbour in a smoothing pass, (w, 1-2w, w): 0.25 flattens the "
        "staircase of a straight line but also cuts into bends (median cable -2.3 % on the demo's "
        "tortuous neurites, dev seeds); 0.15 keeps some staircase and cuts less (median -0.3 %)",
    )
    taut_iterations: int = Field(
        0, description="if > 0, instead of the kernel smoothing: rounds of pulling each path taut inside "
        "its skeleton voxels (a minimum-length polygon; 200 settles): real fly neurons' cable 0.99-1.06x "
        "of the truth instead of 1.03-1.10x, but demo neurons -5 % (median) where TEASAR's paths "
        "already cut the bends (docs/skeletons.md)",
    )
    peel_face_slivers: bool = Field(
        True, description="peel paths that run along a volume face on the distance ridge of a sliver (a "
        "neurite whose axis lies outside the volume; docs/skeletons.md, sixth round): real fly neurons in "
        "held-out boxes 11 of 15 cables within 5 % instead of 5; demo neuron recall -0.007 to -0.015 where "
        "an axis runs within half a voxel of a face",
    )
    myelin_box_vx: tuple[int, int, int] = Field(
        (44, 44, 20), description="XYZ box (full-resolution voxels) around a node for the myelin test"
    )
    myelin_window_nm: float = Field(10000.0, description="path window of the myelin majority vote")


class SynapseParams(_Model):
    cs_filter_size_vx: tuple[int, int, int] = Field((13, 13, 7), description="XYZ partner window")
    cs_closings: int = Field(6, description="binary closings of the contact band (reference: 6; not applied yet, see docs/synapses.md)")
    cs_dilations: int = Field(2, description="6-connected dilations of the contact voxels into either partner or background")
    cs_gap_nm: float = Field(250.0, description="fragments closer than this merge into one synapse")
    min_size_vx: int = Field(100, description="minimum cell-level synapse size")
    sym_threshold: float = Field(0.225, description="symmetric ratio above this gives sign -1")
    vc_distance_nm: float = Field(500.0, description="vesicle search distance for the direction")
    mi_distance_nm: float = Field(1000.0, description="mitochondria search distance (features)")
    prob_threshold: float = Field(0.5, description="exported synapses have syn_prob >= this")
    model: str | None = Field(None, description="synapse classifier (.npz from `syngraph train synapses`); none = the shipped default")


class SlurmParams(_Model):
    """``scheduler = "slurm"``: the SLURM jobs syngraph submits through dask-jobqueue (docs/cluster.md)."""

    queue: str = Field("", description="partition (sbatch -p); empty = the cluster's default")
    account: str = Field("", description="account to charge (sbatch -A); empty = your default")
    cores: int = Field(1, ge=1, description="cores per job; one single-threaded worker process per core")
    memory: str = Field("8GiB", description='memory per job, e.g. "8GiB", shared by its workers (each holds one block)')
    walltime: str = Field("04:00:00", description="time limit per job (sbatch -t)")
    jobs: int = Field(2, ge=1, description="jobs kept running while syngraph runs (a lost one is replaced)")
    job_extra: tuple[str, ...] = Field((), description='more sbatch options, e.g. ["--qos=long"]')
    log_directory: str = Field("", description="the workers' SLURM logs (relative: to the working directory); empty = where syngraph runs")
    interface: str = Field("", description='network interface the workers reach the scheduler on, e.g. "ib0"; empty = Dask\'s choice')

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        from dask.utils import parse_bytes

        try:
            ok = parse_bytes(v) > 0
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise ValueError(f'memory = "{v}" is not a memory size; use e.g. "8GiB"')
        return v


class ComputeParams(_Model):
    scheduler: str = Field(
        "local", description='"local" (Dask LocalCluster), "serial", "slurm" (jobs from [compute.slurm]), '
        "or a scheduler address tcp://host:port"
    )
    workers: int = Field(0, description="worker processes for local; 0 = number of cores")
    memory_limit: str = Field("auto", description='per worker, e.g. "4GiB"; auto = memory / workers')
    block_size_vx: tuple[int, int, int] = Field((256, 256, 128), description="XYZ block size")
    slurm: SlurmParams = Field(default_factory=SlurmParams, description="SLURM jobs, for scheduler = \"slurm\"")

    @field_validator("block_size_vx")
    @classmethod
    def _positive(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(b <= 0 for b in v):
            raise ValueError(f"block_size_vx must be positive, got {list(v)}")
        return v


class CompartmentParams(_Model):
    """Compartment labels per skeleton node (learned), smoothed as the reference does."""

    model: str | None = Field(
        None, description="compartment model (.npz written by `syngraph train compartments`); none = the built-in default"
    )
    window_nm: float = Field(10000.0, ge=0, description="path-window majority of axon/dendrite/soma (nm; 0 = off)")
    component_majority: bool = Field(True, description="then one label per piece of the cell left after removing the soma")
    axon_min_fraction: float = Field(0.66, ge=0, le=1, description="a piece is axon only with this fraction of axon nodes")
    soma_min_radius_nm: float = Field(
        1000.0, ge=0, description="nodes at least this thick are soma whatever the model says (0 = off; "
        "the skeletons step's soma_detection_threshold_nm)")
    cells_per_task: int = Field(32, ge=1, description="cells per engine task")


class CelltypeParams(_Model):
    """Cell types per cell (learned; docs/celltypes.md)."""

    model: str | None = Field(
        None, description="cell-type model (.npz written by `syngraph train celltypes`); none = the built-in default"
    )
    classes: tuple[str, ...] = Field(
        (), description="the model's classes, checked against the model file (empty = whatever the model has)"
    )
    min_cable_um: float = Field(5.0, ge=0, description="cells with less skeleton cable than this (um) get type unknown")


class EmbeddingParams(_Model):
    """Learned 10-d vectors per skeleton node and cell (docs/celltypes.md)."""

    model: str | None = Field(
        None, description="node encoder (.safetensors written by `syngraph train embeddings`); none = the built-in default"
    )


class ProjectConfig(_Model):
    """Everything a run needs besides the volumes themselves."""

    voxel_size_nm: tuple[float, float, float] = Field(description="XYZ voxel size in nm")
    layers: dict[str, LayerSource] = Field(
        default_factory=dict,
        description="input layers by name: sv (cell supervoxels, labels), mi, vc, sj, optional syn_type, myelin",
    )
    rag: str | None = Field(None, description="supervoxel edge list (csv, npy, parquet) or sv->cell table; none = each sv its own cell")
    organelles: dict[str, OrganelleParams] = Field(default_factory=_default_organelles)
    meshes: MeshParams = Field(default_factory=MeshParams)
    cells: CellParams = Field(default_factory=CellParams)
    skeletons: SkeletonParams = Field(default_factory=SkeletonParams)
    compartments: CompartmentParams = Field(default_factory=CompartmentParams)
    celltypes: CelltypeParams = Field(default_factory=CelltypeParams)
    embeddings: EmbeddingParams = Field(default_factory=EmbeddingParams)
    synapses: SynapseParams = Field(default_factory=SynapseParams)
    compute: ComputeParams = Field(default_factory=ComputeParams)

    @field_validator("voxel_size_nm")
    @classmethod
    def _voxel_size(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(x <= 0 for x in v):
            raise ValueError(f"voxel_size_nm must be 3 positive numbers (x, y, z in nm), got {list(v)}")
        return v


def _format_error(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid config"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        got = err.get("input")
        lines.append(f"  [{key}] {err['msg']} (got {got!r})")
    lines.append("  fix the key(s) above; `syngraph config init` writes a commented default")
    return "\n".join(lines)


def load_config(workdir: str | Path) -> ProjectConfig:
    """Read and validate ``<workdir>/syngraph.toml``."""
    path = Path(workdir) / CONFIG_NAME
    if not path.exists():
        raise ConfigError(
            f"no {CONFIG_NAME} in {Path(workdir).resolve()}; write one with `syngraph config init` "
            f"or create a demo project with `syngraph synth DIR`"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from exc


def absolute_path(path: str | Path) -> Path:
    """``~`` expanded and made absolute without ``..``: done at the boundary, so that Dask workers
    in other directories (or on other machines) read the same files."""
    return Path(os.path.abspath(os.path.expanduser(path)))


def project_path(workdir: str | Path, value: str) -> Path:
    """A file named in syngraph.toml: relative paths are relative to the working directory."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(workdir) / path


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def _dump_model(model: BaseModel, prefix: str, out: list[str]) -> None:
    nested: list[tuple[str, BaseModel | dict]] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel) or isinstance(value, dict):
            nested.append((name, value))
            continue
        if value is None:
            if field.description:
                out.append(f"# {field.description}")
            out.append(f"# {name} = (unset by default)")
            continue
        if field.description:
            out.append(f"# {field.description}")
        out.append(f"{name} = {_toml_value(value)}")
    for name, value in nested:
        section = f"{prefix}{name}"
        if isinstance(value, dict):
            for key, sub in value.items():
                out.append("")
                out.append(f"[{section}.{key}]")
                if isinstance(sub, BaseModel):
                    _dump_model(sub, f"{section}.{key}.", out)
        else:
            out.append("")
            desc = type(model).model_fields[name].description
            if desc:
                out.append(f"# {desc}")
            out.append(f"[{section}]")
            _dump_model(value, f"{section}.", out)


def dump_config(config: ProjectConfig) -> str:
    """The config as commented TOML (the text `syngraph config init` writes)."""
    out = ["# syngraph project config. Coordinates and sizes are XYZ; units are in the key names."]
    _dump_model(config, "", out)
    return "\n".join(out) + "\n"


def config_markdown() -> str:
    """docs/config.md: every key with its default and description, generated from the models."""
    lines = [
        "# syngraph.toml reference",
        "",
        "Generated from `syngraph.config` (`syngraph config docs > docs/config.md`); a test keeps it",
        "in sync. Coordinates and sizes are XYZ; units are in the key names. `syngraph config init` writes",
        "the same defaults as a commented file.",
    ]

    def section(title: str, model: type[BaseModel], instance: BaseModel | None) -> None:
        nested: list[tuple[str, BaseModel]] = []  # sub-tables such as [compute.slurm], after their parent
        lines.extend(["", f"## `[{title}]`" if title else "## top level", "",
                      "| key | default | meaning |", "|---|---|---|"])
        for name, field in model.model_fields.items():
            if instance is None and field.is_required():
                shown = "required"
            else:
                value = getattr(instance, name) if instance is not None else field.default
                if isinstance(value, BaseModel) and title:
                    nested.append((f"{title}.{name}", value))
                if isinstance(value, BaseModel | dict):
                    continue
                shown = "none" if value is None else _toml_value(value)
            lines.append(f"| `{name}` | `{shown}` | {field.description or ''} |")
        for sub_title, sub in nested:
            section(sub_title, type(sub), sub)

    cfg = default_config()
    section("", ProjectConfig, cfg)
    for name in ProjectConfig.model_fields:
        value = getattr(cfg, name)
        if isinstance(value, BaseModel):
            section(name, type(value), value)
        elif name == "organelles":
            for key, sub in value.items():
                section(f"organelles.{key}", type(sub), sub)
        elif name == "layers":
            section("layers.<name>", LayerSource, None)
    lines.extend(["", "## Checks (`syngraph config check`, and the start of every `syngraph run`)", "",
                  *CHECKS_DOC])
    return "\n".join(lines) + "\n"


CHECKS_DOC = (
    "Besides types and unknown keys (checked whenever syngraph.toml is read), `syngraph.checks` refuses:",
    "",
    "- a parameter out of range, by its name: thresholds, ratios, fractions (unitless) in [0, 1]; downsampling,",
    "  block, box and filter sizes and `simplification_factor` >= 1; `smooth_weight` in [0, 0.5]; every",
    "  other number (counts, `_nm`, `_vx`, `workers`) >= 0; NaN or inf anywhere; `memory_limit` that is",
    "  not `auto` or a size like `4GiB`; `ratio_min > ratio_max`; a skeleton block that is not a",
    "  multiple of its downsampling;",
    "- a layer named in `[layers]` that is missing, only partly imported, or has unreadable metadata",
    "  (`zarr.json` of the layer or its array), a dtype that does not fit its kind (labels: uint;",
    "  probability: uint8 or float32), another shape than `sv`, or another voxel size than",
    "  `voxel_size_nm`;",
    "- a file named that is missing or does not read: `rag` (its header in its format), and",
    "  every model key (`cells.astrocyte_model`, `compartments.model`, `celltypes.model`,",
    "  `embeddings.model`, `synapses.model`: loaded); relative paths are relative to the working",
    "  directory;",
    "- a scheduler that is not `local`, `serial`, `slurm` or a Dask address (exit 2), `slurm` without",
    "  dask-jobqueue or `sbatch` on PATH (exit 2), or a `tcp://` address where nothing answers within",
    "  3 s (exit 3, an environment error).",
    "",
    "Every problem is one line naming the key, layer or file, the bad value and the fix; all problems",
    "are listed at once. Exit codes: see docs/engine.md.",
)


def write_config(workdir: str | Path, config: ProjectConfig) -> Path:
    path = Path(workdir) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(dump_config(config))
    tmp.replace(path)
    return path


def default_config(voxel_size_nm: tuple[float, float, float] = (10.0, 10.0, 25.0)) -> ProjectConfig:
    return ProjectConfig(
        voxel_size_nm=voxel_size_nm,
        layers={
            "sv": LayerSource(path="sv", kind="labels"),
            "mi": LayerSource(path="mi"),
            "vc": LayerSource(path="vc"),
            "sj": LayerSource(path="sj"),
        },
    )


def add_layer(workdir: str | Path, name: str, kind: str) -> bool:
    """Append ``[layers.<name>]`` to ``syngraph.toml`` unless a layer there is or reads it (text is
    appended, so the user's comments stay); returns whether it was added. No config: no-op."""
    path = Path(workdir) / CONFIG_NAME
    if not path.exists():
        return False
    listed = load_config(workdir).layers
    if name in listed or any(src.path == name for src in listed.values()):
        return False
    text = path.read_text()
    text += f'{"" if text.endswith(chr(10)) else chr(10)}\n[layers.{name}]\npath = "{name}"\nkind = "{kind}"\n'
    try:
        ProjectConfig.model_validate(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValidationError):
        return False  # e.g. [layers] written inline: the user adds it by hand
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True
