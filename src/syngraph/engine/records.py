"""Step run records: ``steps/<name>/runs.json``, one entry per attempt at a step.

The first attempt (or one with ``overwrite``) is the ``full`` run; every later attempt on the same
state is a ``resume``. Each entry keeps its own wall time and peak memory, so a resume never hides
the time the full run took::

    {"kind": "full" | "resume", "status": "running" | "ok" | "failed",
     "started_utc": "...", "seconds": 143.2, "cpu_s": 251.3, "peak_rss_mb": 1840.5,
     "peak_rss_mb_main": 610.2}

``cpu_s`` is user + sys of all the step's processes, Dask workers included
(:class:`syngraph.engine.cpu.StepCpu`); ``peak_rss_mb`` covers all of them too
(:class:`syngraph.engine.memory.PeakMemory`);
``peak_rss_mb_main`` is the calling process alone. An entry is written as ``running`` when the
attempt starts and completed when it ends, so a killed attempt stays visible as ``running``.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syngraph.engine.cpu import StepCpu
from syngraph.engine.memory import PeakMemory
from syngraph.engine.run import RUNS_NAME, write_text_atomic


def read_runs(step_dir: str | Path) -> list[dict[str, Any]]:
    """The recorded attempts of a step, oldest first ([] if none)."""
    path = Path(step_dir) / RUNS_NAME
    return json.loads(path.read_text()) if path.exists() else []


def _write_runs(step_dir: Path, runs: list[dict[str, Any]]) -> None:
    step_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(step_dir / RUNS_NAME, json.dumps(runs, indent=1))


class StepRun:
    """``with StepRun(step_dir, overwrite) as run: ...`` records one attempt; ``run.runs`` then
    holds every attempt so far (this one last)."""

    def __init__(self, step_dir: str | Path, overwrite: bool = False):
        self.step_dir = Path(step_dir)
        self.overwrite = overwrite
        self.runs: list[dict[str, Any]] = []
        self.memory = PeakMemory()
        self.cpu = StepCpu()

    def __enter__(self) -> StepRun:
        earlier = [] if self.overwrite else read_runs(self.step_dir)
        state = self.step_dir.exists() and any(p.name != RUNS_NAME for p in self.step_dir.iterdir())
        kind = "resume" if earlier or (state and not self.overwrite) else "full"
        self.runs = [*earlier, {"kind": kind, "status": "running",
                                "started_utc": datetime.now(UTC).isoformat(timespec="seconds")}]
        _write_runs(self.step_dir, self.runs)
        self._t0 = time.perf_counter()
        self.cpu.__enter__()
        self.memory.__enter__()
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.memory.__exit__(exc_type, *exc)
        self.cpu.__exit__(exc_type, *exc)
        self.runs[-1].update(status="failed" if exc_type else "ok",
                             seconds=round(time.perf_counter() - self._t0, 3), cpu_s=self.cpu.cpu_s,
                             peak_rss_mb=self.memory.peak_mb, peak_rss_mb_main=self.memory.main_mb)
        _write_runs(self.step_dir, self.runs)

    def fields(self) -> dict[str, Any]:
        """What the step's ``DONE`` record adds: this attempt's peak memory and all attempts."""
        return {"peak_rss_mb": self.runs[-1]["peak_rss_mb"], "runs": self.runs}
