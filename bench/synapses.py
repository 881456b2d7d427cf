"""Benchmark: contact-site and synapse extraction, blockwise on Dask vs one whole-volume call.

    python bench/synapses.py                       # demo tissue 256^3 and 512^3, and pinky40
    python bench/synapses.py --cases demo256       # a subset
    python bench/synapses.py --workers 2

For each volume, in one run:
- ``syngraph``: ``run_synapses`` (contacts, synaptic voxels, clustering, features; the demo tissue
  uses its true ``sv_to_cell``; pinky40 has no sj map, so contacts only) with the default blocks on
  a local Dask cluster of ``--workers`` processes;
- ``whole``: the same step in this process (serial) with one block covering the whole volume: the
  single-process whole-volume baseline;
- ``cc3d``: ``cc3d.contacts`` on the whole volume (faces and areas only: a lower bound on the work).
Ratios are baseline time / syngraph time (> 1: syngraph is faster); MVx/s per core = voxels / seconds
/ 1e6 / workers. Peak memory: the largest task (block) and the main process.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

PINKY = Path(__file__).resolve().parents[2] / "shared" / "data" / "pinky40" / "connectomics.npy.ckl.gz"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def task_peak_mb(wd: Path) -> float:
    peaks = [json.loads(p.read_text())["peak_rss_mb"] for p in (wd / "steps").rglob("tasks/*.done")]
    return max(peaks, default=0.0)


def make_case(name: str, tmp: Path) -> tuple[Path, bool]:
    """A working directory for the case; returns it and whether it has synapse inputs."""
    wd = tmp / name
    if name.startswith("demo"):
        from syngraph.engine import Compute
        from syngraph.synth import synthesize

        n = int(name[4:])
        synthesize(wd, shape_xyz=(n, n, n // 2), seed=101, compute=Compute(scheduler="serial"), progress=False)
        (wd / "tables").mkdir(exist_ok=True)
        shutil.copy(wd / "gt" / "sv_to_cell.parquet", wd / "tables" / "sv_to_cell.parquet")
        return wd, True
    import crackle

    from syngraph.config import default_config, write_config
    from syngraph.io.volume import create_layer

    if not PINKY.exists():
        raise SystemExit(f"pinky40 not found at {PINKY}")
    lab = np.ascontiguousarray(crackle.decompress(gzip.open(PINKY, "rb").read()).astype(np.uint64))
    cfg = default_config((16.0, 16.0, 40.0))
    write_config(wd, cfg)
    create_layer(wd, "sv", lab.shape, "uint64", (16, 16, 40)).write(lab)
    return wd, False


def run_case(name: str, workers: int, tmp: Path) -> dict:
    import cc3d

    from syngraph.config import load_config
    from syngraph.engine import Compute
    from syngraph.io.volume import open_layer
    from syngraph.steps.synapses.run import run_synapses

    wd, has_syn = make_case(name, tmp)
    sv = open_layer(wd, "sv")
    n_vx = int(np.prod(sv.shape))
    t0 = time.perf_counter()
    res = run_synapses(wd, compute=Compute(workers=workers), progress=False, contacts_only=not has_syn)
    t_ours = time.perf_counter() - t0
    peak_block = task_peak_mb(wd)

    cfg = load_config(wd)
    cfg.compute.block_size_vx = tuple(sv.shape)
    t0 = time.perf_counter()
    whole = run_synapses(wd, config=cfg, compute=Compute(scheduler="serial"), progress=False,
                         contacts_only=not has_syn, overwrite=True)
    t_whole = time.perf_counter() - t0

    lab = sv.read()
    t0 = time.perf_counter()
    ref = cc3d.contacts(lab, connectivity=6, surface_area=True, anisotropy=sv.info.voxel_size_nm)
    t_cc3d = time.perf_counter() - t0
    return {
        "case": name,
        "shape": list(sv.shape),
        "synapses": res.get("n_synapses"),
        "contact_pairs": res["n_contact_pairs"],
        "contact_pairs_whole": whole["n_contact_pairs"],
        "touching_pairs_cc3d": len(ref),
        "syngraph_s": round(t_ours, 2),
        "syngraph_mvx_s_per_core": round(n_vx / t_ours / 1e6 / workers, 2),
        "whole_volume_s": round(t_whole, 2),
        "cc3d_contacts_s": round(t_cc3d, 2),
        "ratio_whole_over_syngraph": round(t_whole / t_ours, 2),
        "ratio_cc3d_over_syngraph": round(t_cc3d / t_ours, 3),
        "peak_block_task_mb": round(peak_block),
        "peak_whole_mb": round(peak_mb()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=["demo256", "demo512", "pinky40"])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_synapses_"))
    try:
        for case in args.cases:
            print(json.dumps(run_case(case, args.workers, tmp)), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
