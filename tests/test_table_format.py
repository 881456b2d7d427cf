"""Tables of an older column format (before units in every column name) are never read as current:
a step that needs them names the rerun, and the rerun discards the older scratch instead of
crashing on it."""

import json
import re

import pyarrow.parquet as pq
import pytest

from syngraph.engine import Compute
from syngraph.engine.done import refresh_done
from syngraph.errors import StepOrderError
from syngraph.evaluate import evaluate
from syngraph.pipeline import run_step
from syngraph.synth import synthesize

SERIAL = Compute(scheduler="serial")
OLD_NAME = re.compile(r"^((?:bbox_min|bbox_max|rep|com)_[xyz])_vx$")


def _to_format_1(path):
    """Rewrite one Parquet file with the column names syngraph wrote before table format 2."""
    t = pq.read_table(path)
    pq.write_table(t.rename_columns([OLD_NAME.sub(r"\1", n) for n in t.column_names]), path)


def _make_old(wd):
    """What an earlier syngraph left: old column names in init's table and done tasks, no format
    recorded by init and rag."""
    for p in [wd / "tables" / "sv.parquet", *(wd / "steps" / "init").rglob("tasks/*.parquet")]:
        _to_format_1(p)
    refresh_done(wd, "init")
    for p in [wd / "steps" / "init" / "DONE", wd / "steps" / "rag" / "DONE",
              *(wd / "steps" / "init").rglob("manifest.json")]:
        record = json.loads(p.read_text())
        record.pop("table_format")
        p.write_text(json.dumps(record))


def test_older_tables_make_the_step_rerun_not_crash(tmp_path):
    wd = tmp_path / "wd"
    synthesize(wd, shape_xyz=(48, 48, 24), seed=3, compute=SERIAL)
    run_step(wd, "init", compute=SERIAL, progress=False)
    run_step(wd, "rag", compute=SERIAL, progress=False)
    new = pq.read_table(wd / "tables" / "sv.parquet")
    assert pq.read_schema(wd / "tables" / "sv.parquet").metadata[b"table_format"] == b"2"
    _make_old(wd)

    with pytest.raises(StepOrderError, match=r"step 'rag' .*table format 1.*rerun `syngraph run init` and the"):
        run_step(wd, "astrocytes", compute=SERIAL, progress=False)
    with pytest.raises(StepOrderError, match=r"step 'init' .*table format 1.*rerun `syngraph run init` and the"):
        run_step(wd, "rag", compute=SERIAL, progress=False)

    run_step(wd, "init", compute=SERIAL, progress=False)  # the old done tasks are redone, not reused
    assert pq.read_table(wd / "tables" / "sv.parquet").equals(new)
    run_step(wd, "rag", compute=SERIAL, progress=False)
    assert pq.read_metadata(wd / "tables" / "sv_contacts.parquet").schema.names[-1] == "contact_area_um2"


def test_older_truth_tables_are_named_by_evaluate(tmp_path):
    wd = tmp_path / "wd"
    synthesize(wd, shape_xyz=(32, 32, 16), seed=4, compute=SERIAL)
    gt = wd / "gt" / "cells.parquet"
    t = pq.read_table(gt)
    pq.write_table(t.replace_schema_metadata({}), gt)  # no table_format: written before format 2
    with pytest.raises(StepOrderError, match=r"gt was written by an earlier syngraph .*syngraph synth"):
        evaluate(wd)
