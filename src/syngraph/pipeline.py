"""The pipeline, top to bottom: each step a function ``run_<step>(workdir, *, compute, overwrite)``.

Steps are listed in order; ``syngraph run all`` and the demo run them in this order. A step is
resumable (its blocks/tasks have done markers) and finished when ``steps/<name>/DONE`` exists.
A step runs only when the steps it ``needs`` are DONE and unchanged (digests in the marker, see
:mod:`syngraph.engine.done`); the steps it ``uses`` count as inputs too when they are DONE.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syngraph.config import absolute_path
from syngraph.engine import Compute
from syngraph.errors import InputError, StepOrderError


@dataclass(frozen=True)
class Step:
    name: str
    target: str  # "module:function"
    help: str
    needs: tuple[str, ...] = ()  # steps that must be DONE (and unchanged) before this one runs
    uses: tuple[str, ...] = ()  # steps whose tables it reads when they exist: inputs when DONE
    blocks: str = "compute"  # config section whose block_size_vx it works in; "" = per cell or table

    def function(self) -> Callable[..., Any]:
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)


STEPS: tuple[Step, ...] = (
    Step("init", "syngraph.steps.init.run:run_init",
         "organelle instances, object properties, meshes, organelle/supervoxel overlap"),
    Step("rag", "syngraph.steps.rag:run_rag", "supervoxel graph: read, check against contacts, prune",
         needs=("init",)),
    Step("astrocytes", "syngraph.steps.astrocytes:run_astrocytes", "split astrocyte supervoxels off",
         needs=("rag",)),
    Step("cells", "syngraph.steps.cells:run_cells", "agglomerate supervoxels into cells",
         needs=("astrocytes",)),
    Step("skeletons", "syngraph.steps.skeletons:run_skeletons", "one skeleton per cell, with myelin",
         needs=("cells",), blocks="skeletons"),
    Step("compartments", "syngraph.steps.compartments:run_compartments",
         "soma, dendrite, spine neck/head, axon, boutons per skeleton node; spine head volumes",
         needs=("skeletons",), blocks=""),
    Step("celltypes", "syngraph.steps.celltypes:run_celltypes",
         "a cell type, class probabilities and certainty per cell", needs=("compartments",), blocks=""),
    Step("embeddings", "syngraph.steps.embeddings:run_embeddings",
         "learned 10-d vectors per skeleton node (latent_morph) and per cell", needs=("celltypes",),
         blocks=""),
    Step("synapses", "syngraph.steps.synapses.run:run_synapses",
         "contact sites, synapses between cells, direction, sign, probability", needs=("cells",),
         uses=("compartments",)),
    Step("matrix", "syngraph.export.matrix:run_matrix", "the wiring diagram tables and exports",
         needs=("synapses",), uses=("compartments", "celltypes", "embeddings"), blocks=""),
)


def step_names() -> list[str]:
    return [s.name for s in STEPS]


def get_step(name: str) -> Step:
    for s in STEPS:
        if s.name == name:
            return s
    raise InputError(
        f"unknown step '{name}'; steps are: {', '.join(step_names()) or 'none yet'} (or 'all')"
    )


def upstream_of(name: str) -> tuple[str, ...]:
    """The steps ``name`` needs or uses (where a walk for stale steps goes upstream)."""
    step = get_step(name)
    return step.needs + step.uses


def step_inputs(workdir: str | Path, name: str, contacts_only: bool = False) -> tuple[str, ...]:
    """The steps whose DONE ``name`` checks and records: those it needs, and those it uses that
    are DONE (so rerunning one makes ``name`` stale). Contact sites alone need only init."""
    from syngraph.engine.done import read_done

    step = get_step(name)
    if contacts_only and name == "synapses":
        return ("init",)
    return step.needs + tuple(u for u in step.uses if read_done(workdir, u) is not None)


def _as_dict(result: Any) -> dict[str, Any] | None:
    import dataclasses

    if isinstance(result, dict):
        return result
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return None


def run_step(
    workdir: str | Path,
    name: str,
    *,
    compute: Compute | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run one step (``options`` go to the step function) and record its wall time and peak memory in ``steps/<name>/DONE``."""
    from syngraph.engine import done
    from syngraph.engine.records import StepRun
    from syngraph.engine.run import CURRENT_INPUTS, CURRENT_STEP

    step = get_step(name)
    workdir = absolute_path(workdir)  # workers may run elsewhere
    needs = step_inputs(workdir, name, contacts_only=bool(options.get("contacts_only")))
    inputs = done.check_inputs(workdir, name, needs, upstream_of, StepOrderError)
    previous = (done.read_done(workdir, name) or {}).get("outputs", {})
    marker = done.done_path(workdir, name)
    marker.unlink(missing_ok=True)
    before = done.snapshot(workdir)
    token = CURRENT_STEP.set(name)
    token_in = CURRENT_INPUTS.set(json.dumps(inputs, sort_keys=True))
    try:
        with StepRun(marker.parent, overwrite=overwrite) as run:
            result = step.function()(workdir, compute=compute, overwrite=overwrite, progress=progress, **options)
    finally:
        CURRENT_STEP.reset(token)
        CURRENT_INPUTS.reset(token_in)
    info = {
        "step": name,
        "seconds": run.runs[-1]["seconds"],  # this attempt's, as StepRun measured it
        "peak_rss_mb_main": run.runs[-1]["peak_rss_mb_main"],
        "result": _as_dict(result),
    }
    info.update(run.fields())  # every attempt (full run, resumes) with its own time and peak memory
    done.write_done(workdir, name, info, done.produced(workdir, before, previous), inputs)
    return info


