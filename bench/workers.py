"""Benchmark: the same numpy work in local Dask workers, with the nanny's malloc setting and without.

    python bench/workers.py                 # 8 tasks on 2 workers, 3 rounds, alternating
    python bench/workers.py --tasks 16 --rounds 5

distributed's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also switches off
glibc's adaptive mmap threshold, so every array above 128 KiB is mmapped and unmapped and each
new temporary page-faults. syngraph's local clusters keep glibc's defaults
(``engine.compute.WORKER_ENVIRON``). Each task does what block tasks do: label statistics,
masks and temporaries over a 128x128x64 label block (``cc3d``, ``fastremap``, ``edt``, numpy).

Prints per setting and round: CPU seconds of all processes (user + sys, workers included),
system seconds, minor page faults, and the ratio nanny/ours measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import psutil


def block_work(seed: int) -> float:
    import cc3d
    import edt
    import fastremap

    rng = np.random.default_rng(seed)
    out = 0.0
    for _ in range(6):
        labels = cc3d.connected_components(rng.random((128, 128, 64)) < 0.55)
        ids, counts = fastremap.unique(labels, return_counts=True)
        dist = edt.edt(labels, parallel=1)
        big = np.isin(labels, ids[counts > 50])
        out += float(np.where(big, dist, 0.0).sum()) + float((labels.astype(np.int64) * 3 + 1).max())
    return out


def _times(p: psutil.Process) -> tuple[float, float, int]:
    t = p.cpu_times()
    try:
        with open(f"/proc/{p.pid}/stat") as f:
            faults = int(f.read().rsplit(")", 1)[1].split()[7])
    except FileNotFoundError:
        raise psutil.NoSuchProcess(p.pid) from None
    return t.user + t.children_user, t.system + t.children_system, faults


def _tree_times() -> tuple[float, float, int]:
    """User and system seconds and minor page faults of this process and its descendants."""
    from syngraph.engine.cpu import process_tree

    rows = list(process_tree(psutil.Process(), _times))
    return tuple(sum(col) for col in zip(*rows, strict=True))  # type: ignore[return-value]


def run(setting: str, tasks: int, workers: int) -> tuple[float, float, int]:
    import dask
    from distributed import Client, LocalCluster

    from syngraph.engine.compute import WORKER_ENVIRON

    env = WORKER_ENVIRON if setting == "ours" else {}
    with dask.config.set(env), LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            dashboard_address=":0", silence_logs=40) as cluster, \
            Client(cluster) as client:
        client.run(lambda: None)  # workers started and imported before the clock
        client.gather(client.map(block_work, [10_000 + i for i in range(workers)], pure=False))
        u0, s0, f0 = _tree_times()
        client.gather(client.map(block_work, list(range(tasks)), pure=False))
        u1, s1, f1 = _tree_times()
    return u1 - u0 + s1 - s0, s1 - s0, f1 - f0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--one", choices=("nanny", "ours"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:  # a fresh process per measurement: a nanny also sets its variables in its own process
        print(json.dumps(run(a.one, a.tasks, a.workers)))
        return
    cpu: dict[str, list[float]] = {"nanny": [], "ours": []}
    print(f"{'setting':8s} {'round':>5s} {'cpu_s':>8s} {'sys_s':>8s} {'minor_faults':>13s}")
    for r in range(a.rounds):
        for setting in ("nanny", "ours"):
            cmd = [sys.executable, __file__, "--one", setting, "--tasks", str(a.tasks), "--workers", str(a.workers)]
            c, s, f = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            cpu[setting].append(c)
            print(f"{setting:8s} {r:5d} {c:8.2f} {s:8.2f} {f:13d}")
    ratio = np.median(cpu["nanny"]) / np.median(cpu["ours"])
    print(f"median CPU nanny / ours: {ratio:.2f}x ({a.tasks} tasks on {a.workers} workers, {a.rounds} rounds)")


if __name__ == "__main__":
    main()
