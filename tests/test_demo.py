"""The README's first command, small: synth -> every step -> accuracy table, evaluation.json, report;
and the report opened in headless Chromium."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "syngraph", "demo", "--wd", str(out), "--shape", "160", "160", "64",
         "--seed", "11", "--scheduler", "serial"],
        capture_output=True, text=True, timeout=900,
    )
    return out, r


def test_demo_runs_every_step_and_reports(demo):
    out, r = demo
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    assert "accuracy against ground truth" in r.stdout
    from syngraph.pipeline import step_names

    for step in step_names():
        assert (out / "steps" / step / "DONE").exists(), step
    ev = json.loads((out / "evaluation.json").read_text())
    assert {"init", "cells", "matrix"} <= set(ev)
    assert ev["matrix"]["metrics"]["synapses_true"] > 0
    page = (out / "report.html").read_text()
    assert "<svg" in page and "Accuracy against ground truth" in page and "report:" in r.stderr
    # exit status 1 exactly when a target is missed, naming each missed step.metric
    missed = [f"{s}.{m}" for s, res in ev.items() for m, g in res["targets"].items() if g["pass"] is False]
    assert r.returncode == (1 if missed else 0), r.stderr[-2000:]
    for name in missed:
        assert f"{name} = " in r.stderr, name
    assert (f"{len(missed)} targets missed" in r.stderr) == bool(missed)


def test_report_opens_in_chromium_with_a_labelled_matrix(demo):
    out, _ = demo
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"headless check needs {CHROMIUM} and {CHROMEDRIVER} "
                    "(Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the test extra)")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1250,1600"):
        opts.add_argument(arg)
    opts.binary_location = str(CHROMIUM)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    try:
        driver.get((out / "report.html").resolve().as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == [], errors
        matrix = driver.find_element(By.ID, "matrix")
        texts = [t.text for t in matrix.find_elements(By.TAG_NAME, "text")]
        assert "presynaptic cell (id)" in texts and "postsynaptic cell (id)" in texts, texts
        # the cell ids label the ticks; the colour bars name sign and area
        import pyarrow.parquet as pq

        conns = pq.read_table(out / "tables" / "connections.parquet")
        ids = {str(i) for i in conns["pre_cell_id"].to_pylist() + conns["post_cell_id"].to_pylist()}
        assert len(ids & set(texts)) >= min(len(ids), 20), ids - set(texts)
        assert any("asymmetric" in t for t in texts) and any("µm²" in t for t in texts), texts
        assert matrix.size["width"] > 300 and matrix.size["height"] > 200
        shot = out / "report.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()
