"""The pipeline, top to bottom: each step a function ``run_<step>(workdir, *, compute, overwrite)``.

Steps are listed in order; ``syngraph run all`` and the demo run them in this order. A step is
resumable (its blocks/tasks have done markers) and finished when ``steps/<name>/DONE`` exists.
A step runs only when the steps it ``needs`` are DONE and unchanged (digests in the marker, see
:mod:`syngraph.engine.done`).
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syngraph.engine import Compute
from syngraph.errors import InputError, StepOrderError


@dataclass(frozen=True)
class Step:
    name: str
    target: str  # "module:function"
    help: str
    needs: tuple[str, ...] = ()  # steps that must be DONE (and unchanged) before this one runs

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
         needs=("cells",)),
    Step("synapses", "syngraph.steps.synapses.run:run_synapses",
         "contact sites, synapses between cells, direction, sign, probability", needs=("cells",)),
    Step("matrix", "syngraph.export.matrix:run_matrix", "the wiring diagram tables and exports",
         needs=("synapses",)),
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


def _as_dict(result: Any) -> dict[str, Any] | None:
    import dataclasses

    if isinstance(result, dict):
        return result
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return None


def done_marker(workdir: str | Path, name: str) -> Path:
    return Path(workdir) / "steps" / name / "DONE"


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
    from syngraph.engine.run import peak_rss_mb

    step = get_step(name)
    workdir = Path(os.path.abspath(os.path.expanduser(workdir)))  # workers may run elsewhere
    # contact sites alone need no cells
    needs = ("init",) if options.get("contacts_only") and name == "synapses" else step.needs
    inputs = done.check_inputs(workdir, name, needs, lambda n: get_step(n).needs, StepOrderError)
    previous = (done.read_done(workdir, name) or {}).get("outputs", {})
    marker = done_marker(workdir, name)
    marker.unlink(missing_ok=True)
    before = done.snapshot(workdir)
    t0 = time.perf_counter()
    with StepRun(marker.parent, overwrite=overwrite) as run:
        result = step.function()(workdir, compute=compute, overwrite=overwrite, progress=progress, **options)
    info = {
        "step": name,
        "seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_mb_main": peak_rss_mb(),
        "result": _as_dict(result),
    }
    info.update(run.fields())  # every attempt (full run, resumes) with its own time and peak memory
    done.write_done(workdir, name, info, done.produced(workdir, before, previous), inputs)
    return info
