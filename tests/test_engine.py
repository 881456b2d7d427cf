import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import _engine_tasks
import cloudpickle
import numpy as np
import pyarrow.parquet as pq
import pytest

from syngraph.bbox import BBox
from syngraph.engine import (
    Compute,
    ManifestMismatch,
    TaskFailure,
    align_block_size,
    block_grid,
    read_task_tables,
    run_tasks,
)
from syngraph.io.volume import create_layer, open_layer

cloudpickle.register_pickle_by_value(_engine_tasks)
SHAPE = (96, 80, 40)
CHUNKS = (16, 16, 8)


def make_project(wd: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    src = (rng.random(SHAPE) > 0.7).astype(np.uint8)
    create_layer(wd, "src", SHAPE, "uint8", (10, 10, 25), chunks_xyz=CHUNKS).write(src)
    create_layer(wd, "out", SHAPE, "uint64", (10, 10, 25), chunks_xyz=CHUNKS)


def run_label(wd: Path, compute: Compute, block_size=(32, 32, 16), **kw):
    blocks = block_grid(BBox.from_shape(SHAPE), align_block_size(block_size, CHUNKS))
    fn = functools.partial(_engine_tasks.label_block, workdir=str(wd), **kw)
    return run_tasks(fn, blocks, wd / "steps" / "label", params={"bs": block_size},
                     compute=compute, progress=False)


def outputs(wd: Path):
    return open_layer(wd, "out").read(), read_task_tables(wd / "steps" / "label")


def test_block_grid_tiles_volume_exactly():
    vol = BBox.from_shape((70, 50, 33))
    blocks = block_grid(vol, (32, 32, 16), halo=2)
    cover = np.zeros(vol.shape, np.int32)
    for b in blocks:
        cover[b.core.slices] += 1
        assert b.read.contains(b.core) and vol.contains(b.read)
        assert b.read.start == tuple(max(s - 2, 0) for s in b.core.start)
    assert (cover == 1).all()
    assert [b.id for b in blocks] == list(range(len(blocks))) == list(range(3 * 2 * 3))
    assert block_grid(vol, (32, 32, 16), 2) == blocks  # deterministic


def test_align_block_size_rounds_up_to_chunks():
    assert align_block_size((100, 64, 10), (32, 32, 8)) == (128, 64, 16)


def test_one_worker_equals_two_workers(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_project(a)
    make_project(b)
    ra = run_label(a, Compute(scheduler="serial"))
    rb = run_label(b, Compute(scheduler="local", workers=2))
    assert ra.n_done == rb.n_done == 3 * 3 * 3
    la, ta = outputs(a)
    lb, tb = outputs(b)
    np.testing.assert_array_equal(la, lb)
    assert ta.equals(tb)
    assert int(ta["size_vx"].to_numpy().sum()) == int((open_layer(a, "src").read() > 0).sum())


def test_rerun_skips_done_and_refuses_other_params(tmp_path):
    make_project(tmp_path)
    first = run_label(tmp_path, Compute(scheduler="serial"))
    again = run_label(tmp_path, Compute(scheduler="serial"))
    assert (first.n_done, again.n_done, again.n_skipped) == (27, 0, 27)
    with pytest.raises(ManifestMismatch, match="--overwrite"):
        run_label(tmp_path, Compute(scheduler="serial"), block_size=(48, 48, 16))


def test_tasks_done_on_other_upstream_results_are_rerun(tmp_path):
    """Resuming is for an interrupted run of the same inputs: after an upstream step changed (a
    cells rerun with other pruning), a rerun must not reuse tasks computed on the old result."""
    from syngraph.engine.run import CURRENT_INPUTS

    make_project(tmp_path)
    token = CURRENT_INPUTS.set('{"cells": "a"}')
    try:
        first = run_label(tmp_path, Compute(scheduler="serial"))
        same = run_label(tmp_path, Compute(scheduler="serial"))
        CURRENT_INPUTS.set('{"cells": "b"}')
        other = run_label(tmp_path, Compute(scheduler="serial"))
    finally:
        CURRENT_INPUTS.reset(token)
    assert (first.n_done, same.n_skipped, other.n_done, other.n_skipped) == (27, 27, 27, 0)


def test_failed_tasks_are_named_and_rerun_resumes(tmp_path):
    make_project(tmp_path)
    blocks = block_grid(BBox.from_shape(SHAPE), (32, 32, 16))
    fn = functools.partial(_engine_tasks.flaky_block, workdir=str(tmp_path), fail_ids=(4, 7))
    step = tmp_path / "steps" / "label"
    with pytest.raises(TaskFailure, match=r"2 of 27 tasks failed \(ids \[4, 7\]\)"):
        run_tasks(fn, blocks, step, params={}, compute=Compute(scheduler="serial"), progress=False)
    assert len(list((step / "tasks").glob("*.done"))) == 25
    (tmp_path / "fixed").touch()
    report = run_tasks(fn, blocks, step, params={}, compute=Compute(scheduler="serial"), progress=False)
    assert (report.n_done, report.n_skipped) == (2, 25)


KILL_SCRIPT = """
import sys, functools
sys.path.insert(0, {tests!r})
from pathlib import Path
import _engine_tasks
from test_engine import run_label
from syngraph.engine import Compute
run_label(Path({wd!r}), Compute(scheduler="serial"), sleep_s=0.15)
"""


def test_killed_and_rerun_equals_uninterrupted(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    make_project(clean)
    make_project(killed)
    run_label(clean, Compute(scheduler="serial"))

    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), wd=str(killed))
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    tasks = killed / "steps" / "label" / "tasks"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(tasks.glob("*.done"))) < 5:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(list(tasks.glob("*.done")))
    assert 5 <= n_before < 27, "the kill must land mid-step"

    report = run_label(killed, Compute(scheduler="serial"))
    assert report.n_skipped == n_before and report.n_done == 27 - n_before
    lc, tc = outputs(clean)
    lk, tk = outputs(killed)
    np.testing.assert_array_equal(lc, lk)
    assert tc.equals(tk)
    assert not list(tasks.glob("*.tmp*"))
    stats = json.loads((killed / "steps" / "label" / "stats.json").read_text())
    assert stats["n_tasks"] == 27


def test_task_tables_are_parquet_with_block_rows(tmp_path):
    make_project(tmp_path)
    run_label(tmp_path, Compute(scheduler="serial"))
    t = pq.read_table(tmp_path / "steps" / "label" / "tasks" / "00000000.parquet")
    assert set(t.column_names) == {"block", "id", "size_vx"}
    assert (t["block"].to_numpy() == 0).all()


def _malloc_env(_item):
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS")


def test_local_workers_keep_glibc_malloc_defaults(monkeypatch):
    """distributed's nanny would start workers with MALLOC_TRIM_THRESHOLD_=65536, which makes every
    numpy temporary above 128 KiB page-fault (bench/workers.py; docs/performance.md); ours do not
    get it, and still get one BLAS/OpenMP thread each."""
    from syngraph.engine.compute import session

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with session(Compute(scheduler="local", workers=2)) as runner:
        got = {r for _, r, e in runner.map_unordered(_malloc_env, [0, 1, 2, 3], ["a", "b", "c", "d"]) if e is None}
    assert got == {(None, "1")}
