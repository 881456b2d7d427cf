"""A step's own peak memory: all its processes (this one and its Dask workers), during the step only.

Two measures, both reset at the start of the step:

- the sampled total: every ``interval_s`` the resident memory of this process and all its
  descendants (a LocalCluster's nannies and workers) is summed, and for a remote scheduler the
  workers' memory as the scheduler reports it is added; the largest total is kept;
- per-process peaks: Linux's ``VmHWM`` of this process and of each worker, reset at the start
  (``/proc/self/clear_refs``), so a long-lived worker reports its peak during this step and a spike
  between two samples is not lost.

``peak_mb`` is the larger of the two.
"""

from __future__ import annotations

import threading
from typing import Any

import psutil

from syngraph.engine.compute import active_client
from syngraph.engine.cpu import process_tree


def reset_peak_rss() -> None:
    """Reset this process's peak resident memory (``VmHWM``) where Linux allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _tree_rss_mb(proc: psutil.Process) -> float:
    return sum(process_tree(proc, lambda p: p.memory_info().rss)) / 2**20


def _remote_workers_mb(client: Any) -> float:
    """Workers' memory as the scheduler last heard it (for workers that are not our children)."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return sum(w.get("metrics", {}).get("memory", 0) for w in workers.values()) / 2**20


class PeakMemory:
    """``with PeakMemory() as pm: ...``; then ``pm.peak_mb`` (whole step) and ``pm.main_mb``."""

    def __init__(self, interval_s: float = 0.1):
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self.main_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._remote = False

    def _sample(self) -> None:
        proc = psutil.Process()
        while True:
            total = _tree_rss_mb(proc)
            if self._remote:
                try:
                    total += _remote_workers_mb(self._client)
                except Exception:  # a scheduler that went away must not fail the step
                    self._remote = False
            self.peak_mb = max(self.peak_mb, total)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PeakMemory:
        reset_peak_rss()
        self._client = active_client()
        if self._client is not None:
            self._client.run(reset_peak_rss)
            self._remote = getattr(self._client, "cluster", None) is None
        self._thread = threading.Thread(target=self._sample, name="syngraph-peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        from syngraph.engine.run import peak_rss_mb

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.main_mb = peak_rss_mb()
        process_peaks = [self.main_mb]
        if self._client is not None:
            try:
                process_peaks += list(self._client.run(peak_rss_mb).values())
            except Exception:  # workers lost at the end: keep the sampled peak
                pass
        self.peak_mb = round(max(self.peak_mb, *process_peaks), 1)
        self.main_mb = round(self.main_mb, 1)
