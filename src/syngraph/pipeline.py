"""The pipeline, top to bottom: each step a function ``run_<step>(workdir, *, compute, overwrite)``.

Steps are listed in order; ``syngraph run all`` and the demo run them in this order. A step is
resumable (its blocks/tasks have done markers) and finished when ``steps/<name>/DONE`` exists.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syngraph.engine import Compute
from syngraph.errors import InputError


@dataclass(frozen=True)
class Step:
    name: str
    target: str  # "module:function"
    help: str

    def function(self) -> Callable[..., Any]:
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)


STEPS: tuple[Step, ...] = (
    Step("init", "syngraph.steps.init.run:run_init",
         "organelle instances, object properties, meshes, organelle/supervoxel overlap"),
    Step("rag", "syngraph.steps.rag:run_rag", "supervoxel graph: read, check against contacts, prune"),
    Step("astrocytes", "syngraph.steps.astrocytes:run_astrocytes", "split astrocyte supervoxels off"),
    Step("cells", "syngraph.steps.cells:run_cells", "agglomerate supervoxels into cells"),
    Step("skeletons", "syngraph.steps.skeletons:run_skeletons", "one skeleton per cell, with myelin"),
    Step("synapses", "syngraph.steps.synapses.run:run_synapses",
         "contact sites, synapses between cells, direction, sign, probability"),
    Step("matrix", "syngraph.export.matrix:run_matrix", "the wiring diagram tables and exports"),
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
    from syngraph.engine.run import CURRENT_STEP, peak_rss_mb

    step = get_step(name)
    marker = done_marker(workdir, name)
    marker.unlink(missing_ok=True)
    t0 = time.perf_counter()
    token = CURRENT_STEP.set(name)
    try:
        result = step.function()(workdir, compute=compute, overwrite=overwrite, progress=progress, **options)
    finally:
        CURRENT_STEP.reset(token)
    info = {
        "step": name,
        "seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_mb_main": peak_rss_mb(),
        "result": _as_dict(result),
    }
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=1, default=str))
    tmp.replace(marker)
    return info
