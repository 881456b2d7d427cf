"""Domain checks (syngraph.models.domain) and defaults that never silently empty a volume."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import ks_2samp
from test_rag import SERIAL, make_project

from syngraph.models.domain import DEFAULT_THRESHOLD, Domain
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
    one_off = dom.distance(new + np.array([3.0, 0, 0]))  # one feature of three moved: the median holds
    assert one_off.in_domain and one_off.ks["a"] > 0.8
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
