"""Progress without a terminal, and step records (full run, resumes, peak memory of all processes)."""

import json
import re
import subprocess
import sys

import numpy as np

from syngraph.engine import Compute

SERIAL = Compute(scheduler="serial")
LINE = re.compile(r"^init/(\w+): +(\d+)% \((\d+)/(\d+) tasks\) elapsed \d+:\d\d:\d\d eta \d+:\d\d:\d\d$")


def _small_project(tmp_path):
    from syngraph.config import load_config, write_config
    from syngraph.synth import synthesize

    wd = tmp_path / "p"
    synthesize(wd, shape_xyz=(64, 64, 32), seed=3, chunks_xyz=(16, 16, 16), compute=SERIAL, progress=False)
    cfg = load_config(wd)
    cfg.compute.block_size_vx = (16, 16, 16)  # 4 x 4 x 2 = 32 tasks per pass
    write_config(wd, cfg)
    return wd


def _run(wd, step):
    return subprocess.run([sys.executable, "-m", "syngraph", "run", step, "--wd", str(wd), "--scheduler", "serial"],
                          capture_output=True, text=True)


def test_piped_run_prints_percent_lines_then_records_full_run_and_resume(tmp_path):
    from syngraph.pipeline import step_names

    wd = _small_project(tmp_path)
    r = _run(wd, "all")
    assert r.returncode == 0, r.stderr
    page = (wd / "report.html").read_text()  # run all ends with the report
    for name in step_names():
        assert f"<td>{name}</td>" in page, name
    passes: dict[str, list[int]] = {}
    for line in r.stderr.splitlines():
        m = LINE.match(line)
        if m:
            passes.setdefault(m[1], []).append(int(m[2]))
            assert int(m[3]) * 100 // int(m[4]) == int(m[2]), line
    assert passes["segment"] == [12, 21, 31, 40, 50, 62, 71, 81, 90, 100], r.stderr
    assert "init/segment: 32 tasks, 0 already done, 32 to run" in r.stderr

    first = json.loads((wd / "steps" / "init" / "runs.json").read_text())
    assert [(e["kind"], e["status"]) for e in first] == [("full", "ok")]
    r = _run(wd, "init")
    assert r.returncode == 0, r.stderr
    assert "init/segment: 32 tasks, 32 already done, 0 to run" in r.stderr
    done = json.loads((wd / "steps" / "init" / "DONE").read_text())
    assert [(e["kind"], e["status"]) for e in done["runs"]] == [("full", "ok"), ("resume", "ok")]
    assert done["runs"][0] == first[0]  # the resume keeps the full run's own time and memory
    for e in done["runs"]:
        assert e["peak_rss_mb"] >= e["peak_rss_mb_main"] > 0


def test_peak_memory_counts_child_processes_and_only_this_step():
    import psutil

    from syngraph.engine.memory import PeakMemory

    base_mb = psutil.Process().memory_info().rss / 2**20  # this (test worker) process before the step
    big = np.ones(40 * 2**20 // 8 * 10)  # 400 MiB in this process, freed before the step
    big[::512] = 2.0
    del big
    child = "import numpy as np, time; a = np.ones(300 * 2**20 // 8); time.sleep(1.0)"  # 300 MiB
    with PeakMemory(interval_s=0.05) as pm:
        subprocess.run([sys.executable, "-c", child], check=True)
    assert pm.main_mb < base_mb + 150, (pm.main_mb, base_mb)  # not this process's lifetime high-water mark
    assert pm.peak_mb - pm.main_mb > 250, (pm.peak_mb, pm.main_mb)  # the child's 300 MiB counted


def test_line_progress_says_still_running_between_slow_tasks():
    import io
    import time

    from syngraph.engine.run import LineProgress

    out = io.StringIO()
    lines = LineProgress("slow", 2, 0, heartbeat_s=0.2, stream=out)
    time.sleep(0.7)
    lines()
    time.sleep(0.1)
    lines()
    lines.close()
    text = out.getvalue().splitlines()
    assert text[0] == "slow: 2 tasks, 0 already done, 2 to run"
    beats = [line for line in text if re.fullmatch(r"slow:   0% \(0/2 tasks\) elapsed 0:00:0\d, still running", line)]
    assert 2 <= len(beats) <= 4, text  # every 0.2 s while no task finished in 0.7 s, then none
    assert re.fullmatch(r"slow:  50% \(1/2 tasks\) elapsed 0:00:0\d eta 0:00:0\d", text[-2]), text
    assert text[-1].startswith("slow: 100% (2/2 tasks)"), text


_SPIN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def _spin(seconds):
    exec(_SPIN.format(s=seconds))
    return seconds


def test_step_cpu_counts_this_process_children_and_dask_workers_and_only_this_step():
    from syngraph.engine.compute import Compute, session
    from syngraph.engine.cpu import StepCpu

    _spin(0.5)  # before the step: not counted
    with StepCpu() as cpu:
        _spin(0.3)
        subprocess.run([sys.executable, "-c", _SPIN.format(s=0.6)], check=True)  # a child that ends
    assert 0.85 < cpu.cpu_s < 0.9 + 0.6, cpu.cpu_s  # + interpreter start of the child

    with session(Compute(scheduler="local", workers=2)) as runner:
        with StepCpu(runner.client) as cpu:
            assert sorted(r for _, r, _ in runner.map_unordered(_spin, [0.7, 0.7], ["a", "b"])) == [0.7, 0.7]
        # workers are our descendants and answer client.run: counted once, not twice
        assert 1.35 < cpu.cpu_s < 2.4, cpu.cpu_s