# --- what a run can do with the layers a project has ----------------------------------------


@dataclass(frozen=True)
class LayerUse:
    """Optional layer ``layer`` gives step ``step`` what ``adds`` says."""

    layer: str
    step: str
    adds: str


OPTIONAL_LAYERS: tuple[LayerUse, ...] = (
    LayerUse("mi", "init", "mitochondria instances (mi_seg, tables/mi.parquet, meshes)"),
    LayerUse("vc", "init", "vesicle cloud instances (vc_seg, tables/vc.parquet, meshes)"),
    LayerUse("sj", "init", "synaptic junction instances (sj_seg, tables/sj.parquet, meshes)"),
    LayerUse("mi", "astrocytes", "mitochondria density, a feature of the astrocyte classifier (0 without)"),
    LayerUse("vc", "astrocytes", "vesicle density, a feature of the astrocyte classifier (0 without)"),
    LayerUse("myelin", "skeletons", "myelin per skeleton node"),
    LayerUse("sj", "synapses", "synapses between cells (syn_ssv) and the synapse matrix; without it: "
             "contact sites and the cell contact graph with contact areas"),
    LayerUse("vc", "synapses", "synapse direction (pre/post) from vesicle clouds"),
    LayerUse("syn_type", "synapses", "synapse sign (asymmetric/symmetric)"),
    LayerUse("mi", "synapses", "mitochondria near each synapse (classifier features)"),
    LayerUse("sj", "matrix", "synapse tables and CAVE/neuPrint/SyConn exports; without it: "
             "connections.parquet holds cell contacts (area, no synapse columns)"),
)


@dataclass(frozen=True)
class RunPlan:
    """What ``run`` will do: per step, the optional layers it has and lacks (with what each adds)."""

    steps: tuple[str, ...]
    layers: tuple[str, ...]  # the layers a run uses (configured and imported; myelin by presence)
    missing: tuple[LayerUse, ...]
    unused: tuple[str, ...]  # imported organelle-like layers the config does not list

    def lines(self) -> list[str]:
        out = [f"layers: {', '.join(self.layers)}"]
        for name in self.steps:
            lacks = [u for u in self.missing if u.step == name]
            out.append(f"  {name}: runs" + ("" if lacks else " (all its inputs present)"))
            out.extend(f"    '{u.layer}' not imported; it would add: {u.adds}" for u in lacks)
        out.extend(
            f"  note: layer '{n}' is imported but not listed in syngraph.toml [layers]; add "
            f"[layers.{n}] to use it" for n in self.unused
        )
        return out


def plan_run(workdir: str | Path, names: list[str] | None = None, config: Any = None) -> RunPlan:
    """Say, per step in ``names`` (default all), which optional layers it will go without.
    Missing layers and files are refused before, by :func:`syngraph.checks.check_project`."""
    from syngraph.config import load_config
    from syngraph.io.volume import list_layers

    wd = Path(workdir)
    cfg = config or load_config(wd)
    names = names or step_names()
    have = set(list_layers(wd))
    used = set(cfg.layers) | ({"myelin"} & have)
    optional = {u.layer for u in OPTIONAL_LAYERS}
    return RunPlan(
        steps=tuple(names),
        layers=tuple(sorted(used)),
        missing=tuple(u for u in OPTIONAL_LAYERS if u.step in names and u.layer not in used),
        unused=tuple(sorted((optional - used) & have)),
    )


# --- what a run will cost (``syngraph plan``) --------------------------------------------------


def estimate_run(workdir: str | Path, names: list[str] | None = None, workers: int = 1,
                 config: Any = None, costs_path: str | Path | None = None) -> tuple[list[Any], dict[str, Any]]:
    """Per step in ``names`` (default all): its block size (XYZ voxels, or None where it works per
    cell or table), block count and :class:`syngraph.engine.costs.Estimate` for the sv volume of
    ``workdir`` on ``workers`` processes; and the cost table's ``measured`` record."""
    from syngraph.config import load_config
    from syngraph.engine.costs import COSTS_PATH, estimate, load_costs, n_blocks

    cfg = config or load_config(workdir)
    costs, measured = load_costs(costs_path or COSTS_PATH)
    shape, units = volume_units(workdir, cfg)
    rows = []
    for name in names or step_names():
        step = get_step(name)
        block = tuple(getattr(cfg, step.blocks).block_size_vx) if step.blocks else None
        count = n_blocks(shape, block) if block else None
        cost = costs.get(name)
        rows.append((name, block, count, estimate(name, cost, units[cost.unit], workers, count) if cost else None))
    return rows, {**measured, "shape_xyz": shape, "mvx": units["mvx"]}


def volume_units(workdir: str | Path, config: Any = None) -> tuple[tuple[int, int, int], dict[str, float]]:
    """The sv volume's XYZ shape and its size in each cost unit (``syngraph.engine.costs.work_units``)."""
    from syngraph.config import load_config
    from syngraph.engine.costs import work_units
    from syngraph.io.volume import open_layer
    from syngraph.steps.init.run import planned_organelles

    cfg = config or load_config(workdir)
    sv = open_layer(workdir, (cfg.layers["sv"].path if "sv" in cfg.layers else None) or "sv")
    shape = tuple(sv.info.shape_xyz)
    init_layers = 1 + len(planned_organelles(cfg))
    return shape, work_units(math.prod(shape) / 1e6, cfg.skeletons.downsample_for(sv.info.voxel_size_nm),  # type: ignore[return-value]
                             init_layers)
