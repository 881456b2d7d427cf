"""A run against a hand-started Dask cluster (scheduler + two workers on 127.0.0.1, relative --wd,
workers in another directory) gives the bytes of a local run, also when a worker dies mid-step."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syngraph.engine import Compute

SERIAL = Compute(scheduler="serial")
DASK = Path(sys.executable).with_name("dask")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files(wd: Path) -> dict[str, bytes]:
    """Every table and every chunk of the layers init writes."""
    out = {p.relative_to(wd).as_posix(): p.read_bytes() for p in (wd / "tables").glob("*.parquet")}
    for layer in ("mi_seg", "vc_seg", "sj_seg"):
        for p in (wd / "volumes.zarr" / layer).rglob("*"):
            if p.is_file():
                out[p.relative_to(wd).as_posix()] = p.read_bytes()
    return out


@pytest.mark.slow
@pytest.mark.skipif(not DASK.exists(), reason="the dask command is not installed next to python")
def test_hand_started_cluster_relative_wd_and_a_killed_worker(tmp_path):
    from syngraph.config import load_config, write_config
    from syngraph.pipeline import run_step
    from syngraph.synth import synthesize

    base = tmp_path / "base"
    synthesize(base, shape_xyz=(96, 96, 48), seed=0, compute=SERIAL)
    cfg = load_config(base)
    # small blocks: many tasks, so a worker dies with some done and some to do
    write_config(base, cfg.model_copy(update={"compute": cfg.compute.model_copy(update={"block_size_vx": (32, 32, 16)})}))
    local, remote = tmp_path / "local", tmp_path / "runs" / "remote"
    shutil.copytree(base, local)
    shutil.copytree(base, remote)
    run_step(local, "init", compute=SERIAL)

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    elsewhere = tmp_path / "elsewhere"  # the workers' directory: a relative path would miss the files
    elsewhere.mkdir()
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], cwd=elsewhere, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        from distributed import Client

        worker_cmd = [str(DASK), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                      "--memory-limit", "2GiB"]
        procs += [subprocess.Popen(worker_cmd, cwd=elsewhere, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL) for _ in range(2)]
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        run = subprocess.Popen(
            [sys.executable, "-m", "syngraph", "run", "init", "--wd", "runs/remote", "--scheduler", address],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # kill one worker once some tasks of the step are done (mid-step)
        deadline = time.time() + 120
        while time.time() < deadline and run.poll() is None:
            if len(list((remote / "steps" / "init").rglob("*.done"))) >= 3:
                procs[1].send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        killed_mid_step = run.poll() is None
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        assert killed_mid_step, "the step finished before a worker could be killed"
        assert procs[1].wait(timeout=10) == -signal.SIGKILL
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    a, b = _files(local), _files(remote)
    assert set(a) == set(b)
    assert [k for k in a if a[k] != b[k]] == []
    assert (remote / "steps" / "init" / "DONE").exists()
