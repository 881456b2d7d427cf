"""Benchmark the compartments step against the skeletons step on the same volume.

    python bench/compartments.py --shape 256,256,128 --seed 5     # demo tissue (synthesized)
    python bench/compartments.py --wd DIR                         # a working directory where
                                                                  # `syngraph run skeletons` ran

Runs ``skeletons`` (the baseline, timed in this run) then ``compartments``, both serial, and
prints seconds per 1,000 skeleton nodes, the ratio compartments / skeletons, and the peak RSS of
each step's tasks. The machine may be shared: read the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from syngraph.engine import Compute
    from syngraph.pipeline import run_step
    from syngraph.synth import synthesize

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wd", type=Path, help="existing working directory (cells step done)")
    ap.add_argument("--shape", default="256,256,128", help="demo tissue X,Y,Z voxels")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    serial = Compute(scheduler="serial")
    tmp = None
    wd = args.wd
    if wd is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_compartments_")
        wd = Path(tmp.name) / "wd"
        shape = tuple(int(v) for v in args.shape.split(","))
        synthesize(wd, shape_xyz=shape, seed=args.seed, compute=serial)  # type: ignore[arg-type]
        for step in ("init", "rag", "astrocytes", "cells"):
            run_step(wd, step, compute=serial, progress=False)
    sk = run_step(wd, "skeletons", compute=serial, overwrite=True, progress=False)
    cm = run_step(wd, "compartments", compute=serial, overwrite=True, progress=False)
    nodes = cm["result"]["nodes"]
    per_k = 1000.0 / max(nodes, 1)
    print(f"volume: {wd}; {cm['result']['cells']} cells, {nodes} skeleton nodes, "
          f"model variant {cm['result']['model_variant']}")
    print(f"skeletons:    {sk['seconds']:8.1f} s  {sk['seconds'] * per_k:6.2f} s / 1000 nodes  "
          f"peak RSS {sk['result']['block_peak_rss_mb']:.0f} MB (tasks), {sk['peak_rss_mb_main']:.0f} MB (main)")
    print(f"compartments: {cm['seconds']:8.1f} s  {cm['seconds'] * per_k:6.2f} s / 1000 nodes  "
          f"peak RSS {cm['result']['task_peak_rss_mb']:.0f} MB (tasks), {cm['peak_rss_mb_main']:.0f} MB (main)")
    print(f"ratio compartments / skeletons: {cm['seconds'] / max(sk['seconds'], 1e-9):.2f}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
