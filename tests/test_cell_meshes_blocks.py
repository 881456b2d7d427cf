"""Cell meshes per block (steps/cell_meshes.py): fragments stay inside their block, join exactly."""

from __future__ import annotations

import json

import numpy as np
from test_rag import SERIAL, make_project, stripes

from syngraph.config import load_config, write_config
from syngraph.meshes import decode_legacy, is_closed, read_mesh, volume, weld_fragments
from syngraph.project import Project
from syngraph.steps.cells import run_cells
from syngraph.steps.rag import run_rag


def test_a_cell_across_blocks_is_one_fragment_per_block_each_inside_its_block(tmp_path):
    wd = make_project(tmp_path, stripes(), block=(8, 8, 8), min_cc_size_nm=100.0, mesh=True)
    ds = (2, 2, 1)
    cfg = load_config(wd)
    cfg.meshes.sv_downsample = ds
    write_config(wd, cfg)
    (tmp_path / "graph.csv").write_text("sv_a,sv_b\n1,2\n3,4\n")  # cells across blocks
    run_rag(wd, compute=SERIAL, rag=tmp_path / "graph.csv")
    run_cells(wd, compute=SERIAL)
    pr = Project(wd)
    vs = np.asarray(load_config(wd).voxel_size_nm)
    block = np.asarray(8) * vs  # 8-voxel blocks (a multiple of the pooling), in nm
    mesh_dir = wd / "meshes" / "cells"
    several = 0
    for cid in pr.objects("cells").column("cell_id").to_numpy():
        frags = json.loads((mesh_dir / f"{int(cid)}:0").read_text())["fragments"]
        several += len(frags) > 1
        parts = []
        for name in frags:
            v, f = decode_legacy((mesh_dir / name).read_bytes())
            parts.append((v, f))
            # a fragment's vertices lie within its block grown by one pooled voxel (+ the fit's shift)
            bmin = v.min(0) // block
            assert (v.max(0) - bmin * block <= block + np.asarray(ds) * vs + 1e-3).all(), name
        v, f = read_mesh(mesh_dir, int(cid))
        assert is_closed(f) and len(f) == sum(len(x[1]) for x in parts)
        assert np.isclose(volume(v, f), sum(volume(*x) for x in parts), rtol=1e-9)  # the pieces add up
    assert several >= 2


def test_welding_fragments_keeps_two_sheets_that_touch_within_a_fragment():
    # one fragment with two vertices at one position (two sheets touching), another sharing both
    a = np.array([[0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    b = np.array([[1, 0, 0], [1, 0, 0], [2, 0, 0]], np.float32)
    v, f = weld_fragments([a, b], [np.array([[0, 1, 3], [0, 3, 2]]), np.array([[0, 2, 1]])])
    assert len(v) == 5  # the two (1, 0, 0) of each fragment pair up; they are not merged into one
    assert f.tolist() == [[0, 1, 3], [0, 3, 2], [1, 4, 2]]
