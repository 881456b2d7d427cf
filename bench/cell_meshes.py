"""Benchmark of the cell meshes on pinky40 against meshing each cell from its bounding box.

    python bench/cell_meshes.py [--cells 100] [--workdir DIR]

Sets up a working directory with the pinky40 labels (``../shared/data/pinky40``), no graph and
the default pruning (5000 nm), runs rag and cells without meshes, then meshes the same ``--cells``
cells (every k-th by id) two ways in one run:

* ours: ``syngraph.steps.cell_meshes.mesh_cells`` (blockwise occupancy pass + pooled masks; the
  occupancy pass is timed separately and counted in);
* baseline: for each cell, read its bounding box at full resolution, ``np.isin`` its
  supervoxels, max-pool and mesh (``mesh_mask``, the way cells were meshed before).

Prints both times, the ratio, the per-cell time of each, the face counts (both pool on the same
grid only when a cell's box starts on it, so counts are close, not equal) and the peak RSS.
"""

from __future__ import annotations

import argparse
import gzip
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

PINKY = Path(__file__).resolve().parents[2] / "shared" / "data" / "pinky40" / "connectomics.npy.ckl.gz"


def setup(wd: Path) -> None:
    import crackle
    import fastremap
    import pyarrow as pa

    from syngraph.config import default_config, write_config
    from syngraph.engine import Compute, write_table_atomic
    from syngraph.io.volume import create_layer
    from syngraph.steps.cells import run_cells
    from syngraph.steps.rag import run_rag

    lab = crackle.decompress(gzip.open(PINKY, "rb").read()).astype(np.uint64)
    cfg = default_config((16.0, 16.0, 40.0))
    cfg.cells.mesh = False
    write_config(wd, cfg)
    create_layer(wd, "sv", lab.shape, "uint64", (16, 16, 40), chunks_xyz=(128, 128, 128)).write(lab)
    import cc3d

    ren, mapping = fastremap.renumber(lab, in_place=False)
    st = cc3d.statistics(ren)
    inv = {v: k for k, v in mapping.items()}
    idx = np.array([i for i in range(1, len(st["voxel_counts"])) if st["voxel_counts"][i] > 0])
    boxes = [st["bounding_boxes"][i] for i in idx]
    cols = {"id": pa.array([inv[i] for i in idx], pa.uint64()), "size_vx": st["voxel_counts"][idx]}
    for k, attr in (("bbox_min", "start"), ("bbox_max", "stop")):
        for j, a in enumerate("xyz"):
            cols[f"{k}_{a}_vx"] = np.array([getattr(b[j], attr) for b in boxes])
    for j, a in enumerate("xyz"):
        cols[f"rep_{a}_vx"] = np.round(st["centroids"][idx][:, j]).astype(np.int64)
    write_table_atomic(pa.table(cols), wd / "tables" / "sv.parquet")
    serial = Compute(scheduler="serial")
    run_rag(wd, compute=serial)
    run_cells(wd, compute=serial)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=100, help="cells to mesh each way")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    if not PINKY.exists():
        raise SystemExit(f"pinky40 not found at {PINKY}: the repository must sit next to shared/data/pinky40")
    from syngraph.bbox import BBox
    from syngraph.config import load_config
    from syngraph.engine import Compute
    from syngraph.io.volume import open_layer
    from syngraph.meshes import read_mesh
    from syngraph.project import Project
    from syngraph.steps.cell_meshes import compute_occupancy, mesh_cells, mesh_mask

    wd = args.workdir or Path(tempfile.mkdtemp(prefix="bench_cell_meshes_"))
    if not (wd / "tables" / "cells.parquet").exists():
        setup(wd)
    cfg = load_config(wd)
    serial = Compute(scheduler="serial")
    p = Project(wd)
    cells = p.objects("cells").sort_by("cell_id").to_pylist()
    pick = cells[:: max(1, len(cells) // args.cells)][: args.cells]
    ids = np.array([c["cell_id"] for c in pick], np.uint64)

    t = time.perf_counter()
    compute_occupancy(wd, config=cfg, compute=serial, progress=False)
    occ_s = time.perf_counter() - t
    t = time.perf_counter()
    mesh_cells(wd, ids, config=cfg, compute=serial, progress=False)
    ours_s = occ_s + time.perf_counter() - t
    ours_faces = sum(len(read_mesh(wd / "meshes" / "cells", int(c))[1]) for c in ids)

    layer = open_layer(wd, "sv")
    s2c = p.objects("sv_to_cell")
    svs, cell_of = s2c.column("sv_id").to_numpy(), s2c.column("cell_id").to_numpy()
    ds = tuple(cfg.meshes.sv_downsample)
    t = time.perf_counter()
    base_faces = 0
    for c in pick:
        box = BBox(tuple(c[f"bbox_min_{a}_vx"] for a in "xyz"), tuple(c[f"bbox_max_{a}_vx"] for a in "xyz"))
        mask = np.isin(layer.read(box), svs[cell_of == c["cell_id"]])
        base_faces += len(mesh_mask(mask, box.start, layer.info.voxel_size_nm, ds)[1])
    base_s = time.perf_counter() - t
    n = len(pick)
    print(f"pinky40, {n} of {len(cells)} cells, downsample {list(ds)}:")
    print(f"  ours     {ours_s:7.1f} s ({occ_s:.1f} s occupancy pass), {1000 * ours_s / n:.0f} ms/cell, {ours_faces} faces")
    print(f"  baseline {base_s:7.1f} s, {1000 * base_s / n:.0f} ms/cell, {base_faces} faces")
    print(f"  ratio ours / baseline: {ours_s / base_s:.3f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (the process holds the volume during set-up)")
    print(f"workdir: {wd}")


if __name__ == "__main__":
    main()
