"""The whole pipeline with ids above 2**63 gives the same wiring as with small ids (ids mapped)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from syngraph.engine import Compute
from syngraph.synth.generate import BIG_ID_OFFSET

SERIAL = Compute(scheduler="serial")
# coarse voxels: a dozen synapses in a small, fast volume
SHAPE, VOXEL_NM = (96, 96, 48), (24.0, 24.0, 60.0)


def _pipeline(wd, big_ids: bool):
    from syngraph.pipeline import run_step, step_names
    from syngraph.synth import synthesize

    synthesize(wd, shape_xyz=SHAPE, voxel_size_nm=VOXEL_NM, seed=3, big_ids=big_ids, compute=SERIAL)
    for name in step_names():
        run_step(wd, name, compute=SERIAL)
    return wd


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("ids")
    return _pipeline(root / "small", False), _pipeline(root / "big", True)


def _mapped(small: np.ndarray) -> np.ndarray:
    """The big-id twin of small ids (0 stays background)."""
    small = small.astype(np.uint64)
    return np.where(small > 0, small + np.uint64(BIG_ID_OFFSET), np.uint64(0))


ID_COLUMNS = {
    "sv": ("id",),
    "cells": ("cell_id",),
    "sv_to_cell": ("sv_id", "cell_id"),
    "cell_graph": ("sv_a", "sv_b"),
    "syn_ssv": ("pre_cell_id", "post_cell_id", "pre_sv_id", "post_sv_id", "compartments_pre_cell_id"),
    "synapses": ("pre_cell_id", "post_cell_id", "pre_sv_id", "post_sv_id", "compartments_pre_cell_id"),
    "connections": ("pre_cell_id", "post_cell_id"),
}


@pytest.mark.parametrize("table", list(ID_COLUMNS))
def test_big_ids_give_the_same_tables(pair, table):
    small, big = (pq.read_table(wd / "tables" / f"{table}.parquet") for wd in pair)
    assert small.num_rows == big.num_rows
    assert small.column_names == big.column_names
    for col in small.column_names:
        a, b = small[col].to_numpy(zero_copy_only=False), big[col].to_numpy(zero_copy_only=False)
        if col in ID_COLUMNS[table]:
            assert b.dtype == np.uint64, col
            np.testing.assert_array_equal(b, _mapped(a), err_msg=f"{table}.{col}")
        elif a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, rtol=1e-6, err_msg=f"{table}.{col}")
        elif a.dtype.kind != "O":
            np.testing.assert_array_equal(b, a, err_msg=f"{table}.{col}")


def test_the_demo_has_ids_above_2_63_and_synapses(pair):
    _, big = pair
    cells = pq.read_table(big / "tables" / "cells.parquet")["cell_id"].to_numpy()
    syn = pq.read_table(big / "tables" / "synapses.parquet")
    assert cells.min() > 2**63 and cells.max() < 2**64
    assert syn.num_rows >= 5  # a real wiring diagram to compare, not an empty table
    assert syn["pre_cell_id"].to_numpy().min() > 2**63
