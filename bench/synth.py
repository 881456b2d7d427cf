"""Throughput and peak memory of the demo tissue generator.

Usage::

    python bench/synth.py                      # 256^3 and 512^3, 2 local workers
    python bench/synth.py --sizes 256 --workers 1 --repeats 3

Prints one line per run: shape, seconds (geometry / render / tables / total), MVx/s and peak RSS of
this process and its children (the Dask workers), plus the tissue's counts.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil

from syngraph.engine import Compute
from syngraph.synth import synthesize


class PeakRSS:
    """Samples the RSS of this process and its children every 50 ms (sum, in MB)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = me.memory_info().rss
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total / 2**20)
            time.sleep(0.05)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="cube edge in voxels")
    ap.add_argument("--workers", type=int, default=2, help="local Dask workers (1 = serial)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--block", type=int, nargs=3, default=None, help="block size XYZ (voxels)")
    ap.add_argument("--keep", type=Path, default=None, help="write into this directory and keep it")
    args = ap.parse_args()
    compute = Compute(scheduler="serial") if args.workers <= 1 else Compute(workers=args.workers)
    print(f"# syngraph.synth benchmark, {args.workers} worker(s), voxel size 10x10x25 nm")
    print("shape        geometry_s  render_s  tables_s  total_s   MVx/s  peak_MB  cells  svs  synapses  mi  vc")
    for size in args.sizes:
        for _ in range(args.repeats):
            out = args.keep or Path(tempfile.mkdtemp(prefix="synth-bench-"))
            try:
                with PeakRSS() as mem:
                    r = synthesize(out / f"s{size}", (size, size, size), seed=args.seed,
                                   block_size_vx=args.block, compute=compute, overwrite=True,
                                   progress=False)
                self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"{size}^3  {r.geometry_s:10.1f} {r.render_s:9.1f} {r.tables_s:9.1f} "
                      f"{r.total_s:8.1f} {r.mvx_per_s:7.2f} {max(mem.peak, self_peak):8.0f} "
                      f"{r.n_cells:6d} {r.n_sv:5d} {r.n_synapses:9d} {r.n_mi:4d} {r.n_vc:3d}",
                      flush=True)
            finally:
                if args.keep is None:
                    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
