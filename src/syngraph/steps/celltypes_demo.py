"""Fit the shipped cell-type model from demo tissue truth (how ``celltypes_default.npz`` was made):

    python -m syngraph.steps.celltypes_demo OUT.npz WORKDIR [WORKDIR ...]

Every working directory must have run ``compartments`` and have ``gt/`` (``syngraph synth``).
Cells with at least ``--min-cable-um`` (default 1) of skeleton are used, labelled with the type
of the true cell holding most of their voxels; the probabilities are calibrated on those with at
least ``--calibrate-cable-um`` (default 5, the step's minimum) (docs/celltypes.md). Each cell also
adds ``--pieces`` random connected pieces of itself (:mod:`syngraph.steps.celltypes_pieces`), the
cell as smaller volumes cut it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from syngraph.evaluate.celltypes import true_celltypes
from syngraph.steps.celltypes import fit_model, load_cell_inputs
from syngraph.steps.celltypes_pieces import PIECES_PER_CELL, with_pieces


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("workdirs", type=Path, nargs="+")
    ap.add_argument("--min-cable-um", type=float, default=1.0)
    ap.add_argument("--calibrate-cable-um", type=float, default=5.0,
                    help="fit the temperature on cells with this much cable (the step's minimum)")
    ap.add_argument("--pieces", type=int, default=PIECES_PER_CELL,
                    help="random connected pieces per cell added to the training set (0: whole cells only)")
    a = ap.parse_args(argv)
    feats, labels, organelles = [], [], True
    for i, wd in enumerate(a.workdirs):
        inputs = load_cell_inputs(wd)
        f, lab = with_pieces(true_celltypes(wd), inputs, a.pieces, np.random.default_rng(i),
                             min_cable_um=a.min_cable_um)
        feats.append(f)
        labels.append(lab)
        organelles &= not inputs.lacking
    model, acc = fit_model(feats, labels, organelles=organelles,
                           info={"workdirs": " ".join(p.name for p in a.workdirs),
                                 "min_cable_um": str(a.min_cable_um),
                                 "calibrate_cable_um": str(a.calibrate_cable_um), "pieces_per_cell": str(a.pieces)},
                           min_cable_um=a.calibrate_cable_um)
    model.save(a.out)
    print(f"wrote {a.out}: {model.info}")


if __name__ == "__main__":
    main()
