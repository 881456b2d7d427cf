"""Every bad input and broken environment gets one clear line and the documented exit code.

Exit codes (syngraph.errors): 2 bad input, 3 environment (disk full, read-only, unreachable
scheduler), 1 a bug. Each case also checks that nothing half-written is trusted afterwards:
no DONE marker, no scratch ``*.tmp*`` files, and a rerun after the fix succeeds.
The CLI runs in-process (fast); a few cases use a subprocess to see the real stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from syngraph.engine import Compute

SERIAL = Compute(scheduler="serial")
SHAPE = (96, 96, 48)  # x, y, z: a few cells, about 1 s per step


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A demo project through every step (shared, never modified: tests copy it)."""
    from syngraph.pipeline import run_step, step_names
    from syngraph.synth import synthesize

    wd = tmp_path_factory.mktemp("tiny") / "wd"
    synthesize(wd, shape_xyz=SHAPE, seed=0, compute=SERIAL)
    for name in step_names():
        run_step(wd, name, compute=SERIAL)
    return wd


@pytest.fixture
def proj(tiny, tmp_path) -> Path:
    """A private copy of the tiny project (ground truth and meshes left out: not needed)."""
    wd = tmp_path / "proj"
    shutil.copytree(tiny, wd, ignore=shutil.ignore_patterns("gt", "gt_*", "meshes"))
    return wd


