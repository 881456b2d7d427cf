"""Benchmark of cell-type and embedding inference and training on a demo working directory.

    python bench/celltypes.py WORKDIR [--repeats 3] [--train-steps 300]

WORKDIR must have run ``compartments`` (e.g. ``syngraph synth`` + ``syngraph run`` up to it).
Timed, ``--repeats`` times in alternation with the baseline (reading ``tables/skeletons.parquet``
and ``tables/compartments_nodes.parquet``, the input both steps start from):

- celltypes inference: features of every cell + the shipped model (seconds per cell);
- embeddings inference: node features + the shipped encoder, and its cell encoder on the cell
  features (seconds per 1,000 nodes);
- training: the cell-type model on this directory's cells (demo truth labels) with
  ``--pieces`` random pieces of each (``syngraph train celltypes --pieces``), and, when torch is installed,
  the node encoder and the cell encoder (its views: random pieces) for ``--train-steps`` steps.

Prints each time, its ratio to the baseline, and the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--pieces", type=int, default=4)
    a = ap.parse_args()
    from syngraph.evaluate.celltypes import true_celltypes
    from syngraph.models.celltypes import load_model
    from syngraph.models.embeddings import load_encoders
    from syngraph.steps.celltypes import fit_model, load_cell_inputs, predict
    from syngraph.steps.celltypes_pieces import with_pieces
    from syngraph.steps.embeddings import cell_embedding, node_features

    wd = a.workdir
    model, (encoders, _) = load_model(), load_encoders()
    base, ct, emb = [], [], []
    for _ in range(a.repeats):
        t = time.perf_counter()
        pq.read_table(wd / "tables" / "skeletons.parquet")
        pq.read_table(wd / "tables" / "compartments_nodes.parquet")
        base.append(time.perf_counter() - t)
        t = time.perf_counter()
        inputs = load_cell_inputs(wd)
        feats, lacking = inputs.features(), inputs.lacking
        predict(feats, model, not lacking, 5.0)
        ct.append(time.perf_counter() - t)
        t = time.perf_counter()
        nodes, x, lacking = node_features(wd)
        enc = encoders["full" if not lacking else "shape"]
        z = enc.embed(x)
        cell_embedding(enc, nodes, z, feats if enc.cell is not None else None)
        emb.append(time.perf_counter() - t)
    b, c, e = np.median(base), np.median(ct), np.median(emb)
    n_cells, n_nodes = len(feats), len(x)
    print(f"{wd}: {n_cells} cells, {n_nodes} nodes")
    print(f"baseline (read skeleton + compartment tables): {b:.3f} s")
    print(f"celltypes inference: {c:.3f} s = {c / n_cells * 1e3:.2f} ms per cell, ratio to baseline {c / b:.1f}")
    print(f"embeddings inference: {e:.3f} s = {e / n_nodes * 1e3:.3f} s per 1,000 nodes, ratio to baseline {e / b:.1f}")
    labels = true_celltypes(wd).reindex(feats.index).dropna()
    labels = labels[labels.map(labels.value_counts()) >= 2]  # classes with too few cells here
    t = time.perf_counter()
    f, y = with_pieces(labels, inputs, a.pieces, np.random.default_rng(0))
    fit_model([f], [y], organelles=not lacking)
    tt = time.perf_counter() - t
    print(f"celltypes training ({len(labels)} cells + {len(f) - len(labels)} pieces, both variants, "
          f"4-fold temperature): {tt:.2f} s, ratio to baseline {tt / b:.1f}")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("embeddings training: skipped (no torch; pip install 'syngraph[embed]')")
    else:
        from syngraph.models.embeddings import fit_encoder
        from syngraph.steps.embeddings import positives

        pos = positives(nodes["cell_id"], np.c_[nodes["x_nm"], nodes["y_nm"], nodes["z_nm"]])
        t = time.perf_counter()
        fit_encoder(x, pos, tuple(f"f{i}" for i in range(x.shape[1])), steps=a.train_steps)
        te = time.perf_counter() - t
        print(f"embeddings training ({a.train_steps} steps of 256 nodes, 1 thread): {te:.2f} s = "
              f"{te / a.train_steps * 1e3:.1f} ms per step, ratio to baseline {te / b:.1f}")
        from syngraph.models.embeddings import fit_cell_encoder
        from syngraph.steps.embeddings import VIEW_PIECES, cell_descriptor_names, cell_views

        names = cell_descriptor_names("full" if not lacking else "shape")
        t = time.perf_counter()
        views = cell_views(inputs, feats, nodes, z, names, VIEW_PIECES, np.random.default_rng(0))
        tv = time.perf_counter() - t
        fit_cell_encoder(views, names, steps=a.train_steps)
        tc = time.perf_counter() - t - tv
        print(f"cell encoder training: views of {len(views)} cells ({VIEW_PIECES} pieces each) {tv:.2f} s, "
              f"ratio {tv / b:.1f}; {a.train_steps} steps of <= 128 cells {tc:.2f} s = "
              f"{tc / a.train_steps * 1e3:.1f} ms per step, ratio {tc / b:.1f}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
