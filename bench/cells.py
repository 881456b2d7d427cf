"""Benchmark: connected components of random uint64 edge lists (syngraph.graph) vs networkx.

    python bench/cells.py                 # 1e6, 1e7, 1e8 edges + networkx at 1e6
    python bench/cells.py --sizes 1e6 1e7 # a subset

Each measurement runs in a fresh subprocess (peak RSS = that process's ru_maxrss, which includes
the generated edge list). Graph: n_nodes = n_edges random nodes (average degree 2), ids spread
over the uint64 range (id * 2**33 + 7), so renumbering is exercised. networkx is the baseline
only (imported here, never in the library): pip install networkx.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def make_edges(n_edges: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.integers(0, n_edges, size=(n_edges, 2), dtype=np.uint64)
    e *= np.uint64(2**33)
    e += np.uint64(7)
    return e


def run_one(kind: str, n_edges: int) -> dict:
    edges = make_edges(n_edges)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if kind == "syngraph":
        from syngraph.graph import connected_components

        ids, comp = connected_components(edges)
        n_comp = int(np.unique(comp).size)
    else:
        import networkx as nx

        g = nx.Graph()
        g.add_edges_from(edges.tolist())
        comps = list(nx.connected_components(g))
        n_comp = len(comps)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "n_edges": n_edges, "seconds": round(seconds, 3), "n_components": n_comp,
            "peak_rss_mb": round(peak), "rss_before_mb": round(rss0)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="*", type=float, default=[1e6, 1e7, 1e8])
    ap.add_argument("--one", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(float(args.one[1])))))
        return
    runs = [("syngraph", int(s)) for s in args.sizes]
    if 1e6 in args.sizes:
        runs.append(("networkx", int(1e6)))
    results = []
    for kind, n in runs:
        out = subprocess.run([sys.executable, __file__, "--one", kind, str(n)], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{kind} {n:.0e}: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{kind:9s} {n:8.0e} edges: {r['seconds']:8.2f} s  peak RSS {r['peak_rss_mb']:6d} MB  "
              f"(input alone {r['rss_before_mb']} MB)  {r['n_components']} components", flush=True)
    s = {r["kind"]: r for r in results if r["n_edges"] == int(1e6)}
    if "syngraph" in s and "networkx" in s:
        print(f"networkx / syngraph at 1e6 edges: {s['networkx']['seconds'] / s['syngraph']['seconds']:.1f}x time, "
              f"{s['networkx']['peak_rss_mb'] / s['syngraph']['peak_rss_mb']:.1f}x peak memory")


if __name__ == "__main__":
    main()
