"""Benchmark of the whole pipeline, step by step, against each step's whole-volume library baseline.

    python bench/pipeline.py --demo 128 --demo 256,256,128 --scheduler serial --json out.json
    python bench/pipeline.py --pinky40 --workers 2          # ../shared/data/pinky40, labels only
    python bench/pipeline.py --pinky40-8nm --workers 2      # ../shared/data/pinky40_8nm (0.54 GVx)

Each dataset is set up in a scratch directory (demo: ``syngraph synth``; pinky: ``config init`` and
``syngraph import`` of the labels, which is timed as the ``import`` row), then every step of
``syngraph.pipeline.step_names()`` runs as ``syngraph run <step>`` in its own process, as a user
runs it. Per step: wall seconds, CPU seconds of the step's whole process tree (user + sys of the
CLI process and every Dask worker it waited for: ``RUSAGE_CHILDREN``), MVx per CPU-second (MVx/s per
fully busy core), peak RSS of all its processes (``peak_rss_mb`` of ``steps/<name>/DONE``), its share
of the total CPU seconds, and the ratio of its CPU seconds to a baseline measured in the same run:
one library call on the whole array in a fresh single-threaded process (init: ``bench/init.py``'s
baseline, zmesh and friends; rag: ``cc3d.contacts`` on the supervoxels; astrocytes: ``edt.edt``;
cells: ``fastremap.unique`` + ``fastremap.remap`` to cells; skeletons: ``kimimaro.skeletonize`` on
the cell labels at the step's resolution; synapses: ``cc3d.contacts`` on the cell labels). Steps
without a whole-volume equivalent (models, tables) have none. With two or more datasets, each
step's scaling exponent from one to the next (log CPU-s ratio / log voxel ratio) and the total
projected to 1 GVx at the largest volume's exponent. ``--write-costs`` stores each step's CPU seconds
and peak memory as a line in MVx (through the smallest and largest dataset) in
``src/syngraph/engine/costs.json``, from which ``syngraph plan`` estimates a run before it starts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BENCH = Path(__file__).resolve().parent
COSTS = BENCH.parent / "src" / "syngraph" / "engine" / "costs.json"
GVX = 1e9


def _cpu_children_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], **kw: object) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run ``cmd``; its wall seconds, CPU seconds (its process tree) and the completed process."""
    c0, t0 = _cpu_children_s(), time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - t0, _cpu_children_s() - c0, r


def syngraph_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "syngraph", *args]


def compute_args(args: argparse.Namespace) -> list[str]:
    out = ["--scheduler", args.scheduler]
    if args.workers and args.scheduler == "local":
        out += ["--workers", str(args.workers)]
    return out


def make_dataset(name: str, wd: Path, args: argparse.Namespace) -> dict[str, float]:
    """Set up the project in ``wd``; returns the import row (pinky) or the synth wall seconds (demo)."""
    if name.startswith("demo"):
        shape = name[5:].split("x")
        wall, cpu, r = timed(syngraph_cmd("synth", str(wd), "--shape", *shape, *compute_args(args)))
        _check(r, "synth")
        return {"synth_wall_s": wall}
    # the crackle stream itself: the import decodes it slab by slab (uint32, x y z; stored uint64)
    ckl = (DATA / "pinky40" / "connectomics.npy.ckl.gz" if name == "pinky40"
           else DATA / "pinky40_8nm" / "pinky40_8nm.ckl")
    vs = ["16", "16", "40"] if name == "pinky40" else ["8", "8", "40"]
    _check(subprocess.run(syngraph_cmd("config", "init", "--wd", str(wd), "--voxel-size-nm", *vs),
                          capture_output=True, text=True), "config init")
    wall, cpu, r = timed(syngraph_cmd("import", "sv", str(ckl), "--wd", str(wd), "--kind", "labels",
                                      *compute_args(args)))
    _check(r, "import")
    from syngraph.engine.records import read_runs

    last = read_runs(wd / "steps" / "import_sv")[-1]  # the import's own record, like the steps' rows
    return {"step": "import", "wall_s": last["seconds"], "cpu_s": last["cpu_s"],
            "peak_rss_mb": last["peak_rss_mb"], "cli_wall_s": wall, "cli_cpu_s": cpu}


def _check(r: subprocess.CompletedProcess, what: str) -> None:
    if r.returncode != 0:
        sys.exit(f"{what} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")


# --- baselines: one library call on the whole array, in a fresh process -------------------------


