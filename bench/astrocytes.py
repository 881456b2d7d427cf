"""Benchmark of the astrocyte feature pass against the distance transform it needs.

    python bench/astrocytes.py [--block 256 256 128] [--repeats 3] [--whole]

On pinky40 (``../shared/data/pinky40``, read as the pipeline reads a block: XYZ in Fortran
order, ``--block`` voxels plus the 8-voxel halo), ``--repeats`` times in alternation:
``block_morphology`` (renumber, EDT, faces, runs, moments, hull candidates) and the baseline,
one ``edt.edt`` call on the same labels. Prints CPU seconds of each, their ratio and the share
of each part, and the peak numpy allocation of one call (tracemalloc). ``--whole`` also runs every block of the volume and the per-label hull volumes
(what the step computes), against ``edt.edt`` on the same blocks. Ends with the peak RSS.
"""

from __future__ import annotations

import argparse
import gzip
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np

PINKY = Path(__file__).resolve().parents[2] / "shared" / "data" / "pinky40" / "connectomics.npy.ckl.gz"
VS = (16.0, 16.0, 40.0)


def _cpu(f, *args):  # noqa: ANN001, ANN202
    t = time.process_time()
    out = f(*args)
    return time.process_time() - t, out


def parts(sub: np.ndarray, core, read) -> dict[str, float]:  # noqa: ANN001
    """CPU seconds of each stage of ``block_morphology`` on one block."""
    import fastremap

    from syngraph.steps import astrocytes as A
    from syngraph.steps import label_runs as R

    s: dict[str, float] = {}
    s["renumber"], (renum, mapping) = _cpu(lambda: fastremap.renumber(sub, preserve_zero=True, in_place=False))
    n = max(mapping.values(), default=0) + 1
    t, perm, cs_t = A._memory_order(renum, core.local_slices(read))
    s["faces"], _ = _cpu(A._face_areas, t, cs_t, VS, n, perm)
    s["runs"], runs = _cpu(R.label_runs, t[cs_t])
    d = np.zeros(t[cs_t].shape, np.float64)
    s["edt sum+max"] = _cpu(R.run_sums, runs, d, n)[0] + _cpu(R.run_max, runs, d, n)[0]
    s["moments"], _ = _cpu(A._block_moments, runs, np.asarray(core.start), VS, n, perm)
    s["hull vertices"], _ = _cpu(A._block_hull_vertices, runs, np.asarray(core.start), perm, np.arange(1, n))
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--block", type=int, nargs=3, default=(256, 256, 128))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--whole", action="store_true", help="also every block of pinky40 and the hull volumes")
    args = ap.parse_args()
    if not PINKY.exists():
        raise SystemExit(f"pinky40 not found at {PINKY}: the repository must sit next to shared/data/pinky40")
    import crackle
    import edt
    import pyarrow as pa

    from syngraph.bbox import BBox
    from syngraph.engine import block_grid
    from syngraph.steps import astrocytes as A
    from syngraph.steps.cells import SvData

    lab = np.asfortranarray(crackle.decompress(gzip.open(PINKY, "rb").read()).astype(np.uint64))
    full = BBox.from_shape(lab.shape)
    core = BBox.from_shape(args.block, (np.array(lab.shape) - args.block) // 2)  # the central block
    read = core.grow(A.EDT_HALO_VX, clip=full)
    sub = np.asfortranarray(lab[read.slices])
    print(f"central block {list(core.shape)} + halo {A.EDT_HALO_VX} of pinky40, CPU seconds")
    for r in range(args.repeats):
        ours, _ = _cpu(A.block_morphology, sub, core, read, VS)
        base, _ = _cpu(lambda: edt.edt(sub, anisotropy=VS, black_border=False, parallel=1))
        print(f"run {r}: block_morphology {ours:.2f} s, edt {base:.2f} s, ratio {ours / base:.2f}")
    tracemalloc.start()
    A.block_morphology(sub, core, read, VS)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"peak numpy allocation of block_morphology {peak / 2**20:.0f} MB "
          f"({sub.nbytes / 2**20:.0f} MB of uint64 labels in the block)")
    p = parts(sub, core, read)
    print("parts: " + ", ".join(f"{k} {v:.2f} s ({v / ours:.0%})" for k, v in p.items()))
    if args.whole:
        blocks = block_grid(full, tuple(args.block), A.EDT_HALO_VX)
        ours = base = 0.0
        tables = []
        for b in blocks:
            block = np.asfortranarray(lab[b.read.slices])
            dt, t = _cpu(A.block_morphology, block, b.core, b.read, VS)
            ours += dt
            tables.append(t)
            base += _cpu(lambda blk=block: edt.edt(blk, anisotropy=VS, black_border=False, parallel=1))[0]
        morph = pa.concat_tables(tables)
        ids = np.unique(morph.column("sv_id").to_numpy()).astype(np.uint64)
        z = np.zeros((ids.size, 3), np.int64)
        hull, _ = _cpu(A._hull_volumes, SvData(ids, np.ones(ids.size, np.int64), z, z, z), morph, VS)
        print(f"whole pinky40 ({len(blocks)} blocks, {ids.size} labels): block_morphology {ours:.1f} s "
              f"+ hull volumes {hull:.1f} s, edt {base:.1f} s, ratio {(ours + hull) / base:.2f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          f"(with the whole volume as uint64, {lab.nbytes / 2**20:.0f} MB)")


if __name__ == "__main__":
    main()
