"""The README's first command, small: synth -> every step -> accuracy table, evaluation.json, report."""

import json
import subprocess
import sys


def test_demo_runs_every_step_and_reports(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "syngraph", "demo", str(out), "--shape", "160", "160", "64",
         "--seed", "11", "--scheduler", "serial"],
        capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "accuracy against ground truth" in r.stdout
    from syngraph.pipeline import step_names

    for step in step_names():
        assert (out / "steps" / step / "DONE").exists(), step
    ev = json.loads((out / "evaluation.json").read_text())
    assert {"init", "cells", "matrix"} <= set(ev)
    assert ev["matrix"]["metrics"]["synapses_true"] > 0
    page = (out / "report.html").read_text()
    assert "<svg" in page and "Accuracy against ground truth" in page and "report:" in r.stderr
