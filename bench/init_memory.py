"""Peak memory of the init step's per-object pass (assemble: weld + simplify meshes), against a baseline.

    python bench/init_memory.py --baseline-src ../main/src [--volumes pinky,demo256]

The baseline is another checkout's ``src`` (e.g. main's), run in the same invocation: each volume is
made once (``bench/init.py --make``), copied, and init runs on each copy in a fresh process, serial,
first with ``--baseline-src`` then with this checkout's ``src`` on ``PYTHONPATH``. Printed per
version: the assemble and relabel passes' peak RSS as the step measures it (one process, so the
driver's own memory is included), then every assemble task again in a fresh process each, and the
largest growth of peak RSS over the process after its imports (``task_MB``: what one worker needs
beyond its start for the task that needs most), the CPU seconds of the whole init process (user +
sys), faces and closed meshes, and the ratios ours / baseline. On a loaded machine read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
SRC = HERE.parents[1] / "src"


def _child(src: Path, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, str(HERE), *args], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_step(wd: str) -> dict:
    from syngraph.engine import Compute
    from syngraph.steps.init import run_init

    s = run_init(wd, compute=Compute(scheduler="serial"), overwrite=True, progress=False)
    lay = s["layers"]["sv"]
    return {"passes": s["passes"], "faces": lay.get("faces", 0), "closed": lay.get("closed", 0),
            "meshes": lay.get("meshes", 0)}


def _tasks(wd: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from syngraph.config import load_config
    from syngraph.engine import block_grid
    from syngraph.steps.init import run as init_run

    ctx = init_run.plan(wd, load_config(wd))
    files = sorted((ctx.step_dir / "relabel" / "mesh").glob("*.parquet"))
    mt = pa.concat_tables([pq.read_table(f) for f in files])
    return ctx, init_run._assemble_tasks(ctx, mt, {}, block_grid(ctx.volume, ctx.block_size))


def n_tasks(wd: str) -> dict:
    return {"n": len(_tasks(wd)[1])}


def task_peak(wd: str, k: int) -> dict:
    import zmesh  # noqa: F401  (imported before the reference point, as a worker has it)

    from syngraph.steps.init import run as init_run

    ctx, tasks = _tasks(wd)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    init_run.assemble_task(tasks[k], ctx)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"delta_mb": peak - before, "objects": len(tasks[k].items)}


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(src: Path, wd: Path) -> dict:
    c0 = _children_cpu_s()
    row = _child(src, "--run", str(wd))
    row["cpu_s"] = _children_cpu_s() - c0
    n = _child(src, "--n-tasks", str(wd))["n"]
    deltas = [_child(src, "--task", str(wd), str(k))["delta_mb"] for k in range(n)]
    row["task_mb"] = max(deltas) if deltas else 0.0
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-src", type=Path, help="the src folder of the baseline checkout (e.g. main)")
    ap.add_argument("--volumes", default="pinky", help="comma-separated: pinky, demo256, demo512 (bench/init.py)")
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--n-tasks", help=argparse.SUPPRESS)
    ap.add_argument("--task", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        print(json.dumps(run_step(args.run)))
        return
    if args.n_tasks:
        print(json.dumps(n_tasks(args.n_tasks)))
        return
    if args.task:
        print(json.dumps(task_peak(args.task[0], int(args.task[1]))))
        return
    if args.baseline_src is None:
        ap.error("--baseline-src is required (the src folder of the checkout to compare against)")
    root = Path(tempfile.mkdtemp(prefix="bench_init_memory_"))
    cols = ("assemble_MB", "relabel_MB", "task_MB", "init_cpu_s", "faces", "closed/meshes")
    try:
        for kind in args.volumes.split(","):
            subprocess.run([sys.executable, str(HERE.parent / "init.py"), "--make", kind, str(root)], check=True,
                           env=dict(os.environ, PYTHONPATH=str(SRC)))
            rows = {}
            for name, src in (("baseline", args.baseline_src.resolve()), ("ours", SRC)):
                wd = root / f"{kind}_{name}"
                shutil.copytree(root / kind, wd)
                r = measure(src, wd)
                p = r["passes"]
                rows[name] = (p["assemble"]["peak_rss_mb"], p["relabel"]["peak_rss_mb"], r["task_mb"],
                              r["cpu_s"], r["faces"], f"{r['closed']}/{r['meshes']}")
                shutil.rmtree(wd)
            print(f"{kind}: init, serial, peak RSS in MB (load {os.getloadavg()[0]:.1f})")
            print(f"{'version':10s}" + "".join(f"{c:>15s}" for c in cols))
            for name, vals in rows.items():
                print(f"{name:10s}" + "".join(f"{v:>15.1f}" if isinstance(v, float) else f"{v!s:>15s}" for v in vals))
            ratio = [rows["ours"][i] / rows["baseline"][i] if rows["baseline"][i] else float("nan") for i in range(5)]
            print(f"{'ratio':10s}" + "".join(f"{v:>15.2f}" for v in ratio), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
