"""Benchmark: the contacts pass of the synapse step against ``cc3d.contacts`` and a baseline revision.

    python bench/contacts.py                               # pinky40 and the demo tissue 256 x 256 x 128
    python bench/contacts.py --cases demo256 --baseline-rev b8bc8ee

Each measurement runs in a fresh process (its own CPU seconds and peak RSS), serially (one core):
- ``new``: ``block_contacts`` of this tree over the synapse step's block grid (default block size,
  the step's halo, dilations and gap search), each block read from the ``sv`` layer as the step does;
- ``base``: the same loop with ``block_contacts`` from ``--baseline-rev`` (default: the last commit
  before the rewrite), loaded from ``git show``: the old implementation measured in the same run;
- ``cc3d``: ``cc3d.contacts`` (6-connected, areas) on the whole array: faces and areas only, no
  contact voxels, dilations or gap search; the read is not timed.
Prints per implementation: CPU seconds, MVx/s per core (voxels / CPU-s / 1e6), peak RSS in MB above
the process's RSS before the loop, and ratios (``new/cc3d`` = how many times cc3d's CPU the pass
spends; ``base/new`` = the speed-up). ``identical`` compares every output array of ``new`` and
``base`` over all blocks (SHA-256 of the arrays).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import subprocess
import tempfile
import time
import types
from pathlib import Path

import numpy as np
from synapses import make_case  # bench/synapses.py, next to this script

ROOT = Path(__file__).resolve().parents[1]
CONTACTS = "src/syngraph/steps/synapses/contacts.py"
BASELINE_REV = "b8bc8ee"


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def rss_mb() -> float:
    return _status_mb("VmRSS:")


def peak_mb() -> float:
    """Peak RSS of this process image (``VmHWM``; ``ru_maxrss`` would include the parent before exec)."""
    return _status_mb("VmHWM:")


def load_baseline(rev: str) -> types.ModuleType:
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{CONTACTS}"], capture_output=True,
                         text=True, check=True).stdout
    mod = types.ModuleType("contacts_baseline")
    exec(compile(src, f"{rev}:{CONTACTS}", "exec"), mod.__dict__)
    return mod


def _digest(h: hashlib._Hash, c: object) -> None:
    for name in ("pairs", "n_faces", "area_nm2", "size_vx", "bbox_min", "bbox_max", "rep", "coord_sum",
                 "entry_pair", "entry_flat", "face_pair", "face_lo_flat", "face_hi_flat", "face_area_nm2",
                 "face_axis"):
        a = np.ascontiguousarray(getattr(c, name))
        h.update(f"{name}{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())


def run_blocks(wd: str, which: str, rev: str, out: mp.Queue) -> None:
    """Child process: block_contacts over the step's grid; CPU s, peak RSS above the start, digest."""
    from syngraph.config import load_config
    from syngraph.engine import block_grid
    from syngraph.io.volume import open_layer

    if which == "new":
        from syngraph.steps.synapses.contacts import block_contacts
    else:
        block_contacts = load_baseline(rev).block_contacts
    cfg = load_config(wd)
    sp = cfg.synapses
    sv = open_layer(wd, "sv")
    gap = tuple(int(f) // 2 for f in sp.cs_filter_size_vx)
    halo = [int(sp.cs_dilations) + max(1, g) for g in gap]
    blocks = block_grid(sv.bbox, cfg.compute.block_size_vx, halo=halo)
    vs = tuple(float(v) for v in sv.info.voxel_size_nm)
    h = hashlib.sha256()
    rss0 = rss_mb()
    t0 = time.process_time()
    for b in blocks:
        core = b.core.local_slices(b.read)
        c = block_contacts(sv.read(b.read), tuple(s.start for s in core), tuple(s.stop for s in core),
                           b.read.start, vs, dilations=int(sp.cs_dilations), gap_search_vx=gap)
        _digest(h, c)
    cpu = time.process_time() - t0
    out.put({"cpu_s": cpu, "peak_mb": peak_mb() - rss0, "digest": h.hexdigest(), "blocks": len(blocks)})


def run_cc3d(wd: str, out: mp.Queue) -> None:
    import cc3d

    from syngraph.io.volume import open_layer

    sv = open_layer(wd, "sv")
    lab = sv.read()
    rss0 = rss_mb()
    t0 = time.process_time()
    ref = cc3d.contacts(lab, connectivity=6, surface_area=True, anisotropy=sv.info.voxel_size_nm)
    out.put({"cpu_s": time.process_time() - t0, "peak_mb": peak_mb() - rss0, "pairs": len(ref)})


def in_child(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    r = q.get()
    p.join()
    return r


def run_case(name: str, rev: str, tmp: Path) -> dict:
    from syngraph.io.volume import open_layer

    wd, _ = make_case(name, tmp)  # bench/synapses.py's volumes: demo tissue (seed 101), pinky40
    n_vx = int(np.prod(open_layer(wd, "sv").shape))
    new = in_child(run_blocks, str(wd), "new", rev)
    base = in_child(run_blocks, str(wd), "base", rev)
    ref = in_child(run_cc3d, str(wd))
    mvx = n_vx / 1e6

    def row(r: dict) -> dict:
        return {"cpu_s": round(r["cpu_s"], 2), "MVx_s_per_core": round(mvx / r["cpu_s"], 2),
                "peak_mb": round(r["peak_mb"])}

    return {
        "case": name, "MVx": round(mvx, 1), "blocks": new["blocks"], "baseline_rev": rev,
        "new": row(new), "base": row(base), "cc3d": {**row(ref), "pairs": ref["pairs"]},
        "identical": new["digest"] == base["digest"],
        "ratio_new_over_cc3d": round(new["cpu_s"] / ref["cpu_s"], 1),
        "ratio_base_over_cc3d": round(base["cpu_s"] / ref["cpu_s"], 1),
        "speedup_base_over_new": round(base["cpu_s"] / new["cpu_s"], 2),
        "peak_base_over_new": round(base["peak_mb"] / max(new["peak_mb"], 1), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=["demo256", "pinky40"])
    ap.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision of the baseline contacts.py")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_contacts_") as tmp:
        for case in args.cases:
            print(json.dumps(run_case(case, args.baseline_rev, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
