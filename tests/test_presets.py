"""Tissue variants of the generator (syngraph.synth.presets)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_rag import SERIAL

from syngraph.config import load_config
from syngraph.io.volume import open_layer
from syngraph.synth import SynthError, SynthParams, synthesize
from syngraph.synth.presets import PRESETS, get_preset


def test_preset_params():
    assert PRESETS["default"].params() == SynthParams()  # existing seeds' output unchanged
    fly = PRESETS["fly-fib"].params()
    base = SynthParams()
    assert fly.excitatory_axon_r_nm == tuple(0.5 * r for r in base.excitatory_axon_r_nm)
    assert fly.dendrite_r_min_nm == 0.5 * base.dendrite_r_min_nm and fly.astrocyte_frac == 0.01
    assert fly.spiny_dendrite_frac == base.spiny_dendrite_frac  # same volume fractions: more, thinner cables
    assert PRESETS["no-astrocytes"].params().astrocyte_frac == 0.0
    assert PRESETS["smooth-bends"].params() == SynthParams(bend_substeps=4)
    with pytest.raises(SynthError, match="unknown; presets are default"):
        get_preset("nope")


@pytest.mark.parametrize("name", ["fly-fib", "no-astrocytes", "labels-only", "smooth-bends"])
def test_presets_render_complete_truth(tmp_path, name):
    preset = PRESETS[name]
    wd = tmp_path / name
    synthesize(wd, (64, 64, 48), seed=3, voxel_size_nm=preset.voxel_size_nm, params=preset.params(),
               organelle_maps=preset.organelle_maps, compute=SERIAL, progress=False)
    cfg = load_config(wd)
    assert tuple(cfg.voxel_size_nm) == preset.voxel_size_nm
    assert ({"mi", "vc"} <= set(cfg.layers)) == preset.organelle_maps
    cells = pq.read_table(wd / "gt" / "cells.parquet")
    types = cells.column("type").to_pylist()
    if name == "no-astrocytes":
        assert "astrocyte" not in types
    # the truth is complete: every foreground voxel's supervoxel is in gt/sv_to_cell, every cell in gt/cells
    sv = open_layer(wd, "sv").read()
    s2c = pq.read_table(wd / "gt" / "sv_to_cell.parquet")
    assert set(np.unique(sv[sv > 0]).tolist()) == set(s2c.column("sv_id").to_pylist())
    assert set(s2c.column("cell_id").to_pylist()) == set(cells.column("cell_id").to_pylist())
    assert len(types) > 0


def test_no_astrocyte_tissue_scores_no_astrocyte_recall(tmp_path):
    """With no astrocyte in the tissue the cells step splits nothing, and astrocyte recall is
    NaN (nothing to find), not 0 (everything missed): the evaluation's target then says None."""
    from syngraph.evaluate.cells import score_cells
    from syngraph.pipeline import run_step

    preset = PRESETS["no-astrocytes"]
    wd = tmp_path / "wd"
    synthesize(wd, (64, 64, 48), seed=5, voxel_size_nm=preset.voxel_size_nm, params=preset.params(),
               organelle_maps=preset.organelle_maps, compute=SERIAL, progress=False)
    for step in ("init", "rag", "astrocytes", "cells"):
        run_step(wd, step, compute=SERIAL)
    score = score_cells(wd)
    assert score["n_true_neurons"] > 0 and score["n_split"] == 0
    assert np.isnan(score["astrocyte_recall"])
    assert score["astrocyte_accuracy"] == 1.0 or score["astrocyte_precision"] == 0.0
