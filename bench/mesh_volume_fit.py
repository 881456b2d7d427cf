"""Cost of fitting cell meshes to their voxel volume (the measure pass and ``meshes.shrink_distance``).

    python bench/mesh_volume_fit.py [--shape 192 192 96] [--seed 3]

Synthesizes a demo tissue, runs init, rag, astrocytes and cells, then meshes every cell with
``cell_meshes.mesh_cells`` twice per repeat: with the volume fit (pass 1 measures each cell's area
and volume polynomial per block, the driver turns them into a shift) and without it (the baseline:
no measure pass, shift 0, the surface on the max-pooled voxels). Prints the best of three for each,
their ratio, the worst mesh/voxel volume ratio of both among cells above 10,000 voxels, and the
peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=(192, 192, 96))
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    import syngraph.steps.cell_meshes as cm
    from syngraph.config import load_config
    from syngraph.engine import Compute
    from syngraph.meshes import read_mesh, volume
    from syngraph.pipeline import run_step
    from syngraph.synth import synthesize

    serial = Compute(scheduler="serial")
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp) / "wd"
        synthesize(wd, shape_xyz=tuple(args.shape), seed=args.seed, compute=serial)
        for step in ("init", "rag", "astrocytes", "cells"):
            run_step(wd, step, compute=serial)
        cells = pq.read_table(wd / "tables" / "cells.parquet").to_pydict()
        cfg = load_config(wd)
        voxel_nm3 = float(np.prod(cfg.voxel_size_nm))
        fit = (cm.measure_task, cm._shifts)
        no_fit = (lambda task, workdir, config: pa.table({"cell_id": pa.array([], pa.uint64())}),
                  lambda *args: {})
        times: dict[str, list[float]] = {}
        worst: dict[str, float] = {}
        for _ in range(3):
            for name, fns in (("baseline (no fit)", no_fit), ("volume fit", fit)):
                cm.measure_task, cm._shifts = fns
                t0 = time.perf_counter()
                cm.mesh_cells(wd, np.asarray(cells["cell_id"]), config=cfg, compute=serial, progress=False)
                times.setdefault(name, []).append(time.perf_counter() - t0)
                ratios = [abs(volume(*read_mesh(wd / "meshes" / "cells", c))) / (n * voxel_nm3)
                          for c, n in zip(cells["cell_id"], cells["size_vx"], strict=True) if n > 10_000]
                worst[name] = max(ratios, key=lambda r: abs(r - 1))
        cm.measure_task, cm._shifts = fit
    a, b = min(times["baseline (no fit)"]), min(times["volume fit"])
    print(f"{len(cells['cell_id'])} cells, shape {args.shape}")
    for name in times:
        print(f"{name:18s} {min(times[name]):.3f} s   worst mesh/voxel volume (>10k voxels) {worst[name]:.3f}")
    print(f"ratio fit/baseline {b / a:.2f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
