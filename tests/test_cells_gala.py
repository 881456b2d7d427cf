"""Real tissue with truth (../shared/data/gala): given the true agglomeration, the default pipeline
(astrocyte step on) returns exactly the true bodies. None of the three crops has astrocytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from test_rag import SERIAL, pinky_sv_table

from syngraph.config import default_config, write_config
from syngraph.engine import write_table_atomic
from syngraph.io.volume import create_layer
from syngraph.project import Project
from syngraph.steps.astrocytes import run_astrocytes
from syngraph.steps.cells import run_cells
from syngraph.steps.rag import PruningWarning, run_rag

GALA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gala"
if not GALA.exists():
    GALA = Path("/work/shared/data/gala")
CROPS = {  # name: (supervoxels, bodies, voxel size nm x y z; docs in GALA/README.md)
    "fly-train": ("train-ws.lzf.h5", "train-gt.lzf.h5", (10.0, 10.0, 10.0)),
    "fly-test": ("test-ws.lzf.h5", "test-gt.lzf.h5", (10.0, 10.0, 10.0)),
    "mouse-snemi": ("snemi-mini/train-fragments.tif", "snemi-mini/train-labels.tif", (6.0, 6.0, 29.0)),
}


def _read_zyx(path: Path) -> np.ndarray:
    if path.suffix == ".tif":
        import tifffile

        a = tifffile.imread(path)
    else:
        import h5py

        with h5py.File(path, "r") as f:
            a = f["stack"][:]
    return np.ascontiguousarray(np.asarray(a).transpose(2, 1, 0)).astype(np.uint64)  # z, y, x -> x, y, z


def true_bodies(sv: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sv_ids, body_id)``: each supervoxel's body = the nonzero truth label it overlaps most
    (a supervoxel on truth 0 only is its own body, id ``2**40 + sv``)."""
    ids = np.unique(sv[sv > 0])
    m = (sv > 0) & (gt > 0)
    pairs, counts = np.unique(np.stack([sv[m], gt[m]]), axis=1, return_counts=True)
    order = np.lexsort((-counts, pairs[0]))
    first = np.r_[True, pairs[0, order][1:] != pairs[0, order][:-1]]
    best_sv, best_body = pairs[0, order][first], pairs[1, order][first]
    body = (ids + np.uint64(2**40)).astype(np.uint64)
    body[np.searchsorted(ids, best_sv)] = best_body
    return ids, body


def _partition(ids: np.ndarray, group: np.ndarray) -> set[frozenset[int]]:
    out: dict[int, set[int]] = {}
    for i, g in zip(ids.tolist(), group.tolist(), strict=True):
        out.setdefault(g, set()).add(i)
    return {frozenset(v) for v in out.values()}


def _project(tmp_path: Path, name: str, min_cc_size_nm: float) -> tuple[Path, np.ndarray, np.ndarray]:
    sv_file, gt_file, vs = CROPS[name]
    sv, gt = _read_zyx(GALA / sv_file), _read_zyx(GALA / gt_file)
    wd = tmp_path / name
    cfg = default_config(vs)
    cfg.compute.block_size_vx = (128, 128, 128)
    cfg.cells.mesh = False
    cfg.cells.min_cc_size_nm = min_cc_size_nm
    cfg.rag = "truth.parquet"
    write_config(wd, cfg)
    create_layer(wd, "sv", sv.shape, "uint64", vs, chunks_xyz=(64, 64, 64)).write(sv)
    write_table_atomic(pinky_sv_table(sv), wd / "tables" / "sv.parquet")
    ids, body = true_bodies(sv, gt)
    write_table_atomic(pa.table({"sv_id": ids, "cell_id": body}), wd / "truth.parquet")
    return wd, ids, body


@pytest.mark.parametrize("name", [
    "fly-test", pytest.param("fly-train", marks=pytest.mark.slow), pytest.param("mouse-snemi", marks=pytest.mark.slow),
])
def test_real_crops_given_the_truth_give_the_true_bodies(tmp_path, name):
    """Default model, default threshold, pruning off (every crop is smaller than the default
    5000 nm, which would prune it whole; the warning is pinned below). The shipped model's
    domain check holds it back on all three (distances 0.59-0.69, docs/models.md); with
    ``--trust-model`` it would split most of them."""
    if not GALA.exists():
        pytest.skip("../shared/data/gala is not here")
    wd, ids, body = _project(tmp_path, name, 0.0)
    run_rag(wd, compute=SERIAL)
    rep = run_astrocytes(wd, compute=SERIAL)
    run_cells(wd, compute=SERIAL)
    s2c = Project(wd).objects("sv_to_cell").sort_by("sv_id")
    assert np.array_equal(s2c.column("sv_id").to_numpy(), ids)
    assert _partition(ids, s2c.column("cell_id").to_numpy()) == _partition(ids, body)
    kinds = Project(wd).objects("cells").column("kind").to_pylist()
    assert kinds.count("astrocyte") == 0
    domain = json.loads((wd / "steps" / "astrocytes" / "domain.json").read_text())
    assert domain["measured"] and domain["distance"] == rep.domain_distance
    assert rep.held_back and not domain["in_domain"] and rep.warnings
    if name == "fly-test":  # trusted anyway, the model calls real neurons astrocyte
        trusted = run_astrocytes(wd, compute=SERIAL, trust_model=True)
        assert not trusted.held_back and trusted.n_astrocyte_sv > ids.size // 4
    print(f"\n{name}: {len(set(body.tolist()))} bodies, {ids.size} svs; astrocyte step: {rep.summary}")


def test_real_crop_with_default_pruning_warns(tmp_path):
    if not GALA.exists():
        pytest.skip("../shared/data/gala is not here")
    wd, ids, _ = _project(tmp_path, "fly-test", 5000.0)
    with pytest.warns(PruningWarning, match=r"rag: pruning removed \d+ of \d+ components .* 100 %"):
        rep = run_rag(wd, compute=SERIAL)
    assert rep.n_sv_kept == 0 and rep.n_sv == ids.size
