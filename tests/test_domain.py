"""Domain checks (syngraph.models.domain) and defaults that never silently empty a volume."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import ks_2samp
from test_rag import SERIAL, make_project

from syngraph.config import write_config
from syngraph.models.domain import DEFAULT_THRESHOLD, Domain, DomainWarning
from syngraph.project import Project
from syngraph.steps.rag import PruningWarning, run_rag


def _train(n=4000, seed=0):
    r = np.random.default_rng(seed)
    return np.c_[r.normal(size=n), r.exponential(size=n), np.where(r.random(n) < 0.4, 0.0, r.random(n))]


def test_domain_ks_matches_scipy_and_flags_shift(tmp_path):
    names = ("a", "b", "c")
    tr = _train()
    dom = Domain.fit(tr, names)
    new = _train(300, seed=1)
    rep = dom.distance(new)
    for j, name in enumerate(names):  # oracle: scipy's two-sample KS against the training rows
        assert rep.ks[name] == pytest.approx(ks_2samp(new[:, j], tr[:, j]).statistic, abs=0.01)
    assert rep.in_domain and rep.distance < 0.1 and max(rep.outside.values()) < 0.05
    shifted = new + np.array([1.5, 2.0, 0.0])
    far = dom.distance(shifted)
    assert not far.in_domain and far.distance > DEFAULT_THRESHOLD
    assert far.worst(1)[0][0] in ("a", "b") and far.outside["a"] > 0.05
    moved = dom.distance(new + np.array([0.8, 0, 0]))  # one feature moved within its range: the median holds
    assert moved.in_domain and moved.ks["a"] > 0.25 and moved.max_outside < 0.1
    beyond = dom.distance(new + np.array([3.0, 0, 0]))  # one feature mostly beyond the training range
    assert beyond.distance < DEFAULT_THRESHOLD and beyond.outside["a"] == pytest.approx(0.66, abs=0.06)
    assert not beyond.in_domain and beyond.max_outside == beyond.outside["a"] and beyond.outside_limit == 0.5
    assert "67% of rows outside the training range of a (limit 50%): OUTSIDE" in beyond.summary()
    few = dom.distance(shifted[:8])  # 8 rows cannot show a shift: the threshold grows as 3/sqrt(n)
    assert few.threshold == pytest.approx(3 / np.sqrt(8), abs=1e-3)
    path = tmp_path / "m.npz"
    np.savez(path, **dom.arrays())
    back = Domain.load(path)
    assert back is not None and back.names == names and np.array_equal(back.quantiles, dom.quantiles)
    np.savez(tmp_path / "none.npz", x=np.zeros(1))
    assert Domain.load(tmp_path / "none.npz") is None


def _cube_2p5um() -> np.ndarray:
    """A 2.5 um cube (20^3 voxels of 125 nm): 8 labels, every one well under the default 5000 nm."""
    lab = np.zeros((20, 20, 20), np.uint64)
    for i in range(2):
        for j in range(2):
            for k in range(2):
                lab[i * 10:(i + 1) * 10, j * 10:(j + 1) * 10, k * 10:(k + 1) * 10] = 1 + i + 2 * j + 4 * k
    return lab


def test_a_capped_feature_stored_as_float32_stays_in_domain():
    """Training rows read back from float32 Parquet, new rows computed in float64: a point mass at a
    cap (log10 of a capped path length) must not read as 'every row outside the training range'."""
    rng = np.random.default_rng(0)
    cap = np.log10(100_001.0)
    train = np.r_[rng.uniform(0, cap, 300), np.full(700, cap)]
    new = np.r_[rng.uniform(0, cap, 30), np.full(70, cap)]
    d = Domain.fit(train.astype(np.float32)[:, None], ("log_path_nm",))
    assert new[-1] > float(np.float32(cap))  # the two precisions differ at the cap
    r = d.distance(new[:, None])
    assert r.in_domain and r.max_outside < 0.05 and r.distance < 0.2
    shifted = d.distance((new + 0.5)[:, None])  # a real shift still leaves the range
    assert not shifted.in_domain and shifted.max_outside > 0.5


def test_pruning_a_small_cube_with_the_defaults_warns(tmp_path):
    wd = make_project(tmp_path, _cube_2p5um(), voxel_size_nm=(125.0, 125.0, 125.0), block=(16, 16, 16))
    with pytest.warns(PruningWarning) as rec:
        rep = run_rag(wd, compute=SERIAL)
    msg = str(rec[0].message)
    assert msg.startswith("rag: pruning removed 8 of 8 components (8000 of 8000 voxels, 100 %)")
    assert "cells.min_cc_size_nm = 5000 nm" in msg and "largest here 2165 nm" in msg  # sqrt(3) * 1250
    assert rep.n_vx_kept == 0 and rep.n_vx_removed == 8000 and rep.warnings == [msg]
    assert not Project(wd).objects("sv_components").column("kept").to_numpy(zero_copy_only=False).any()


def test_pruning_that_keeps_most_voxels_is_quiet(tmp_path, recwarn):
    wd = make_project(tmp_path, _cube_2p5um(), voxel_size_nm=(125.0, 125.0, 125.0), block=(16, 16, 16),
                      min_cc_size_nm=1000.0)
    rep = run_rag(wd, compute=SERIAL)
    assert rep.n_vx_kept == 8000 and rep.warnings == []
    assert not [w for w in recwarn if issubclass(w.category, PruningWarning)]


def test_cli_prints_the_warning_and_summary(tmp_path):
    from syngraph.config import load_config, write_config

    wd = make_project(tmp_path, _cube_2p5um(), voxel_size_nm=(125.0, 125.0, 125.0), block=(16, 16, 16))
    cfg = load_config(wd)
    cfg.layers = {"sv": cfg.layers["sv"]}  # labels only: the layers a run reads must exist
    write_config(wd, cfg)
    for step in ("init", "rag"):  # rag needs init's DONE
        r = subprocess.run([sys.executable, "-m", "syngraph", "run", step, "--wd", str(wd), "--scheduler", "serial"],
                           capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "kept 0 of 8 components" in out and "removed 8 (8000 voxels)" in out
    assert "1 warning(s):" in out
    warn_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: rag: pruning removed 8 of 8")]
    assert len(warn_lines) == 1


def _pairs_tissue(wd, n_side=4):
    """``n_side**2`` pairs of touching boxes (pre ``2k+1``, post ``2k+2``), each with an sj disc
    across the shared face: one synapse candidate per pair."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from syngraph.config import LayerSource, default_config
    from syngraph.io.volume import create_layer

    vs = (10.0, 10.0, 25.0)
    shape = (40, 24 * n_side, 14 * n_side)
    sv = np.zeros(shape, np.uint64)
    sj = np.zeros(shape, np.uint8)
    for k in range(n_side * n_side):
        y0, z0 = 24 * (k // n_side), 14 * (k % n_side)
        sv[2:20, y0 + 2:y0 + 22, z0 + 2:z0 + 12] = 2 * k + 1
        sv[20:38, y0 + 2:y0 + 22, z0 + 2:z0 + 12] = 2 * k + 2
        sj[17:23, y0 + 5:y0 + 19, z0 + 3:z0 + 11] = 230
    cfg = default_config(vs)
    cfg.compute.block_size_vx = (64, 64, 32)
    cfg.layers = {"sv": LayerSource(path="sv", kind="labels"), "sj": LayerSource(path="sj")}
    create_layer(wd, "sv", shape, "uint64", vs, chunks_xyz=(16, 16, 8)).write(sv)
    create_layer(wd, "sj", shape, "uint8", vs, kind="probability", value_range=255).write(sj)
    write_config(wd, cfg)
    (wd / "tables").mkdir()
    ids = np.arange(1, 2 * n_side * n_side + 1, dtype=np.uint64)
    pq.write_table(pa.table({"sv_id": ids, "cell_id": ids}), wd / "tables" / "sv_to_cell.parquet")


def test_synapse_model_outside_its_domain_is_held_back(tmp_path):
    """A synapse model trained on candidates unlike these: syn_prob falls back to the sj mean, the
    measurement is written and warned; --trust-model uses the model (its constant 0.75 here)."""
    import json

    import pyarrow.parquet as pq

    from syngraph.models.synapse import FEATURES, Forest, feature_matrix
    from syngraph.models.trees import Trees
    from syngraph.steps.synapses.run import run_synapses

    _pairs_tissue(tmp_path)
    one_leaf = Trees.build(np.array([-1]), np.array([-1]), np.array([-2]), np.array([0.0]), np.array([0.75]),
                           np.array([0]))
    far = np.random.default_rng(0).normal(1e6, 1.0, size=(500, len(FEATURES)))  # no candidate looks like these
    Forest(one_leaf, FEATURES, Domain.fit(far, FEATURES)).save(tmp_path / "far.npz")
    with pytest.warns(DomainWarning, match=r"synapses: the synapse model was not used.*--trust-model"):
        res = run_synapses(tmp_path, compute=SERIAL, progress=False, model_path=tmp_path / "far.npz")
    syn = pq.read_table(tmp_path / "tables" / "syn_ssv.parquet")
    assert syn.num_rows == 16 and res["held_back"] and res["domain_distance"] == 1.0
    assert np.allclose(syn["syn_prob"].to_numpy(), syn["sj_mean"].to_numpy())
    assert np.allclose(syn["syn_prob"].to_numpy(), 230 / 255, atol=1e-3)
    assert pq.read_schema(tmp_path / "tables" / "syn_ssv.parquet").metadata[b"syn_prob_source"] == b"sj_mean"
    rec = json.loads((tmp_path / "steps" / "synapses" / "domain.json").read_text())
    assert rec["measured"] and rec["held_back"] and not rec["in_domain"] and rec["n_rows"] == 16
    res = run_synapses(tmp_path, compute=SERIAL, progress=False, model_path=tmp_path / "far.npz", trust_model=True)
    syn = pq.read_table(tmp_path / "tables" / "syn_ssv.parquet")
    assert not res["held_back"] and np.allclose(syn["syn_prob"].to_numpy(), 0.75)
    rec = json.loads((tmp_path / "steps" / "synapses" / "domain.json").read_text())
    assert rec["trust_model"] and not rec["held_back"] and not rec["in_domain"]
    # a model fitted on these very candidates: in its domain, used
    x = feature_matrix(syn)
    Forest(one_leaf, FEATURES, Domain.fit(x, FEATURES)).save(tmp_path / "near.npz")
    res = run_synapses(tmp_path, compute=SERIAL, progress=False, model_path=tmp_path / "near.npz")
    assert not res["held_back"] and res["domain_distance"] < 0.1

