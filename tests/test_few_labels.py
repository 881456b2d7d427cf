"""Few-label training (issue 18): 50 labelled supervoxels of one seed of a tissue variant give a
model that holds on another seed of that variant (slow: two demo volumes through the pipeline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from test_rag import SERIAL

from syngraph.config import load_config, write_config
from syngraph.evaluate.cells import score_cells
from syngraph.pipeline import run_step
from syngraph.steps.astrocytes import demo_labels, train_astrocytes
from syngraph.synth import synthesize
from syngraph.synth.presets import PRESETS

VARIANT = "astrocyte-rich"
TRAIN_SEED, TEST_SEED = 13, 14  # not the seeds the L2 penalty was chosen on (11, 12)


def pick_labels(workdir: Path, n: int, seed: int = 0, max_astrocyte: int = 10) -> Path:
    """A user's labels: ``n`` supervoxels of ``workdir`` drawn at random, at most ``max_astrocyte``
    of them astrocyte (the rest neuron), written as ``labels.csv`` (``sv_id``, ``is_astrocyte``)."""
    ids, y = demo_labels(workdir)
    rng = np.random.default_rng(seed)
    astro = rng.permutation(np.flatnonzero(y > 0.5))[:max_astrocyte]
    neuron = rng.permutation(np.flatnonzero(y <= 0.5))[: n - astro.size]
    pick = np.sort(np.r_[astro, neuron])
    path = workdir / "labels.csv"
    pacsv.write_csv(pa.table({"sv_id": ids[pick], "is_astrocyte": y[pick].astype(np.int64)}), path)
    return path


def variant_workdir(root: Path, seed: int, steps: tuple[str, ...]) -> Path:
    preset = PRESETS[VARIANT]
    wd = root / f"{VARIANT}-{seed}"
    synthesize(wd, (256, 256, 128), seed=seed, voxel_size_nm=preset.voxel_size_nm, params=preset.params(),
               organelle_maps=preset.organelle_maps, compute=SERIAL, progress=False)
    cfg = load_config(wd)
    write_config(wd, cfg.model_copy(update={"cells": cfg.cells.model_copy(update={"mesh": False})}))
    for step in steps:
        run_step(wd, step, compute=SERIAL)
    return wd


@pytest.mark.slow
def test_fifty_labels_hold_on_another_seed(tmp_path):
    """50 labels (10 astrocyte) of seed 13 adapt the shipped model (``--learner auto``: adapt);
    on seed 14 measured accuracy 1.000, 0 splits, 0 merges in 30 in-scope neurons (cv 0.960),
    inside the model's domain. A fresh logistic model from the same labels gave 0.971 and
    1 split (docs/models.md, "Few labels")."""
    train_wd = variant_workdir(tmp_path, TRAIN_SEED, ("init", "rag"))
    labels = pick_labels(train_wd, 50)
    model, cv = train_astrocytes(train_wd, labels, compute=SERIAL)
    test_wd = variant_workdir(tmp_path, TEST_SEED, ("init", "rag"))
    cfg = load_config(test_wd)
    write_config(test_wd, cfg.model_copy(update={"cells": cfg.cells.model_copy(update={"astrocyte_model": str(model)})}))
    for step in ("astrocytes", "cells"):
        run_step(test_wd, step, compute=SERIAL)
    score = score_cells(test_wd)
    print(f"\n{VARIANT}: 50 labels of seed {TRAIN_SEED} (cv {cv:.3f}) -> seed {TEST_SEED}: {score}")
    assert score["astrocyte_held_back"] == 0  # same variant: inside the model's domain
    with np.load(model, allow_pickle=False) as z:
        assert str(z["kind"][0]) == "adapted"
    assert score["n_split"] == 0
    assert score["astrocyte_accuracy"] >= 0.95
