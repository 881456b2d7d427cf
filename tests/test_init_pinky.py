"""Step init on the real pinky40 segmentation (../shared/data/pinky40): properties and meshes.

The issue's check (closed meshes, volume within 5 % of the voxel volume) is about meshing
correctness: welding the block pieces into one closed surface. It runs at full resolution
(``sv_downsample`` 1x1x1, no simplification), where marching cubes resolves every neurite. At the
default 4x4x2 a second test checks what changes: the only non-closed interior meshes are the empty
ones of labels that vanish at the downsampling (67 of 945, reported in the run summary as "empty");
the volume error there (29 of 60 labels above 5 %, also 23 of 60 against the downsampled voxel
count) comes from the 64x64x80 nm grid itself (marching cubes cuts the corners of neurites a few
downsampled voxels thick), not from welding. Only the sv layer exists (no organelles).
"""

from __future__ import annotations

import cc3d
import fastremap
import numpy as np
import pytest

import syngraph
from syngraph.config import LayerSource, default_config, write_config
from syngraph.engine import Compute
from syngraph.io.volume import create_layer
from syngraph.meshes import is_closed, volume
from syngraph.steps.init import run_init

VS = (16.0, 16.0, 40.0)


@pytest.fixture(scope="module")
def pinky(pinky40_labels) -> np.ndarray:
    return pinky40_labels.astype(np.uint64)


@pytest.fixture(scope="module")
def pinky_project(pinky, tmp_path_factory):
    wd = tmp_path_factory.mktemp("pinky")
    cfg = default_config(VS)
    cfg.layers = {"sv": LayerSource(path="sv", kind="labels")}
    cfg.meshes.simplify = False  # closedness and volume are checked on the welded marching-cubes mesh
    cfg.meshes.sv_downsample = (1, 1, 1)
    write_config(wd, cfg)
    create_layer(wd, "sv", pinky.shape, "uint64", VS, chunks_xyz=(128, 128, 64)).write(pinky)
    run_init(wd, compute=Compute(workers=2), progress=False)
    return wd


def _init_default_ds(pinky, wd, simplify: bool):
    cfg = default_config(VS)
    cfg.layers = {"sv": LayerSource(path="sv", kind="labels")}
    cfg.meshes.simplify = simplify
    assert tuple(cfg.meshes.sv_downsample) == (4, 4, 2)
    write_config(wd, cfg)
    create_layer(wd, "sv", pinky.shape, "uint64", VS, chunks_xyz=(128, 128, 64)).write(pinky)
    return wd, run_init(wd, compute=Compute(workers=2), progress=False)


@pytest.fixture(scope="module")
def pinky_default_ds(pinky, tmp_path_factory):
    return _init_default_ds(pinky, tmp_path_factory.mktemp("pinky442"), simplify=False)


@pytest.mark.slow
@pytest.mark.pinky
def test_pinky_sv_table_equals_cc3d_statistics(pinky, pinky_project):
    t = syngraph.open(pinky_project).objects("sv").to_pydict()
    ren, remap = fastremap.renumber(pinky, in_place=False)
    st = cc3d.statistics(ren)
    assert len(t["id"]) == 2523
    for k, i in enumerate(t["id"]):
        j = remap[i]
        bb = st["bounding_boxes"][j]
        assert t["size_vx"][k] == st["voxel_counts"][j]
        assert [t[f"bbox_min_{a}_vx"][k] for a in "xyz"] == [s.start for s in bb]
        assert [t[f"bbox_max_{a}_vx"][k] for a in "xyz"] == [s.stop for s in bb]
        assert pinky[t["rep_x_vx"][k], t["rep_y_vx"][k], t["rep_z_vx"][k]] == i


@pytest.mark.slow
@pytest.mark.pinky
def test_pinky_meshes_closed_and_volume_within_5_percent(pinky_project):
    p = syngraph.open(pinky_project)
    t = p.objects("sv").to_pydict()
    n_interior = n_big = 0
    for k, i in enumerate(t["id"]):
        lo = [t[f"bbox_min_{a}_vx"][k] for a in "xyz"]
        hi = [t[f"bbox_max_{a}_vx"][k] for a in "xyz"]
        if min(lo) == 0 or max(hi) == 512:
            continue
        n_interior += 1
        v, f = p.mesh("sv", i)
        assert is_closed(f), f"mesh of interior label {i} is not closed"
        if t["size_vx"][k] > 10_000:
            n_big += 1
            rel = volume(v, f) / (t["size_vx"][k] * np.prod(VS))
            assert abs(rel - 1) <= 0.05, (i, rel)
    assert n_interior == 945 and n_big == 60


@pytest.mark.slow
@pytest.mark.pinky
def test_pinky_default_downsampling_open_meshes_are_vanished_labels(pinky, pinky_default_ds):
    wd, summary = pinky_default_ds
    p = syngraph.open(wd)
    t = p.objects("sv").to_pydict()
    lost = set(fastremap.unique(pinky).tolist()) - set(fastremap.unique(pinky[::4, ::4, ::2]).tolist())
    n_empty = n_closed = 0
    for k, i in enumerate(t["id"]):
        lo = [t[f"bbox_min_{a}_vx"][k] for a in "xyz"]
        hi = [t[f"bbox_max_{a}_vx"][k] for a in "xyz"]
        v, f = p.mesh("sv", i)
        if len(f) == 0:
            assert i in lost and t["mesh_area_um2"][k] == 0.0
            n_empty += 1
        elif min(lo) > 0 and max(hi) < 512:
            assert is_closed(f), f"non-empty mesh of interior label {i} is not closed"
            n_closed += 1
    assert n_empty == len(lost) == summary["layers"]["sv"]["empty"] > 0
    assert n_closed == 878


@pytest.fixture(scope="module")
def pinky_simplified(pinky, tmp_path_factory):
    return _init_default_ds(pinky, tmp_path_factory.mktemp("pinky442s"), simplify=True)


@pytest.mark.slow
@pytest.mark.pinky
def test_pinky_simplified_per_piece_closed_and_volume_of_unsimplified(pinky_simplified, pinky_default_ds):
    """Simplified per block piece: every non-empty mesh closed (border labels too), fewer faces, and
    labels > 10,000 voxels within 1 % of the volume of their unsimplified welded mesh."""
    wd, summary = pinky_simplified
    base, base_summary = pinky_default_ds
    s, b = summary["layers"]["sv"], base_summary["layers"]["sv"]
    assert s["meshes"] == s["closed"] == b["meshes"] == 2411
    assert s["faces"] < 0.6 * b["faces"]
    p, q = syngraph.open(wd), syngraph.open(base)
    t = p.objects("sv").to_pydict()
    n_big = 0
    for k, i in enumerate(t["id"]):
        if t["size_vx"][k] > 10_000:
            n_big += 1
            rel = volume(*p.mesh("sv", i)) / volume(*q.mesh("sv", i))
            assert abs(rel - 1) <= 0.01, (i, rel)
    assert n_big > 60
