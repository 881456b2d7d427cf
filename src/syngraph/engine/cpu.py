"""A step's CPU seconds: user + sys of all its processes (this one and its Dask workers), during the step.

``with StepCpu(client) as cpu: ...``; then ``cpu.cpu_s``. At the start and the end the CPU times of
this process, every descendant (a LocalCluster's nannies and workers) and every Dask worker of
``client`` (through ``client.run``: workers elsewhere, SLURM jobs) are read, each process keyed by
host, pid and start time, so a local worker seen both ways counts once. The step's CPU is the sum of
the differences; a process started during the step counts whole. Children that ended and were waited
for are in their parent's ``children_user`` / ``children_system``, which count too.
"""

from __future__ import annotations

import socket
from typing import Any

import psutil

Key = tuple[str, int, float]


def _cpu_s(p: psutil.Process) -> tuple[Key, float]:
    t = p.cpu_times()
    return (socket.gethostname(), p.pid, p.create_time()), t.user + t.system + t.children_user + t.children_system


def tree_cpu_s() -> dict[Key, float]:
    """CPU seconds so far of this process and its descendants, by (host, pid, start time)."""
    me = psutil.Process()
    out: dict[Key, float] = {}
    for p in [me, *me.children(recursive=True)]:
        try:
            k, v = _cpu_s(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[k] = v
    return out


def own_cpu_s() -> tuple[Key, float]:
    """This process's key and CPU seconds so far (what ``client.run`` asks each worker)."""
    return _cpu_s(psutil.Process())


def cpu_delta_s(before: dict[Any, float], after: dict[Any, float]) -> float:
    """CPU seconds spent between two readings (processes new in ``after`` count whole)."""
    return sum(max(0.0, v - before.get(k, 0.0)) for k, v in after.items())


class StepCpu:
    """CPU seconds of this process tree and of ``client``'s workers between enter and exit."""

    def __init__(self, client: Any = None):
        self.client = client
        self.cpu_s = 0.0

    def _read(self) -> dict[Any, float]:
        out: dict[Any, float] = tree_cpu_s()
        if self.client is not None:
            try:
                out.update({tuple(k): v for k, v in self.client.run(own_cpu_s).values()})
            except Exception:  # workers lost: keep what this machine saw
                pass
        return out

    def __enter__(self) -> StepCpu:
        self._before = self._read()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cpu_s = round(cpu_delta_s(self._before, self._read()), 2)
