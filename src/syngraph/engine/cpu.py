"""A step's CPU seconds: user + sys of all its processes (this one and its Dask workers), during the step.

``with StepCpu() as cpu: ...``; then ``cpu.cpu_s``. At the start and the end the CPU times of
this process, every descendant (a LocalCluster's nannies and workers) and every Dask worker of the
open session's client (through ``client.run``: workers elsewhere, SLURM jobs) are read, each process
keyed by host, pid and start time, so a local worker seen both ways counts once. The step's CPU is the sum of
the differences; a process started during the step counts whole. Children that ended and were waited
for are in their parent's ``children_user`` / ``children_system``, which count too.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psutil

from syngraph.engine.compute import active_client

Key = tuple[str, int, float]
T = TypeVar("T")


def _cpu_s(p: psutil.Process) -> tuple[Key, float]:
    t = p.cpu_times()
    return (socket.gethostname(), p.pid, p.create_time()), t.user + t.system + t.children_user + t.children_system


def process_tree(proc: psutil.Process, read: Callable[[psutil.Process], T]) -> Iterator[T]:
    """``read(p)`` for ``proc`` and each of its descendants, skipping those that ended or deny access."""
    for p in [proc, *proc.children(recursive=True)]:
        try:
            value = read(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        yield value


def tree_cpu_s() -> dict[Key, float]:
    """CPU seconds so far of this process and its descendants, by (host, pid, start time)."""
    return dict(process_tree(psutil.Process(), _cpu_s))


def own_cpu_s() -> tuple[Key, float]:
    """This process's key and CPU seconds so far (what ``client.run`` asks each worker)."""
    return _cpu_s(psutil.Process())


def cpu_delta_s(before: dict[Any, float], after: dict[Any, float]) -> float:
    """CPU seconds spent between two readings (processes new in ``after`` count whole)."""
    return sum(max(0.0, v - before.get(k, 0.0)) for k, v in after.items())


class StepCpu:
    """CPU seconds of this process tree and of ``client``'s workers (default: the open session's)
    between enter and exit."""

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
        if self.client is None:
            self.client = active_client()
        self._before = self._read()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cpu_s = round(cpu_delta_s(self._before, self._read()), 2)