def _cells(wd: Path, sv: np.ndarray) -> np.ndarray:
    import fastremap
    import pyarrow.parquet as pq

    m = pq.read_table(wd / "tables" / "sv_to_cell.parquet")
    lut = dict(zip(m.column("sv_id").to_pylist(), m.column("cell_id").to_pylist(), strict=True))
    return fastremap.remap(sv, lut, preserve_missing_labels=True, in_place=False)


def baseline(step: str, wd: Path) -> float:
    """Seconds of the library call that stands for ``step`` on the whole volume (after reading it)."""
    import syngraph

    p = syngraph.open(wd)
    cfg = p.config
    vs = tuple(cfg.voxel_size_nm)
    if step == "skeletons":
        import kimimaro
        import pyarrow.parquet as pq

        from syngraph.bbox import BBox
        from syngraph.steps.skeletons.run import read_downsampled, relabel_to_cells, teasar_params

        sp = cfg.skeletons
        ds = sp.downsample_for(cfg.voxel_size_nm)
        lay = p.layer("sv")
        box = BBox.from_shape(tuple(-(-s // d) for s, d in zip(lay.shape, ds, strict=True)))
        m = pq.read_table(wd / "tables" / "sv_to_cell.parquet")
        ids = m.column("sv_id").to_numpy().astype(np.uint64)
        o = np.argsort(ids)
        lab = relabel_to_cells(read_downsampled(lay, box, ds), ids[o],
                               m.column("cell_id").to_numpy().astype(np.uint64)[o])
        lab = np.asfortranarray(lab)
        t0 = time.perf_counter()
        kimimaro.skeletonize(lab, teasar_params=dict(teasar_params(sp)), dust_threshold=sp.dust_threshold_vx,
                             anisotropy=tuple(v * d for v, d in zip(vs, ds, strict=True)),
                             fix_borders=True, fix_branching=True, progress=False, parallel=1)
        return time.perf_counter() - t0
    import cc3d
    import edt
    import fastremap

    sv = np.asfortranarray(p.layer("sv").read())
    t0 = time.perf_counter()
    if step == "rag":
        cc3d.contacts(sv, connectivity=6, anisotropy=vs)
    elif step == "astrocytes":
        edt.edt(sv, anisotropy=vs, parallel=1)
    elif step == "cells":
        fastremap.unique(sv)
        _cells(wd, sv)
    elif step == "synapses":
        cells = _cells(wd, sv)
        t0 = time.perf_counter()
        cc3d.contacts(cells, connectivity=6, anisotropy=vs)
    return time.perf_counter() - t0


BASELINES = {"init": "zmesh+cc3d+fastremap (bench/init.py)", "rag": "cc3d.contacts(sv)",
             "astrocytes": "edt.edt(sv)", "cells": "fastremap.unique+remap",
             "skeletons": "kimimaro.skeletonize(cells)", "synapses": "cc3d.contacts(cells)"}


def run_baseline(step: str, wd: Path) -> dict[str, float]:
    """The baseline in a fresh process: its CPU seconds (process total, reading included) and peak RSS."""
    cmd = ([sys.executable, str(BENCH / "init.py"), "--baseline", str(wd)] if step == "init"
           else [sys.executable, __file__, "--baseline", step, str(wd)])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    wall, cpu, r = timed(cmd, env=env)
    _check(r, f"baseline {step}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return {"base_call_s": out["seconds"], "base_cpu_s": cpu, "base_peak_rss_mb": out["peak_rss_mb"]}


# --- the run -------------------------------------------------------------------------------------


def run_each(wd: Path, args: argparse.Namespace) -> list[dict]:
    """Every step as its own ``syngraph run <step>`` process (each starts its own Dask cluster)."""
    from syngraph.engine.done import read_done
    from syngraph.pipeline import step_names

    rows = []
    for step in step_names():
        wall, cpu, r = timed(syngraph_cmd("run", step, "--wd", str(wd), *compute_args(args)))
        row: dict = {"step": step, "wall_s": wall, "cpu_s": cpu}
        if r.returncode != 0:
            row["error"] = "failed: " + (r.stderr.strip().splitlines() or ["?"])[-1][:200]
        else:
            row["peak_rss_mb"] = (read_done(wd, step) or {}).get("peak_rss_mb")
        rows.append(row)
        print(f"#   {step}: {wall:.1f} s wall, {cpu:.1f} CPU-s" + (f" {row['error']}" if "error" in row
              else ""), flush=True)
    return rows


def recorded_rows(wd: Path, err: str = "no finished record") -> list[dict]:
    """Per step, in pipeline order, its last record in ``steps/<step>/runs.json`` (wall and CPU seconds
    of all its processes, workers included, and their peak memory); a step without a finished record
    gets a row with ``error``."""
    from syngraph.engine.records import read_runs
    from syngraph.pipeline import step_names

    rows = []
    for step in step_names():
        last = (read_runs(wd / "steps" / step) or [{}])[-1]
        if last.get("status") != "ok" or "cpu_s" not in last:  # no cpu_s: recorded before it was
            rows.append({"step": step, "wall_s": last.get("seconds") or 0.0, "cpu_s": last.get("cpu_s") or 0.0,
                         "error": f"{last.get('status', 'not run')}: {err}" if last else "not run"})
            continue
        rows.append({"step": step, "wall_s": last["seconds"], "cpu_s": last["cpu_s"],
                     "peak_rss_mb": last["peak_rss_mb"]})
    return rows


def run_all(wd: Path, args: argparse.Namespace) -> list[dict]:
    """One ``syngraph run all`` (one Dask cluster); per step its record (:func:`recorded_rows`). The row
    ``overhead`` is the rest of the process tree's CPU: Python start, checks, the cluster's start and
    stop, the report."""
    wall, cpu, r = timed(syngraph_cmd("run", "all", "--wd", str(wd), *compute_args(args)))
    rows = recorded_rows(wd, (r.stderr.strip().splitlines() or ["?"])[-1][:200])
    for row in rows:
        print(f"#   {row['step']}: {row['wall_s']:.1f} s wall, {row['cpu_s']:.1f} CPU-s", flush=True)
    rows.append({"step": "overhead", "wall_s": max(0.0, wall - sum(x["wall_s"] for x in rows)),
                 "cpu_s": max(0.0, cpu - sum(x["cpu_s"] for x in rows))})
    return rows


def set_config(wd: Path, assignments: list[str]) -> None:
    """Apply ``section.key=value`` (value as TOML) to ``wd``'s syngraph.toml before the run."""
    import tomllib

    from syngraph.config import load_config, write_config

    cfg = load_config(wd)
    for a in assignments:
        key, value = a.split("=", 1)
        section, field = key.split(".")
        part = getattr(cfg, section)
        setattr(cfg, section, part.model_validate({**part.model_dump(), field: tomllib.loads(f"v = {value}")["v"]}))
    if assignments:
        write_config(wd, cfg)


def bench_dataset(name: str, root: Path, args: argparse.Namespace) -> dict:
    from syngraph.io.volume import open_layer
    from syngraph.pipeline import volume_units

    wd = root / name
    t0 = time.perf_counter()
    setup = make_dataset(name, wd, args)
    set_config(wd, args.set)
    nvx = int(np.prod(open_layer(wd, "sv").shape))
    print(f"# {name}: {nvx / 1e6:.1f} MVx, set up in {time.perf_counter() - t0:.0f} s", flush=True)
    rows = [setup] if "step" in setup else []
    rows += (run_each(wd, args) if args.per_step else run_all(wd, args))
    if not args.no_baseline:
        for row in rows:
            if row["step"] in BASELINES and "error" not in row:
                row.update(run_baseline(row["step"], wd))
                row["ratio_cpu"] = row["cpu_s"] / row["base_cpu_s"]
    result = summarise(name, nvx, rows, args, setup.get("synth_wall_s"), volume_units(wd)[1])
    if not args.keep:
        shutil.rmtree(wd, ignore_errors=True)
    return result


def summarise(name: str, nvx: int, rows: list[dict], args: argparse.Namespace, synth_wall_s: float | None = None,
              units: dict[str, float] | None = None) -> dict:
    """A dataset's result: its rows with MVx per CPU-second and share, and the total row; ``units``:
    its size in each cost unit (``syngraph.pipeline.volume_units``)."""
    total_cpu = sum(r["cpu_s"] for r in rows)
    for r in rows:
        r["mvx_per_cpu_s"] = nvx / 1e6 / r["cpu_s"] if r["cpu_s"] else None
        r["share"] = r["cpu_s"] / total_cpu
    total = {"step": "total", "wall_s": sum(r["wall_s"] for r in rows), "cpu_s": total_cpu,
             "mvx_per_cpu_s": nvx / 1e6 / total_cpu, "share": 1.0,
             "peak_rss_mb": max((r.get("peak_rss_mb") or 0) for r in rows)}
    return {"dataset": name, "voxels": nvx, "cores": os.cpu_count(), "scheduler": args.scheduler,
            "workers": args.workers if args.scheduler == "local" else 1,
            "loadavg_1min_end": round(os.getloadavg()[0], 2), "synth_wall_s": synth_wall_s,
            "units": units or {"mvx": nvx / 1e6}, "steps": rows + [total]}


def scaling(results: list[dict]) -> list[dict]:
    """Per step, the exponent between consecutive datasets (by size) and the projection to 1 GVx.

    Fixed costs (process start, imports) flatten the exponent of small volumes, so the projection is the
    larger of the power law (``t * (1 GVx / V) ** exponent``) and the straight line through both points
    (fixed cost + CPU-s per voxel).
    """
    res = sorted(results, key=lambda d: d["voxels"])
    out = []
    for a, b in zip(res, res[1:], strict=False):
        ca = {r["step"]: r["cpu_s"] for r in a["steps"] if "error" not in r}
        cb = {r["step"]: r["cpu_s"] for r in b["steps"] if "error" not in r}
        vr = b["voxels"] / a["voxels"]
        for step in [s for s in cb if s in ca and ca[s] > 0]:
            k = math.log(cb[step] / ca[step]) / math.log(vr)
            per_vx = max(0.0, (cb[step] - ca[step]) / (b["voxels"] - a["voxels"]))
            power, linear = cb[step] * (GVX / b["voxels"]) ** k, cb[step] + per_vx * (GVX - b["voxels"])
            out.append({"from": a["dataset"], "to": b["dataset"], "step": step, "time_ratio": cb[step] / ca[step],
                        "voxel_ratio": vr, "exponent": k, "cpu_s_at_1gvx_power": power,
                        "cpu_s_at_1gvx_linear": linear, "cpu_s_at_1gvx": max(power, linear)})
    return out


def _f(v: object, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def print_tables(results: list[dict], scale: list[dict]) -> None:
    for d in results:
        print(f"\n{d['dataset']}: {d['voxels'] / 1e6:.1f} MVx, scheduler {d['scheduler']}, workers {d['workers']}, "
              f"{d['cores']} cores, load {d['loadavg_1min_end']} at the end")
        print(f"{'step':<13}{'wall_s':>9}{'cpu_s':>9}{'MVx/cpu-s':>10}{'peak_MB':>9}{'share':>7}"
              f"{'base_cpu_s':>11}{'call_s':>8}{'ratio':>8}  baseline")
        for r in d["steps"]:
            if "error" in r:
                print(f"{r['step']:<13}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}  {r['error']}")
                continue
            print(f"{r['step']:<13}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}{_f(r['mvx_per_cpu_s'], '.3f'):>10}"
                  f"{_f(r.get('peak_rss_mb'), '.0f'):>9}{r['share']:>7.1%}{_f(r.get('base_cpu_s'), '.1f'):>11}"
                  f"{_f(r.get('base_call_s'), '.1f'):>8}{_f(r.get('ratio_cpu'), '.1f'):>8}  {BASELINES.get(r['step'], '') if 'ratio_cpu' in r else ''}")
    if scale:
        print(f"\n{'step':<13}{'from':>18}{'to':>18}{'t_ratio':>9}{'vx_ratio':>9}{'exponent':>9}"
              f"{'@1GVx_pow':>10}{'@1GVx_lin':>10}")
        for s in scale:
            print(f"{s['step']:<13}{s['from']:>18}{s['to']:>18}{s['time_ratio']:>9.2f}{s['voxel_ratio']:>9.2f}"
                  f"{s['exponent']:>9.2f}{s['cpu_s_at_1gvx_power']:>10.0f}{s['cpu_s_at_1gvx_linear']:>10.0f}")
        last = [s for s in scale if s["to"] == scale[-1]["to"]]
        tot = next((s for s in last if s["step"] == "total"), None)
        if tot:
            print(f"projected to 1 GVx: {tot['cpu_s_at_1gvx']:.0f} CPU-s = {GVX / 1e6 / tot['cpu_s_at_1gvx']:.3f} "
                  f"MVx/s per core (goal 0.5), {tot['cpu_s_at_1gvx'] / 2 / 60:.0f} min on 2 busy cores")


def write_costs(results: list[dict], path: Path) -> None:
    """The per-step cost lines ``syngraph plan`` reads (src/syngraph/engine/costs.json): through the
    smallest and the largest dataset, steps that ran on both (see syngraph.engine.costs)."""
    import platform
    from dataclasses import asdict
    from datetime import UTC, datetime

    from syngraph.engine.costs import fit_costs, unit_of

    if len(results) < 2:
        sys.exit("--write-costs needs two or more datasets (a line through the smallest and the largest)")
    points: dict[str, list[tuple[float, float, float]]] = {}
    for d in results:
        units = d.get("units") or {"mvx": d["voxels"] / 1e6}
        for r in d["steps"]:
            if "error" not in r and r.get("peak_rss_mb") is not None and r["step"] not in ("total", "import", "overhead"):
                if unit_of(r["step"]) not in units:
                    sys.exit(f"dataset {d['dataset']}: no size in {unit_of(r['step'])!r} (the unit of step "
                             f"{r['step']}); add it to its \"units\" or rerun the benchmark")
                points.setdefault(r["step"], []).append((units[unit_of(r["step"])], r["cpu_s"], r["peak_rss_mb"]))
    n = len(results)
    costs = {k: asdict(v) for k, v in fit_costs({k: v for k, v in points.items() if len(v) == n}).items()}
    d0 = results[0]
    measured = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "by": "bench/pipeline.py",
                "machine": f"{d0['cores']} cores, {platform.machine()}, load {max(d['loadavg_1min_end'] for d in results)}",
                "scheduler": d0["scheduler"] + (f" ({d0['workers']} workers)" if d0["scheduler"] == "local" else ""),
                "datasets": [f"{d['dataset']} ({d['voxels'] / 1e6:.1f} MVx)" for d in results]}
    path.write_text(json.dumps({"measured": measured, "steps": costs}, indent=1) + "\n")
    print(f"# wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", action="append", default=[], metavar="N|X,Y,Z",
                    help="synth demo tissue of N^3 or X,Y,Z voxels (repeatable)")
    ap.add_argument("--pinky40", action="store_true", help="../shared/data/pinky40 (labels only, 134 MVx)")
    ap.add_argument("--pinky40-8nm", action="store_true", help="../shared/data/pinky40_8nm (labels only, 537 MVx)")
    ap.add_argument("--scheduler", default="local", help='"local" (Dask LocalCluster) or "serial"')
    ap.add_argument("--workers", type=int, default=2, help="worker processes of a local cluster")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a config value for every dataset's run, e.g. skeletons.skeleton_voxel_nm=32 (repeatable)")
    ap.add_argument("--per-step", action="store_true",
                    help="run each step as its own `syngraph run <step>` (default: one `syngraph run all`)")
    ap.add_argument("--keep", action="store_true", help="keep the working directories (printed)")
    ap.add_argument("--root", default=None, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--json", default=None, help="write every number to this file")
    ap.add_argument("--write-costs", nargs="?", const=str(COSTS), default=None, metavar="PATH",
                    help="write the per-step costs `syngraph plan` uses (default src/syngraph/engine/costs.json)")
    ap.add_argument("--costs-from", default=None, metavar="JSON",
                    help="write the costs from a saved --json result instead of running (with --write-costs)")
    ap.add_argument("--from-wd", action="append", default=[], metavar="DIR",
                    help="no run: the table of a working directory a `syngraph run all` ran in (repeatable; "
                         "--scheduler and --workers should say how it ran)")
    ap.add_argument("--baseline", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline:
        sec = baseline(args.baseline[0], Path(args.baseline[1]))
        print(json.dumps({"seconds": sec, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    if args.costs_from:
        write_costs(json.loads(Path(args.costs_from).read_text())["datasets"], Path(args.write_costs or COSTS))
        return
    if args.from_wd:
        from syngraph.io.volume import open_layer
        from syngraph.pipeline import volume_units

        results = [summarise(Path(d).name, int(np.prod(open_layer(d, "sv").shape)), recorded_rows(Path(d)), args,
                             units=volume_units(d)[1]) for d in args.from_wd]
        print_tables(results, scaling(results))
        return
    names = []
    for d in args.demo:
        s = [int(v) for v in d.split(",")]
        names.append("demo_" + "x".join(str(v) for v in (s * 3 if len(s) == 1 else s)))
    names += ["pinky40"] * args.pinky40 + ["pinky40_8nm"] * args.pinky40_8nm
    if not names:
        ap.error("name at least one dataset: --demo N, --pinky40 or --pinky40-8nm")
    root = Path(args.root or tempfile.mkdtemp(prefix="bench_pipeline_"))
    root.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for name in names:
            results.append(bench_dataset(name, root, args))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"# working directories kept in {root}")
    scale = scaling(results)
    print_tables(results, scale)
    if args.json:
        Path(args.json).write_text(json.dumps({"datasets": results, "scaling": scale}, indent=1))
    if args.write_costs:
        write_costs(results, Path(args.write_costs))


if __name__ == "__main__":
    main()
