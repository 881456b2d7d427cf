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


STEPS: tuple[Step, ...] = ()


def step_names() -> list[str]:
    return [s.name for s in STEPS]


def get_step(name: str) -> Step:
    for s in STEPS:
        if s.name == name:
            return s
    raise InputError(
        f"unknown step '{name}'; steps are: {', '.join(step_names()) or 'none yet'} (or 'all')"
    )


def done_marker(workdir: str | Path, name: str) -> Path:
    return Path(workdir) / "steps" / name / "DONE"


def run_step(
    workdir: str | Path,
    name: str,
    *,
    compute: Compute | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run one step and record its wall time and peak memory in ``steps/<name>/DONE``."""
    import resource

    step = get_step(name)
    marker = done_marker(workdir, name)
    marker.unlink(missing_ok=True)
    t0 = time.perf_counter()
    result = step.function()(workdir, compute=compute, overwrite=overwrite, progress=progress)
    info = {
        "step": name,
        "seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_mb_main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "result": result if isinstance(result, dict) else None,
    }
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=1, default=str))
    tmp.replace(marker)
    return info
