"""Fit the shipped node encoder and its reference bank from demo tissue (how
``embeddings_default.safetensors`` was made):

    python -m syngraph.steps.embeddings_demo OUT.safetensors WORKDIR [WORKDIR ...] [--steps N]
    python -m syngraph.steps.embeddings_demo OUT.safetensors WORKDIR ... --weights FILE --bank-only
    python -m syngraph.steps.embeddings_demo OUT.safetensors WORKDIR ... --weights FILE --cell-only

Every working directory must have run ``compartments`` and have ``gt/`` (``syngraph synth``). The
encoder trains without labels on every node; the bank holds every cell over
``celltypes.min_cable_um`` labelled with the type of the true cell holding most of its voxels.
``--bank-only`` keeps the weights of ``--weights`` and rebuilds the bank alone (docs/celltypes.md).
The cell encoder trains without labels on random pieces of every cell; ``--cell-only`` keeps the
node encoder of ``--weights`` and fits the cell encoder and the bank (docs/celltypes.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from syngraph.evaluate.celltypes import true_celltypes
from syngraph.models.embeddings import load_encoders, save_encoders
from syngraph.steps.embeddings import (
    CELL_STEPS,
    bank_of_config,
    fit_cell_encoders,
    load_volume,
    node_vectors,
    train_embeddings,
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("workdirs", type=Path, nargs="+")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--cell-steps", type=int, default=CELL_STEPS)
    ap.add_argument("--weights", type=Path, help="encoder file whose weights --bank-only keeps")
    ap.add_argument("--bank-only", action="store_true")
    ap.add_argument("--cell-only", action="store_true",
                    help="keep the node encoder of --weights, fit the cell encoder and the bank")
    a = ap.parse_args(argv)
    labels = [true_celltypes(wd) for wd in a.workdirs]
    if not (a.bank_only or a.cell_only):
        path, losses, _ = train_embeddings(a.workdirs, a.out, a.steps, labels, a.cell_steps)
        print(f"wrote {path}: final losses {losses}")
        return
    encoders, info = load_encoders(a.weights)
    vols = [load_volume(wd) for wd in a.workdirs]
    node_z = node_vectors(encoders, vols)
    if a.cell_only:
        encoders = fit_cell_encoders(encoders, vols, a.cell_steps, node_z=node_z)
        info |= {"cell_workdirs": " ".join(p.name for p in a.workdirs), "cell_steps": str(a.cell_steps)}
    encoders, bank_info = bank_of_config(encoders, vols, labels, a.workdirs[0], node_z)
    info |= {"bank_workdirs": " ".join(p.name for p in a.workdirs), **bank_info}
    print(f"wrote {save_encoders(a.out, encoders, info)}: bank of {len(encoders['shape'].bank_type)} cells")


if __name__ == "__main__":
    main()
