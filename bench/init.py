"""Benchmark of the init step against a single-process whole-volume baseline.

    python bench/init.py [--volumes demo256,demo512,pinky] [--workers 2] [--repeats 2] [--no-meshes]

For each volume, ``--repeats`` times in alternation: init on N workers, then the baseline in a fresh
subprocess (one core): read every layer, threshold + morphology + cc3d/watershed, fastremap size
filter and renumber, cc3d.statistics, the overlap counts and zmesh (same downsampling and
simplification) on the full arrays. Printed per run: init wall time, MVx/s per core, the ratio to
the baseline, the peak RSS of one init worker (set by the block size), of the init driver and of
the baseline process (set by the volume size), and seconds per pass.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline(wd: Path) -> float:
    """Whole-volume, single-process run of the same algorithms; returns seconds."""
    import cc3d
    import fastremap
    import zmesh

    import syngraph
    from syngraph.steps.init.overlap import block_overlap
    from syngraph.steps.init.segment import segment_volume

    p = syngraph.open(wd)
    cfg = p.config
    t0 = time.perf_counter()
    sv = p.layer("sv").read()
    vs = tuple(cfg.voxel_size_nm)
    labels = {"sv": (sv, cfg.meshes.sv_downsample)}
    for name, op in cfg.organelles.items():
        if name not in cfg.layers:
            continue
        lay = p.layer(cfg.layers[name].path)
        rng = lay.info.value_range or 255
        seg = segment_volume(
            lay.read(), threshold=op.threshold, value_range=rng, voxel_size_nm=vs, min_size_vx=op.min_size_vx,
            min_seed_vx=op.min_seed_vx, opening=op.opening, closing=op.closing, erosions=op.erosions,
            connectivity=op.connectivity,
        )
        block_overlap(seg, sv)
        labels[name] = (seg, op.mesh_downsample)
    for name, (lab, ds) in labels.items():
        ren, _ = fastremap.renumber(lab, in_place=False)
        cc3d.statistics(np.asfortranarray(ren))
        if name in cfg.meshes.exclude:
            continue
        m = zmesh.Mesher(tuple(d * v for d, v in zip(ds, vs, strict=True)))
        m.mesh(np.asfortranarray(lab[:: ds[0], :: ds[1], :: ds[2]]))
        for i in m.ids():
            if cfg.meshes.simplify:
                m.get(i, normals=False, reduction_factor=cfg.meshes.simplification_factor,
                      max_error=cfg.meshes.max_error_nm)
            else:
                m.get(i, normals=False, reduction_factor=0)
            m.erase(i)
    return time.perf_counter() - t0


def make_volume(kind: str, root: Path) -> Path:
    from syngraph.engine import Compute

    wd = root / kind
    if kind.startswith("demo"):
        from syngraph.synth import synthesize

        n = int(kind[4:])
        synthesize(wd, (n, n, n), seed=11, compute=Compute(workers=2), progress=False)
        return wd
    import crackle

    from syngraph.config import LayerSource, default_config, write_config
    from syngraph.io.volume import create_layer

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "pinky40" / "connectomics.npy.ckl.gz"
    lab = crackle.decompress(gzip.open(path, "rb").read()).astype(np.uint64)
    cfg = default_config((16.0, 16.0, 40.0))
    cfg.layers = {"sv": LayerSource(path="sv", kind="labels")}
    write_config(wd, cfg)
    create_layer(wd, "sv", lab.shape, "uint64", (16, 16, 40), chunks_xyz=(128, 128, 64)).write(lab)
    return wd


def run_baseline(wd: Path) -> dict[str, float]:
    """The baseline in a fresh process: its seconds and peak RSS (MB)."""
    out = subprocess.run(
        [sys.executable, __file__, "--baseline", str(wd)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--volumes", default="demo256,demo512,pinky")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-meshes", action="store_true")
    ap.add_argument("--no-simplify", action="store_true")
    ap.add_argument("--baseline", help=argparse.SUPPRESS)
    ap.add_argument("--make", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline:
        sec = baseline(Path(args.baseline))
        print(json.dumps({"seconds": sec, "peak_rss_mb": _rss_mb()}))
        return
    if args.make:
        make_volume(args.make[0], Path(args.make[1]))
        return
    from syngraph.config import load_config, write_config
    from syngraph.engine import Compute
    from syngraph.io.volume import open_layer
    from syngraph.steps.init import run_init

    root = Path(tempfile.mkdtemp(prefix="bench_init_"))
    try:
        for kind in args.volumes.split(","):
            t0 = time.perf_counter()
            # in a child process: Linux keeps a process's peak RSS across fork + exec, so a driver that
            # held the whole volume would pass its peak on to the dask workers' ru_maxrss
            subprocess.run([sys.executable, __file__, "--make", kind, str(root)], check=True)
            wd = root / kind
            print(f"# {kind}: volume made in {time.perf_counter() - t0:.1f} s", flush=True)
            cfg = load_config(wd)
            if args.no_meshes:
                cfg.meshes.exclude = list(cfg.layers)
            if args.no_simplify:
                cfg.meshes.simplify = False
            write_config(wd, cfg)
            nvx = int(np.prod(open_layer(wd, "sv").shape))
            ratios = []
            for rep in range(args.repeats):
                t0 = time.perf_counter()
                s = run_init(wd, compute=Compute(workers=args.workers), overwrite=True, progress=False)
                t_init = time.perf_counter() - t0
                base = run_baseline(wd)
                ratios.append(t_init / base["seconds"])
                row = {
                    "volume": kind,
                    "repeat": rep,
                    "MVx": round(nvx / 1e6, 1),
                    "workers": args.workers,
                    "init_s": round(t_init, 2),
                    "MVx_per_s_per_core": round(nvx / 1e6 / t_init / args.workers, 2),
                    "baseline_s": round(base["seconds"], 2),
                    "baseline_MVx_per_s": round(nvx / 1e6 / base["seconds"], 2),
                    "ratio_to_baseline": round(t_init / base["seconds"], 2),
                    "block_size_vx": s["block_size_vx"],
                    "n_blocks": s["n_blocks"],
                    "worker_peak_rss_mb": round(s["peak_rss_mb"], 1),
                    "driver_peak_rss_mb": round(_rss_mb(), 1),
                    "baseline_peak_rss_mb": round(base["peak_rss_mb"], 1),
                    "simplify": cfg.meshes.simplify,
                    "passes_s": {k: round(v["seconds"], 2) for k, v in s["passes"].items()},
                    "passes_peak_rss_mb": {k: round(v["peak_rss_mb"]) for k, v in s["passes"].items()},
                    "loadavg_1min": round(os.getloadavg()[0], 1),
                }
                print(json.dumps(row), flush=True)
            print(json.dumps({"volume": kind, "ratio_median": round(float(np.median(ratios)), 2),
                              "ratio_best": round(min(ratios), 2)}), flush=True)
            shutil.rmtree(wd, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