def cli(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    """Run ``syngraph ARGS`` in this process; return (exit code, stderr)."""
    from syngraph.cli import main

    monkeypatch.setattr(sys, "argv", ["syngraph", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main()
    code = info.value.code
    return (0 if code is None else int(code)), capsys.readouterr().err


def run(capsys, monkeypatch, step: str, wd: Path | str, *more: str) -> tuple[int, str]:
    return cli(capsys, monkeypatch, "run", step, "--wd", str(wd), "--scheduler", "serial", *more)


def one_line_error(err: str, *words: str) -> None:
    """An ``error:`` message, after at most the progress lines of the tasks that ran."""
    assert "Traceback" not in err, err
    assert "error: " in err, err
    assert all("tasks" in ln for ln in err.split("error: ", 1)[0].splitlines()), err
    for w in words:
        assert w in err, (w, err)


def no_scratch(wd: Path) -> None:
    left = [p for p in wd.rglob("*.tmp*") if p.is_file()]
    assert not left, left


def set_key(wd: Path, key: str, value: str, section: str | None = None) -> None:
    """Set ``key = value`` in syngraph.toml (first match, inside ``section`` if given)."""
    path = wd / "syngraph.toml"
    lines = path.read_text().splitlines()
    inside = section is None
    for i, line in enumerate(lines):
        if line.startswith("["):
            inside = section is None or line.strip() == f"[{section}]"
        if inside and (line.startswith(f"{key} =") or line.startswith(f"# {key} = ")):
            lines[i] = f"{key} = {value}"
            break
    else:
        raise AssertionError(f"{key} not in {path}")
    path.write_text("\n".join(lines) + "\n")


def bytes_of(wd: Path, *tables: str) -> dict[str, bytes]:
    return {t: (wd / "tables" / f"{t}.parquet").read_bytes() for t in tables}


def rows_of(wd: Path, *tables: str) -> dict[str, object]:
    """Table contents without the Parquet metadata (which records the config's hash)."""
    import pyarrow.parquet as pq

    return {t: pq.read_table(wd / "tables" / f"{t}.parquet").replace_schema_metadata(None) for t in tables}


# --------------------------------------------------------------------------- the table

def test_relative_dotdot_working_directories(proj, capsys, monkeypatch):
    """--wd ../dd and sub/../dd, for run and import (tensorstore refuses '..' paths)."""
    sub = proj.parent / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    before = bytes_of(proj, "sv", "mi")
    code, err = run(capsys, monkeypatch, "init", "../proj", "--overwrite")
    assert code == 0, err
    assert bytes_of(proj, "sv", "mi") == before
    monkeypatch.chdir(proj.parent)
    code, err = run(capsys, monkeypatch, "rag", "sub/../proj", "--overwrite")
    assert code == 0, err
    np.save(proj.parent / "myelin.npy", np.zeros(SHAPE[::-1], np.float32))
    monkeypatch.chdir(sub)
    code, err = cli(capsys, monkeypatch, "import", "myelin", "../myelin.npy", "--wd", "sub/../../proj",
                    "--axes", "zyx", "--kind", "probability", "--overwrite", "--scheduler", "serial")
    assert code == 0, err


def test_uint64_ids_in_parquet_filters(tmp_path):
    """Ids >= 2**63 in the filters of cell_meshes / load_cell (pyarrow made them C longs)."""
    from syngraph.io.ids import id_equals, ids_in

    ids = np.array([2**64 - 9, 2**64 - 1, 5, 2**63], np.uint64)
    pq.write_table(pa.table({"cell_id": ids, "v": np.arange(4)}), tmp_path / "t.parquet")
    got = pq.read_table(tmp_path / "t.parquet", filters=ids_in("cell_id", [2**64 - 1, 2**63]))
    assert got["v"].to_pylist() == [1, 3]
    got = pq.read_table(tmp_path / "t.parquet", filters=id_equals("cell_id", 2**64 - 9))
    assert got["v"].to_pylist() == [0]


def test_failed_step_blocks_the_steps_after_it(proj, capsys, monkeypatch):
    """cells failed (no DONE): skeletons refuses instead of running on the old tables."""
    import syngraph.steps.cells as cells_module
    from syngraph.errors import InputError

    def failing(*args, **kwargs):
        raise InputError("cells: simulated failure half-way")

    real = cells_module.run_cells
    monkeypatch.setattr(cells_module, "run_cells", failing)
    code, err = run(capsys, monkeypatch, "cells", proj, "--overwrite")
    assert code == 2 and "simulated failure" in err
    assert not (proj / "steps" / "cells" / "DONE").exists()
    for step in ("skeletons", "synapses"):
        code, err = run(capsys, monkeypatch, step, proj, "--overwrite")
        assert code == 2
        one_line_error(err, f"step '{step}' needs step 'cells'", "has not finished", "syngraph run cells")
    monkeypatch.setattr(cells_module, "run_cells", real)
    for step in ("cells", "skeletons"):
        code, err = run(capsys, monkeypatch, step, proj)
        assert code == 0, err


def test_bad_astrocyte_model_refused_before_the_step(proj, capsys, monkeypatch):
    set_key(proj, "astrocyte_model", '"broken.npz"', "cells")
    (proj / "broken.npz").write_bytes(b"not a model")
    code, err = run(capsys, monkeypatch, "astrocytes", proj, "--overwrite")
    assert code == 2
    one_line_error(err, "cells.astrocyte_model", "broken.npz", "syngraph train astrocytes")
    assert (proj / "steps" / "astrocytes" / "DONE").exists()  # the earlier result stands untouched


@pytest.mark.parametrize("labels", ["zero", "single"])
def test_all_zero_or_single_label_sv_through_run_all(proj, capsys, monkeypatch, labels):
    sv = np.zeros(SHAPE[::-1], np.uint64)
    if labels == "single":
        sv[10:30, 20:60, 20:60] = 7  # one box-shaped cell
    np.save(proj / "sv.npy", sv)
    code, err = cli(capsys, monkeypatch, "import", "sv", str(proj / "sv.npy"), "--wd", str(proj),
                    "--axes", "zyx", "--overwrite", "--scheduler", "serial")
    assert code == 0, err
    set_key(proj, "rag", '""')
    code, err = run(capsys, monkeypatch, "all", proj, "--overwrite")
    assert code == 0, err
    syn = pq.read_table(proj / "tables" / "syn_ssv.parquet")
    assert syn.num_rows == 0 and "sym_ratio" in syn.column_names
    sv = pq.read_table(proj / "tables" / "sv.parquet")
    assert sv["id"].to_pylist() == ([] if labels == "zero" else [7])
    assert pq.read_table(proj / "tables" / "cells.parquet").num_rows == 0  # none, or pruned as too small
    assert (proj / "steps" / "matrix" / "DONE").exists()


def test_unreachable_and_bogus_scheduler(proj, capsys, monkeypatch):
    t0 = time.perf_counter()
    code, err = cli(capsys, monkeypatch, "run", "rag", "--wd", str(proj), "--scheduler", "tcp://127.0.0.1:1")
    assert code == 3 and time.perf_counter() - t0 < 10
    one_line_error(err, "scheduler unreachable", "tcp://127.0.0.1:1", "dask scheduler")
    code, err = cli(capsys, monkeypatch, "run", "rag", "--wd", str(proj), "--scheduler", "bogus://x")
    assert code == 2
    one_line_error(err, "bogus://x", "not a scheduler address", "tcp://HOST:PORT")
    set_key(proj, "scheduler", '"tcp://127.0.0.1:1"', "compute")
    code, err = cli(capsys, monkeypatch, "config", "check", "--wd", str(proj))
    assert code == 3 and "tcp://127.0.0.1:1" in err
    assert (proj / "steps" / "rag" / "DONE").exists()  # nothing ran, nothing was removed


def test_corrupt_rag_parquet(proj, capsys, monkeypatch):
    (proj / "rag.parquet").write_bytes(b"PAR1 garbage")
    code, err = cli(capsys, monkeypatch, "config", "check", "--wd", str(proj))
    assert code == 2
    one_line_error(err, 'rag = "rag.parquet"', "not a readable .parquet file")
    before = bytes_of(proj, "rag_pruned")
    code, err = run(capsys, monkeypatch, "rag", proj, "--overwrite")
    assert code == 2
    one_line_error(err, "rag", "rag.parquet")
    assert bytes_of(proj, "rag_pruned") == before  # refused before the step touched anything


def test_fake_tif_and_object_npy(proj, capsys, monkeypatch):
    (proj / "fake.tif").write_text("not a tiff")
    np.save(proj / "obj.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    for name in ("fake.tif", "obj.npy"):
        code, err = cli(capsys, monkeypatch, "import", "mi", str(proj / name), "--wd", str(proj),
                        "--axes", "zyx", "--kind", "probability", "--overwrite", "--scheduler", "serial")
        assert code == 2
        one_line_error(err, name, "cannot read it as a", "numeric")


@pytest.mark.parametrize("bad", ["garbage", "missing_keys"])
def test_bad_model_npz(proj, capsys, monkeypatch, bad):
    path = proj / "models" / "m.npz"
    path.parent.mkdir()
    if bad == "garbage":
        path.write_bytes(os.urandom(200))
    else:
        np.savez(path, left=np.zeros(3))
    for key, section in (("astrocyte_model", "cells"), ("model", "synapses")):
        set_key(proj, key, '"models/m.npz"', section)
        code, err = cli(capsys, monkeypatch, "config", "check", "--wd", str(proj))
        assert code == 2
        one_line_error(err, f"{section}.{key}", "m.npz", "not a usable model file", "syngraph train")
    code, err = run(capsys, monkeypatch, "astrocytes", proj, "--overwrite")
    assert code == 2 and "cells.astrocyte_model" in err


def test_model_paths_are_relative_to_the_working_directory(proj, capsys, monkeypatch):
    from syngraph.models.astrocyte import DEFAULT_MODEL_PATH
    from syngraph.models.synapse import DEFAULT_MODEL

    (proj / "models").mkdir()
    shutil.copy(DEFAULT_MODEL_PATH, proj / "models" / "astro.npz")
    shutil.copy(DEFAULT_MODEL, proj / "models" / "syn.npz")
    set_key(proj, "astrocyte_model", '"models/astro.npz"', "cells")
    set_key(proj, "model", '"models/syn.npz"', "synapses")
    monkeypatch.chdir(proj.parent)  # not the working directory
    before = rows_of(proj, "sv_class", "syn_ssv")
    for step in ("astrocytes", "cells", "skeletons", "compartments", "synapses"):  # synapses read compartments
        code, err = run(capsys, monkeypatch, step, "proj", "--overwrite")
        assert code == 0, err
    after = rows_of(proj, "sv_class", "syn_ssv")
    assert all(after[t].equals(before[t]) for t in before)


def test_config_check_row(proj, capsys, monkeypatch):
    """The issue's list: each of these was 'config is valid'."""
    cases = [
        (lambda wd: shutil.rmtree(wd / "volumes.zarr" / "vc"), ["layer 'vc'", "syngraph import vc"]),
        (lambda wd: (wd / "volumes.zarr" / "sj" / "zarr.json").write_text("{bad"),
         ["layer 'sj'", "unreadable", "re-import"]),
        (lambda wd: (wd / "rag.parquet").unlink(), ['rag = "rag.parquet"', "does not exist"]),
        (lambda wd: set_key(wd, "memory_limit", '"lots"', "compute"), ["compute.memory_limit", "lots", "4GiB"]),
        (lambda wd: set_key(wd, "workers", "-3", "compute"), ["compute.workers", "-3", ">= 0"]),
        (lambda wd: set_key(wd, "threshold", "5.0", "organelles.mi"), ["organelles.mi.threshold", "5.0", "[0.0, 1.0]"]),
        (lambda wd: set_key(wd, "downsample", "[0, 2, 1]", "skeletons"), ["skeletons.downsample", "[0, 2, 1]", ">= 1"]),
    ]
    config = (proj / "syngraph.toml").read_text()
    for i, (damage, words) in enumerate(cases):
        wd = proj.parent / f"case{i}"
        shutil.copytree(proj, wd)
        damage(wd)
        code, err = cli(capsys, monkeypatch, "config", "check", "--wd", str(wd))
        assert code == 2, (words, err)
        one_line_error(err, *words)
        assert "\n" not in err.strip(), err  # one problem, one line
        code, err2 = run(capsys, monkeypatch, "cells", wd, "--overwrite")  # a run starts with the same check
        assert code == 2 and err2 == err
        assert (wd / "steps" / "cells" / "DONE").exists()  # refused before anything was touched
    code, err = cli(capsys, monkeypatch, "config", "check", "--wd", str(proj))
    assert code == 0 and "config is valid" in err
    assert (proj / "syngraph.toml").read_text() == config


@pytest.mark.parametrize("value", ["inf", "range"])
def test_inf_or_out_of_range_probabilities_refused_at_import(proj, capsys, monkeypatch, value):
    prob = np.full(SHAPE[::-1], 0.5, np.float32)
    prob[3, 4, 5] = np.inf if value == "inf" else 1.5
    np.save(proj / "p.npy", prob)
    code, err = cli(capsys, monkeypatch, "import", "mi", str(proj / "p.npy"), "--wd", str(proj),
                    "--axes", "zyx", "--kind", "probability", "--overwrite", "--scheduler", "serial")
    assert code == 2
    one_line_error(err, "layer 'mi'", "non-finite" if value == "inf" else "outside [0, 1]")
    # the half-imported layer is not trusted by a step
    code, err = run(capsys, monkeypatch, "init", proj, "--overwrite")
    assert code == 2
    one_line_error(err, "layer 'mi'", "partly imported", "syngraph import mi")
    np.save(proj / "p.npy", np.clip(np.nan_to_num(prob, posinf=1.0), 0, 1))
    code, err = cli(capsys, monkeypatch, "import", "mi", str(proj / "p.npy"), "--wd", str(proj),
                    "--axes", "zyx", "--kind", "probability", "--overwrite", "--scheduler", "serial")
    assert code == 0, err
    code, err = cli(capsys, monkeypatch, "config", "check", "--wd", str(proj))
    assert code == 0, err


def test_corrupt_zarr_chunk_says_reimport(proj, capsys, monkeypatch):
    chunk = next(p for p in sorted((proj / "volumes.zarr" / "mi" / "0" / "c").rglob("*")) if p.is_file())
    chunk.write_bytes(b"garbage")
    code, err = run(capsys, monkeypatch, "init", proj, "--overwrite")
    assert code == 2
    one_line_error(err, "layer 'mi'", str(chunk), "re-import the layer", "syngraph import mi")
    assert not (proj / "steps" / "init" / "DONE").exists()
    no_scratch(proj)


def test_disk_full_names_the_path_and_leaves_no_scratch(proj, capsys, monkeypatch):
    """A write failing with ENOSPC (simulated in pyarrow's writer, after half a file)."""
    import errno

    real = pq.write_table

    def full(table, where, **kw):
        Path(where).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(where))

    monkeypatch.setattr(pq, "write_table", full)
    code, err = run(capsys, monkeypatch, "rag", proj, "--overwrite")
    assert code == 3
    one_line_error(err, "disk full", str(proj), "No space left on device", "free space")
    no_scratch(proj)
    assert not (proj / "steps" / "rag" / "DONE").exists()
    monkeypatch.setattr(pq, "write_table", real)
    code, err = run(capsys, monkeypatch, "rag", proj)
    assert code == 0, err


def _mount_tmpfs(path: Path, size_kb: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def test_real_disk_full_and_read_only(proj, capsys, monkeypatch, tmp_path):
    """On a real small file system (a tmpfs; skipped where mounting is not allowed)."""
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, 32768):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        wd = mnt / "p"
        shutil.copytree(proj, wd, ignore=shutil.ignore_patterns("skeletons", "steps", "gt*"))
        for step in ("init", "rag"):
            code, err = run(capsys, monkeypatch, step, wd)
            assert code == 0, err
        free = shutil.disk_usage(mnt).free
        (mnt / "pad").write_bytes(b"\0" * max(free - 40 * 1024, 0))
        code, err = run(capsys, monkeypatch, "init", wd, "--overwrite")
        assert code == 3
        one_line_error(err, "disk full", str(wd), "rerun")
        no_scratch(wd)
        assert not (wd / "steps" / "init" / "DONE").exists()
        (mnt / "pad").unlink()
        code, err = run(capsys, monkeypatch, "init", wd)
        assert code == 0, err
        assert bytes_of(wd, "sv", "mi", "vc", "sj") == bytes_of(proj, "sv", "mi", "vc", "sj")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        code, err = run(capsys, monkeypatch, "rag", wd, "--overwrite")
        assert code == 3
        one_line_error(err, "read-only file system", str(wd))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# --------------------------------------------------------------------------- step dependencies

def test_changed_input_table_names_the_step_to_rerun(proj, capsys, monkeypatch):
    t = pq.read_table(proj / "tables" / "cells.parquet")
    pq.write_table(t.slice(0, max(t.num_rows - 1, 0)), proj / "tables" / "cells.parquet")
    code, err = run(capsys, monkeypatch, "synapses", proj, "--overwrite")
    assert code == 2
    one_line_error(err, "cells.parquet changed", "syngraph run cells")
    assert (proj / "steps" / "synapses" / "DONE").exists()  # refused before it started
    code, err = run(capsys, monkeypatch, "cells", proj, "--overwrite")
    assert code == 0, err
    code, err = run(capsys, monkeypatch, "synapses", proj)
    assert code == 0, err


def test_stale_step_upstream_is_named(proj, capsys, monkeypatch):
    """cells reran with another result after synapses ran: matrix says rerun synapses."""
    marker = proj / "steps" / "cells" / "DONE"
    record = json.loads(marker.read_text())
    record["digest"] = "0" * 16
    marker.write_text(json.dumps(record))
    code, err = run(capsys, monkeypatch, "matrix", proj)
    assert code == 2
    one_line_error(err, "step 'synapses' ran on an earlier result of step 'cells'", "syngraph run synapses")


def test_torn_done_marker_is_not_trusted(proj, capsys, monkeypatch):
    (proj / "steps" / "synapses" / "DONE").write_text('{"step": "syn')
    code, err = run(capsys, monkeypatch, "matrix", proj)
    assert code == 2
    one_line_error(err, "needs step 'synapses'", "syngraph run synapses")


def test_done_marker_records_output_digests(proj):
    from syngraph.engine.done import combined_digest, file_digest

    record = json.loads((proj / "steps" / "cells" / "DONE").read_text())
    assert "tables/cells.parquet" in record["outputs"] and "tables/sv_to_cell.parquet" in record["outputs"]
    for rel, digest in record["outputs"].items():
        assert file_digest(proj / rel) == digest
    assert record["digest"] == combined_digest(record["outputs"])
    assert set(record["inputs"]) == {"astrocytes"}
    assert not any(k.startswith("tables/sv_class") for k in record["outputs"])  # astrocytes' table


def test_edit_refreshes_cells_and_marks_later_steps_stale(proj, capsys, monkeypatch):
    s2c = pq.read_table(proj / "tables" / "sv_to_cell.parquet")
    sv = s2c["sv_id"].to_numpy()
    if sv.size < 2:
        pytest.skip("the tiny tissue has one supervoxel in cells")
    set_key(proj, "mesh", "false", "cells")  # no cell meshes to redo: fast
    code, err = cli(capsys, monkeypatch, "edit", str(proj), "--merge", f"{sv[0]} {sv[-1]}")
    assert code == 0, err
    from syngraph.engine.done import check_inputs
    from syngraph.errors import StepOrderError
    from syngraph.pipeline import get_step

    # cells' DONE describes the edited tables: a step that needs cells may run
    check_inputs(proj, "skeletons", ("cells",), lambda n: get_step(n).needs, StepOrderError)
    code, err = run(capsys, monkeypatch, "matrix", proj)
    assert code == 2 and "syngraph run synapses" in err


# --------------------------------------------------------------------------- more bad inputs

def test_no_config(tmp_path, capsys, monkeypatch):
    code, err = run(capsys, monkeypatch, "init", tmp_path)
    assert code == 2
    one_line_error(err, "no syngraph.toml", "syngraph config init")


def test_working_directory_missing(tmp_path, capsys, monkeypatch):
    code, err = run(capsys, monkeypatch, "init", tmp_path / "nope")
    assert code == 2
    one_line_error(err, "nope", "syngraph config init")


def test_bad_toml_syntax(proj, capsys, monkeypatch):
    (proj / "syngraph.toml").write_text("voxel_size_nm = [1, 2\n")
    code, err = run(capsys, monkeypatch, "init", proj)
    assert code == 2
    one_line_error(err, "syngraph.toml", "not valid TOML")


@pytest.mark.parametrize("line, words", [
    ("colour = 3", ["colour", "Extra inputs"]),
    ('voxel_size_nm = "big"', ["voxel_size_nm", "big"]),
    ("voxel_size_nm = [10, -1, 25]", ["voxel_size_nm", "positive"]),
])
def test_bad_config_values(proj, capsys, monkeypatch, line, words):
    text = (proj / "syngraph.toml").read_text()
    key = line.split(" =")[0]
    text = "\n".join(x for x in text.splitlines() if not x.startswith(f"{key} ="))
    (proj / "syngraph.toml").write_text(line + "\n" + text)
    code, err = cli(capsys, monkeypatch, "config", "check", "--wd", str(proj))
    assert code == 2
    one_line_error(err, *words)


@pytest.mark.parametrize("section, key, value, words", [
    ("organelles.sj", "ratio_min", "0.95", ["ratio_min 0.95 > ratio_max 0.9"]),
    ("skeletons", "downsample", "[2, 3, 1]", ["skeletons.block_size_vx", "multiple"]),
    ("synapses", "prob_threshold", "-0.1", ["synapses.prob_threshold", "-0.1"]),
    ("synapses", "sym_threshold", "nan", ["synapses.sym_threshold", "finite"]),
    ("cells", "astrocyte_threshold", "1.5", ["cells.astrocyte_threshold", "1.5"]),
    ("meshes", "sv_downsample", "[4, 0, 2]", ["meshes.sv_downsample", ">= 1"]),
    ("synapses", "model", '"models/none.npz"', ["synapses.model", "no such file"]),
    ("compute", "memory_limit", '"-4GiB"', ["compute.memory_limit", "-4GiB"]),
])
def test_config_check_parameters(proj, capsys, monkeypatch, section, key, value, words):
    set_key(proj, key, value, section)
    code, err = cli(capsys, monkeypatch, "config", "check", "--wd", str(proj))
    assert code == 2
    one_line_error(err, *words)


def test_layer_voxel_size_and_dtype_mismatch(proj, capsys, monkeypatch):
    set_key(proj, "voxel_size_nm", "[8.0, 8.0, 40.0]")
    code, err = cli(capsys, monkeypatch, "config", "check", "--wd", str(proj))
    assert code == 2
    one_line_error(err, "voxel size", "voxel_size_nm", "[8.0, 8.0, 40.0]")
    set_key(proj, "voxel_size_nm", "[10.0, 10.0, 25.0]")
    set_key(proj, "kind", '"probability"', "layers.sv")
    code, err = cli(capsys, monkeypatch, "config", "check", "--wd", str(proj))
    assert code == 2
    one_line_error(err, "layer 'sv'", "probability map of dtype uint64", "re-import")


def test_unknown_step_and_bad_options(proj, capsys, monkeypatch):
    code, err = run(capsys, monkeypatch, "cels", proj)
    assert code == 2
    one_line_error(err, "unknown step 'cels'", "cells")
    code, err = cli(capsys, monkeypatch, "edit", str(proj), "--merge", "12 x")
    assert code == 2
    one_line_error(err, "--merge/--split", "12 x")
    code, err = cli(capsys, monkeypatch, "export", "skeletons", "--wd", str(proj), "--format", "obj")
    assert code == 2
    one_line_error(err, "'obj'", "swc")
    code, err = cli(capsys, monkeypatch, "export", "synapses", "--wd", str(proj), "--format", "xml")
    assert code == 2
    one_line_error(err, "'xml'", "parquet")
    code, err = cli(capsys, monkeypatch, "config", "init", "--wd", str(proj))
    assert code == 2 and "--force" in err


@pytest.mark.parametrize("name, content, words", [
    ("missing.npy", None, ["missing.npy", "does not exist"]),
    ("notes.txt", "hello", ["unsupported file type '.txt'"]),
    ("small.npy", np.zeros((4, 8, 8), np.uint32), ["shape", "all layers of a project share one shape"]),
    ("neg.npy", -np.ones(SHAPE[::-1], np.int32), ["negative label -1", "relabel"]),
])
def test_bad_import_sources(proj, capsys, monkeypatch, name, content, words):
    if isinstance(content, str):
        (proj / name).write_text(content)
    elif content is not None:
        np.save(proj / name, content)
    code, err = cli(capsys, monkeypatch, "import", "sv", str(proj / name), "--wd", str(proj),
                    "--axes", "zyx", "--overwrite", "--scheduler", "serial")
    assert code == 2
    one_line_error(err, *words)


def test_import_over_an_existing_layer_needs_overwrite(proj, capsys, monkeypatch):
    np.save(proj / "p.npy", np.zeros(SHAPE[::-1], np.float32))
    code, err = cli(capsys, monkeypatch, "import", "mi", str(proj / "p.npy"), "--wd", str(proj),
                    "--axes", "zyx", "--kind", "probability", "--scheduler", "serial")
    assert code == 2
    one_line_error(err, "layer 'mi' already exists", "--overwrite")


@pytest.mark.parametrize("content, words", [
    (np.zeros((5, 3), np.uint64), ["shape (m, 2)"]),
    ("sv_a,sv_b\n1,banana\n", ["rag.csv"]),
])
def test_bad_rag_files(proj, capsys, monkeypatch, content, words):
    name = "rag.npy" if isinstance(content, np.ndarray) else "rag.csv"
    if isinstance(content, np.ndarray):
        np.save(proj / name, content)
    else:
        (proj / name).write_text(content)
    set_key(proj, "rag", f'"{name}"')
    code, err = run(capsys, monkeypatch, "rag", proj, "--overwrite")
    assert code == 2
    one_line_error(err, f'rag = "{name}"', *words)
    assert not (proj / "steps" / "rag" / "DONE").exists()


def test_paths_with_spaces_unicode_and_tilde(proj, capsys, monkeypatch, tmp_path):
    odd = tmp_path / "my dir é" / "wd ü"
    shutil.copytree(proj, odd)
    code, err = run(capsys, monkeypatch, "rag", odd, "--overwrite")
    assert code == 0, err
    monkeypatch.setenv("HOME", str(tmp_path / "my dir é"))
    code, err = run(capsys, monkeypatch, "cells", "~/wd ü", "--overwrite")
    assert code == 0, err
    assert bytes_of(odd, "cells") == bytes_of(proj, "cells")


def test_traceback_only_with_debug(proj):
    """The real entry point in a subprocess: one line and exit 2; --debug shows the traceback."""
    (proj / "rag.parquet").write_bytes(b"garbage")
    cmd = [sys.executable, "-m", "syngraph", "run", "rag", "--wd", str(proj), "--scheduler", "serial", "--overwrite"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run([*cmd, "--debug"], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" in r.stderr and "ConfigError" in r.stderr


@pytest.mark.parametrize("command", ["astrocytes", "synapses"])
@pytest.mark.parametrize("name, content, words", [
    ("lab.parquet", b"garbage", ["--labels", "lab.parquet", "cannot read it as a parquet table"]),
    ("missing.csv", None, ["--labels", "missing.csv", "no such file"]),
])
def test_bad_training_labels(proj, capsys, monkeypatch, command, name, content, words):
    if content is not None:
        (proj / name).write_bytes(content)
    code, err = cli(capsys, monkeypatch, "train", command, "--labels", str(proj / name), "--wd", str(proj))
    assert code == 2
    one_line_error(err, *words)
    assert not (proj / "models").exists()  # no model written


@pytest.mark.parametrize("content, words", [(None, ["--base", "base.npz", "no such file"]),
                                            (b"not a model", ["--base", "base.npz", "not a usable astrocyte model"])])
def test_bad_base_model_for_adapting(proj, capsys, monkeypatch, content, words):
    (proj / "lab.csv").write_text("sv_id,is_astrocyte\n1,0\n2,1\n")
    if content is not None:
        (proj / "base.npz").write_bytes(content)
    code, err = cli(capsys, monkeypatch, "train", "astrocytes", "--labels", str(proj / "lab.csv"),
                    "--base", str(proj / "base.npz"), "--wd", str(proj))
    assert code == 2
    one_line_error(err, *words)
    assert not (proj / "models").exists()


@pytest.mark.parametrize("learner, words", [("auto", ["--base", "base.npz", "an adapted model"]),
                                            ("logistic", ["--base", "base.npz", "--learner logistic"])])
def test_base_model_that_cannot_be_adapted(proj, capsys, monkeypatch, learner, words):
    """An adapted --base, or --base with a learner that fits afresh: one line, before any feature is read."""
    from syngraph.models.astrocyte import (
        CONTEXT_FEATURES,
        FEATURES,
        ContextModel,
        default_model,
        fit_adapter,
    )
    from syngraph.steps import astrocytes

    m = default_model()
    x, y = np.random.default_rng(0).normal(size=(4, len(FEATURES) + len(CONTEXT_FEATURES))), np.r_[0.0, 1, 0, 1]
    ContextModel(fit_adapter(m.local, x[:, :len(FEATURES)], y), fit_adapter(m.context, x, y)).save(proj / "base.npz")
    (proj / "lab.csv").write_text("sv_id,is_astrocyte\n1,0\n2,1\n")
    monkeypatch.setattr(astrocytes, "graph_data", lambda *a, **k: pytest.fail("features read before --base was checked"))
    code, err = cli(capsys, monkeypatch, "train", "astrocytes", "--labels", str(proj / "lab.csv"),
                    "--base", str(proj / "base.npz"), "--learner", learner, "--wd", str(proj))
    assert code == 2
    one_line_error(err, *words)


def test_internal_errors_say_so_in_one_line(capsys, monkeypatch):
    """A bug (not bad input) is exit 1, one line, pointing at --debug."""
    from syngraph.errors import explain

    code, msg = explain(ZeroDivisionError("integer modulo by zero"))
    assert code == 1 and "internal error" in msg and "--debug" in msg and "\n" not in msg
