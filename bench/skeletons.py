"""Benchmark the skeletons step against one whole-volume ``kimimaro.skeletonize`` call.

    python bench/skeletons.py demo --shape 256,256,128          # demo tissue (synthesized)
    python bench/skeletons.py pinky40 --crop 256,256,256        # a crop of ../shared/data/pinky40
    python bench/skeletons.py pinky40                           # the whole 512^3 volume (~10 min)
    python bench/skeletons.py demo --downsample 4,4,1 --baseline-downsample 2,2,1   # a coarser setting
    python bench/skeletons.py demo --settings 2,2,1 3,3,1 4,4,1 --no-baseline     # resolutions side by side

Prints MVx/s per core (input voxels at full resolution / seconds / cores; with ``--workers 0`` also
per CPU second, which a loaded machine does not change), peak RSS of the block
tasks and of the baseline, and the ratio of our time to the baseline's. The baseline is
``kimimaro.skeletonize`` on the same cell-labelled, same-downsampled volume with the same TEASAR
parameters and dust threshold, ``parallel=1``, in a subprocess (so its peak memory is its own);
``--baseline-downsample`` gives it another skeleton resolution than ours (what a coarser setting
gains against kimimaro at the default one). On the demo tissue (true cells and kinds) it also
prints the skeleton scores of ``syngraph.evaluate.skeletons`` (what the setting costs).
``--settings`` runs the step once per downsampling on the same volume and prints each one's time
(and ratio to the first) and scores. The default downsampling comes from the voxel size
(``skeletons.skeleton_voxel_nm``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

PINKY = Path(__file__).resolve().parents[2] / "shared" / "data" / "pinky40"


def _baseline(labels_path: str, aniso: tuple[float, float, float], teasar: dict, dust: int, q: mp.Queue) -> None:
    import kimimaro

    try:  # ru_maxrss survives exec; reset the peak so it is this process's own
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    labels = np.load(labels_path)
    t0, c0 = time.perf_counter(), _cpu_s()
    sk = kimimaro.skeletonize(labels, teasar_params=teasar, anisotropy=aniso, dust_threshold=dust,
                              fix_borders=True, fix_branching=True, progress=False, parallel=1)
    q.put({"seconds": time.perf_counter() - t0, "cpu_s": _cpu_s() - c0, "skeletons": len(sk),
           "peak_rss_mb": _vm_hwm_mb()})


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (robust to a loaded machine)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _scores(wd: Path) -> dict[str, float]:
    """The per-kind skeleton scores of the demo tissue, rounded to 4 digits."""
    from syngraph.evaluate.skeletons import score_skeletons

    return {k: round(v, 4) for k, v in score_skeletons(wd).items()
            if isinstance(v, float) and k.startswith(("neuron_", "astrocyte_"))}


def pinky_project(wd: Path, crop: tuple[int, int, int] | None) -> None:
    import crackle

    from syngraph.config import default_config, write_config
    from syngraph.engine import write_table_atomic
    from syngraph.io.volume import create_layer

    files = sorted(PINKY.glob("*.ckl.gz"))
    if not files:
        sys.exit(f"no pinky40 data in {PINKY}")
    arr = crackle.decompress(gzip.open(files[0], "rb").read())
    if crop:
        arr = arr[: crop[0], : crop[1], : crop[2]]
    cfg = default_config((16.0, 16.0, 40.0))
    write_config(wd, cfg)
    lay = create_layer(wd, "sv", arr.shape, "uint64", (16.0, 16.0, 40.0), chunks_xyz=(128, 128, 64))
    lay.write(np.ascontiguousarray(arr).astype(np.uint64))
    ids = np.unique(arr)
    ids = ids[ids != 0].astype(np.uint64)
    write_table_atomic(pa.table({"sv_id": ids, "cell_id": ids}), wd / "tables" / "sv_to_cell.parquet")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", choices=["demo", "pinky40"])
    ap.add_argument("--shape", default="256,256,128", help="demo shape XYZ")
    ap.add_argument("--crop", default=None, help="pinky40 crop XYZ, e.g. 256,256,256")
    ap.add_argument("--workers", type=int, default=1, help="0 = serial in-process")
    ap.add_argument("--block", default=None, help="skeletons.block_size_vx override, e.g. 256,256,128")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--downsample", default=None, help="skeletons.downsample override, e.g. 4,4,1")
    ap.add_argument("--baseline-downsample", default=None, help="the baseline's downsample (default: ours)")
    ap.add_argument("--settings", nargs="*", default=None, help="downsamplings to run side by side, e.g. 2,2,1 4,4,1")
    args = ap.parse_args()

    from syngraph.config import load_config, write_config
    from syngraph.engine import Compute
    from syngraph.io.volume import open_layer
    from syngraph.steps.skeletons.run import (
        read_downsampled,
        relabel_to_cells,
        run_skeletons,
        teasar_params,
    )

    wd = Path(tempfile.mkdtemp(prefix="bench_skel_"))
    try:
        if args.data == "demo":
            from syngraph.synth.generate import synthesize

            shape = tuple(int(v) for v in args.shape.split(","))
            synthesize(wd, shape, args.seed, compute=Compute(scheduler="serial"), progress=False)
            (wd / "tables").mkdir(exist_ok=True)
            shutil.copy(wd / "gt" / "sv_to_cell.parquet", wd / "tables" / "sv_to_cell.parquet")
            import pyarrow.parquet as pq

            from syngraph.engine import write_table_atomic

            cells = pq.read_table(wd / "gt" / "cells.parquet", columns=["cell_id", "type"])
            kind = ["astrocyte" if t == "astrocyte" else "neuron" for t in cells.column("type").to_pylist()]
            write_table_atomic(pa.table({"cell_id": cells.column("cell_id"), "kind": pa.array(kind)}),
                               wd / "tables" / "cells.parquet")
        else:
            crop = tuple(int(v) for v in args.crop.split(",")) if args.crop else None
            pinky_project(wd, crop)  # type: ignore[arg-type]
        cfg = load_config(wd)
        if args.block:
            cfg.skeletons.block_size_vx = tuple(int(v) for v in args.block.split(","))  # type: ignore[assignment]
            write_config(wd, cfg)
        if args.downsample:
            cfg.skeletons.downsample = tuple(int(v) for v in args.downsample.split(","))  # type: ignore[assignment]
            write_config(wd, cfg)
        p = cfg.skeletons
        sv = open_layer(wd, "sv")
        nvx = int(np.prod(sv.shape))
        compute = Compute(scheduler="serial") if args.workers == 0 else Compute(workers=args.workers)
        cores = max(1, args.workers)
        t0, c0 = time.perf_counter(), _cpu_s()
        res = run_skeletons(wd, config=cfg, compute=compute, overwrite=True, progress=False)
        ours, ours_cpu = time.perf_counter() - t0, _cpu_s() - c0
        out = {
            "data": args.data, "shape": list(sv.shape), "block_size_vx": list(p.block_size_vx),
            "ours_s": round(ours, 2), "ours_mvx_s_per_core": round(nvx / ours / cores / 1e6, 3),
            "ours_block_peak_rss_mb": round(res["block_peak_rss_mb"], 1), "cells": res["cells"],
            "main_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "downsample": list(p.downsample_for(sv.info.voxel_size_nm)),
        }
        if args.workers == 0:  # serial: every CPU second is in this process
            out.update({"ours_cpu_s": round(ours_cpu, 2), "ours_mvx_per_cpu_s": round(nvx / ours_cpu / 1e6, 3)})
        if args.data == "demo":
            out.update(_scores(wd))
        user_downsample = p.downsample
        for setting in args.settings or []:
            cfg.skeletons.downsample = tuple(int(v) for v in setting.split(","))  # type: ignore[assignment]
            write_config(wd, cfg)
            t0 = time.perf_counter()
            run_skeletons(wd, config=cfg, compute=compute, overwrite=True, progress=False)
            sec = time.perf_counter() - t0
            row = {"s": round(sec, 2), "ratio_to_default": round(sec / ours, 2),
                   "mvx_s_per_core": round(nvx / sec / cores / 1e6, 3)}
            if args.data == "demo":
                row.update(_scores(wd))
            out[f"downsample_{setting}"] = row
        cfg.skeletons.downsample = user_downsample
        if not args.no_baseline:
            import pyarrow.parquet as pq

            from syngraph.bbox import BBox

            ds = tuple(int(v) for v in args.baseline_downsample.split(",")) if args.baseline_downsample \
                else p.downsample_for(sv.info.voxel_size_nm)
            out["baseline_downsample"] = list(ds)
            shape_ds = tuple(-(-s // d) for s, d in zip(sv.shape, ds, strict=True))
            labels = read_downsampled(sv, BBox.from_shape(shape_ds), ds)  # type: ignore[arg-type]
            m = pq.read_table(wd / "tables" / "sv_to_cell.parquet")
            ids = m.column("sv_id").to_numpy().astype(np.uint64)
            o = np.argsort(ids)
            labels = relabel_to_cells(labels, ids[o], m.column("cell_id").to_numpy().astype(np.uint64)[o])
            path = wd / "labels_ds.npy"
            np.save(path, np.asfortranarray(labels))
            del labels
            aniso = tuple(v * d for v, d in zip(sv.info.voxel_size_nm, ds, strict=True))
            q: mp.Queue = mp.get_context("spawn").Queue()
            proc = mp.get_context("spawn").Process(
                target=_baseline, args=(str(path), aniso, dict(teasar_params(p)), p.dust_threshold_vx, q))
            proc.start()
            base = q.get()
            proc.join()
            out.update({
                "kimimaro_s": round(base["seconds"], 2),
                "kimimaro_mvx_s_per_core": round(nvx / base["seconds"] / 1e6, 3),
                "kimimaro_peak_rss_mb": round(base["peak_rss_mb"], 1),
                "kimimaro_skeletons": base["skeletons"],
                "ratio_ours_to_kimimaro_per_core": round((ours * cores) / base["seconds"], 2),
                "kimimaro_cpu_s": round(base["cpu_s"], 2),
            })
            if args.workers == 0:
                out["ratio_ours_to_kimimaro_cpu"] = round(ours_cpu / base["cpu_s"], 2)
        print(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
