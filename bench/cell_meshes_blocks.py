"""Cell meshes per block against per cell (main's pass), on pinky40: peak memory, CPU, and the meshes.

    PYTHONPATH=src python bench/cell_meshes_blocks.py --old-src /path/to/main/src [--root DIR]

Sets up ../shared/data/pinky40 (labels only, 16 x 16 x 40 nm) through init, rag, astrocytes and cells
(without meshes) and the cell occupancy pass, then runs the mesh pass of each version alone, serially,
in a fresh process (``--old-src``: a checkout of the per-cell version's ``src``; the new one is this
tree's): the growth of its peak RSS (``VmHWM``) over its RSS before the pass (the arrays the pass
itself held), its CPU seconds, and per cell of the two outputs: faces, closedness, the relative
volume and area difference, and the largest distance from a new vertex to the nearest old vertex
(a one-sided Hausdorff distance on the vertices).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pinky40"
CHILD = """
import json, sys, time
from syngraph.config import load_config
from syngraph.engine import Compute
from syngraph.project import Project
from syngraph.steps.cell_meshes import mesh_cells
wd = sys.argv[1]
cfg = load_config(wd)
ids = Project(wd).objects("cells").column("cell_id").to_numpy()
def status_mb(key):  # VmHWM is this process's own peak (ru_maxrss keeps the parent's across exec)
    line = next(s for s in open("/proc/self/status") if s.startswith(key + ":"))
    return int(line.split()[1]) / 1024
rss0 = status_mb("VmRSS")
c0 = time.process_time()
mesh_cells(wd, ids, config=cfg, compute=Compute(scheduler="serial"), progress=False, step=sys.argv[2])
print(json.dumps({"cpu_s": time.process_time() - c0, "rss_before_mb": rss0, "peak_mb": status_mb("VmHWM")}))
"""


def setup(wd: Path) -> None:
    import gzip

    import crackle

    from syngraph.config import default_config, write_config
    from syngraph.engine import Compute
    from syngraph.io.volume import create_layer
    from syngraph.steps.astrocytes import run_astrocytes
    from syngraph.steps.cell_meshes import compute_occupancy
    from syngraph.steps.cells import run_cells
    from syngraph.steps.init import run_init
    from syngraph.steps.rag import run_rag

    lab = crackle.decompress(gzip.open(DATA / "connectomics.npy.ckl.gz", "rb").read()).astype(np.uint64)
    cfg = default_config((16.0, 16.0, 40.0))
    cfg.layers = {k: v for k, v in cfg.layers.items() if k == "sv"}
    cfg.cells.mesh = False
    write_config(wd, cfg)
    create_layer(wd, "sv", lab.shape, "uint64", (16, 16, 40)).write(lab)
    del lab
    serial = Compute(scheduler="serial")
    run_init(wd, compute=serial, progress=False)
    run_rag(wd, compute=serial)
    run_astrocytes(wd, compute=serial)
    run_cells(wd, compute=serial)
    compute_occupancy(wd, config=cfg, compute=serial, progress=False)


def run_pass(wd: Path, src: str, step: str) -> dict:
    env = {**os.environ, "PYTHONPATH": src}
    r = subprocess.run([sys.executable, "-c", CHILD, str(wd), step], capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def compare(old_dir: Path, new_dir: Path, ids: np.ndarray) -> dict:
    from scipy.spatial import cKDTree

    from syngraph.meshes import area, is_closed, read_mesh, volume

    rows = []
    for c in ids:
        ov, of = read_mesh(old_dir, int(c))
        nv, nf = read_mesh(new_dir, int(c))
        if not len(of):
            rows.append((len(of), len(nf), True, 0.0, 0.0, 0.0, 1))
            continue
        d = cKDTree(ov).query(nv)[0].max() if len(nv) else np.inf
        rows.append((len(of), len(nf), is_closed(nf), abs(volume(nv, nf) / volume(ov, of) - 1),
                     abs(area(nv, nf) / area(ov, of) - 1), float(d), len(json.loads((new_dir / f"{int(c)}:0").read_text())["fragments"])))
    a = np.array(rows, dtype=float)
    return {"cells": len(rows), "same_faces": int((a[:, 0] == a[:, 1]).sum()), "closed": int(a[:, 2].sum()),
            "max_rel_volume_diff": float(a[:, 3].max()), "max_rel_area_diff": float(a[:, 4].max()),
            "max_vertex_distance_nm": float(a[:, 5].max()), "max_fragments": int(a[:, 6].max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old-src", required=True, help="src folder of the per-cell version (e.g. a main checkout)")
    ap.add_argument("--root", default=None, help="working directory (default: a new temporary one)")
    args = ap.parse_args()
    wd = Path(args.root or tempfile.mkdtemp(prefix="bench_cell_meshes_")) / "pinky40"
    if not (wd / "tables" / "cells.parquet").exists():
        wd.mkdir(parents=True, exist_ok=True)
        setup(wd)
    from syngraph.project import Project

    ids = Project(wd).objects("cells").column("cell_id").to_numpy()
    out = {}
    for name, src in (("old", args.old_src), ("new", str(Path(__file__).resolve().parents[1] / "src"))):
        mesh_dir = wd / "meshes" / "cells"
        if mesh_dir.exists():
            mesh_dir.rename(wd / "meshes" / f"cells_{name}_prev")
        out[name] = run_pass(wd, src, f"cells_mesh_{name}")
        mesh_dir.rename(wd / "meshes" / f"cells_{name}")
        o = out[name]
        print(f"{name}: {o['cpu_s']:.1f} CPU-s, peak {o['peak_mb']:.0f} MB, {o['peak_mb'] - o['rss_before_mb']:.0f} MB "
              f"above the process before the pass")
    cmp = compare(wd / "meshes" / "cells_old", wd / "meshes" / "cells_new", ids)
    print(json.dumps(cmp, indent=1))
    print(f"peak growth new / old: {(out['new']['peak_mb'] - out['new']['rss_before_mb']) / (out['old']['peak_mb'] - out['old']['rss_before_mb']):.2f}; "
          f"CPU new / old: {out['new']['cpu_s'] / out['old']['cpu_s']:.2f}")


if __name__ == "__main__":
    main()
