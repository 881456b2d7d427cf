"""Benchmark of the astrocyte feature pass on one block against the distance transform it needs.

    python bench/astrocytes.py [--block 256] [--repeats 3]

On a pinky40 block (``../shared/data/pinky40``; ``--block`` voxels a side plus the 8-voxel halo),
``--repeats`` times in alternation: ``block_morphology`` (renumber, EDT, face counts, moments,
convex-hull vertices) and the baseline, one ``edt.edt`` call on the same labels. Prints the
seconds of each, their ratio, the share of the convex-hull vertices and the moments, and the
peak RSS of this process.
"""

from __future__ import annotations

import argparse
import gzip
import resource
import time
from pathlib import Path

import numpy as np

PINKY = Path(__file__).resolve().parents[2] / "shared" / "data" / "pinky40" / "connectomics.npy.ckl.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not PINKY.exists():
        raise SystemExit(f"pinky40 not found at {PINKY}: the repository must sit next to shared/data/pinky40")
    import crackle
    import edt
    import fastremap

    from syngraph.bbox import BBox
    from syngraph.steps import astrocytes as A

    vs = (16.0, 16.0, 40.0)
    lab = crackle.decompress(gzip.open(PINKY, "rb").read()).astype(np.uint64)
    full = BBox.from_shape(lab.shape)
    core = BBox((0, 0, 0), (args.block,) * 3)
    read = core.grow(A.EDT_HALO_VX, clip=full)
    sub = np.ascontiguousarray(lab[read.slices])
    del lab
    renum, _ = fastremap.renumber(sub, preserve_zero=True, in_place=False)
    n = int(renum.max()) + 1
    cs = core.local_slices(read)
    for r in range(args.repeats):
        t = time.perf_counter()
        A.block_morphology(sub, core, read, vs)
        ours = time.perf_counter() - t
        t = time.perf_counter()
        edt.edt(renum, anisotropy=vs, black_border=False, parallel=1)
        base = time.perf_counter() - t
        t = time.perf_counter()
        A._block_hull_vertices(renum, cs, np.asarray(core.start), n)
        hull = time.perf_counter() - t
        t = time.perf_counter()
        A._block_moments(renum[cs], np.asarray(core.start), vs, n)
        mom = time.perf_counter() - t
        print(f"run {r}: block_morphology {ours:.2f} s, edt {base:.2f} s, ratio {ours / base:.2f}; "
              f"hull vertices {hull:.2f} s ({hull / ours:.0%}), moments {mom:.2f} s ({mom / ours:.0%})")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          f"({sub.nbytes / 2**20:.0f} MB of uint64 labels in the block)")


if __name__ == "__main__":
    main()
