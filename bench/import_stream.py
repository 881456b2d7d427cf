"""Streaming import of a crackle stream against decompress-then-import, measured in the same run.

    PYTHONPATH=src python bench/import_stream.py                    # ../shared/data/pinky40_8nm
    PYTHONPATH=src python bench/import_stream.py --pinky40 --scheduler serial

Baseline (what importing a crackle volume took before ``.ckl`` was a source): ``crackle.decompress``
of the whole stream and ``np.save`` in a child process, then ``syngraph import sv FILE.npy --axes
xyz``. Streamed: ``syngraph import sv FILE.ckl``. Per way: wall and CPU seconds of its process tree
and the peak of the summed resident memory of all its processes (sampled every 0.1 s with
:class:`syngraph.engine.memory.PeakMemory`, Dask workers included), and the ratios streamed /
baseline. Then both layers are compared block by block (they must hold the same voxels).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def measured(cmds: list[list[str]]) -> dict[str, float]:
    """Run ``cmds`` one after the other; wall s, CPU s and peak summed RSS (MB) of their trees."""
    from syngraph.engine.memory import PeakMemory

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with PeakMemory() as pm:
        for cmd in cmds:
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    return {"wall_s": time.perf_counter() - t0, "cpu_s": cpu, "peak_mb": pm.peak_mb}


def same_voxels(a: Path, b: Path) -> bool:
    from syngraph.bbox import BBox
    from syngraph.engine import block_grid
    from syngraph.io.volume import open_layer

    la, lb = open_layer(a, "sv"), open_layer(b, "sv")
    if la.info.dtype != lb.info.dtype or la.info.shape_xyz != lb.info.shape_xyz:
        return False
    return all(np.array_equal(la.read(blk.core), lb.read(blk.core))
               for blk in block_grid(BBox.from_shape(la.info.shape_xyz), (512, 512, 64)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pinky40", action="store_true", help="../shared/data/pinky40 instead of pinky40_8nm")
    ap.add_argument("--scheduler", default="local")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--decompress", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.decompress:
        import crackle

        from syngraph.io.sources import _crackle_bytes

        np.save(args.decompress[1], crackle.decompress(_crackle_bytes(Path(args.decompress[0]))))
        return
    ckl = DATA / "pinky40" / "connectomics.npy.ckl.gz" if args.pinky40 else DATA / "pinky40_8nm" / "pinky40_8nm.ckl"
    vs = ["16", "16", "40"] if args.pinky40 else ["8", "8", "40"]
    compute = ["--scheduler", args.scheduler] + (["--workers", str(args.workers)] if args.scheduler == "local" else [])
    root = Path(tempfile.mkdtemp(prefix="bench_import_"))
    syn = [sys.executable, "-m", "syngraph"]
    try:
        npy = root / "sv.npy"
        base = measured([[sys.executable, __file__, "--decompress", str(ckl), str(npy)],
                         [*syn, "import", "sv", str(npy), "--wd", str(root / "base"), "--axes", "xyz",
                          "--voxel-size-nm", *vs, *compute]])
        npy.unlink()
        stream = measured([[*syn, "import", "sv", str(ckl), "--wd", str(root / "stream"), "--voxel-size-nm", *vs,
                            *compute]])
        same = same_voxels(root / "base", root / "stream")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{ckl.name}, scheduler {args.scheduler}" + (f", {args.workers} workers" if args.scheduler == "local" else ""))
    print(f"{'way':<28}{'wall_s':>8}{'cpu_s':>8}{'peak_MB':>9}")
    for name, m in (("decompress + import .npy", base), ("import .ckl (streamed)", stream)):
        print(f"{name:<28}{m['wall_s']:>8.1f}{m['cpu_s']:>8.1f}{m['peak_mb']:>9.0f}")
    print(f"streamed / baseline: wall {stream['wall_s'] / base['wall_s']:.2f}, cpu {stream['cpu_s'] / base['cpu_s']:.2f}, "
          f"peak memory {stream['peak_mb'] / base['peak_mb']:.2f}; same voxels: {same}")


if __name__ == "__main__":
    main()
