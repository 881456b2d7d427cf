"""One convention across commands: --wd, flags shown as flags, steps in run --help, one demo seed."""

import re

import pytest
from typer.testing import CliRunner

import syngraph.cli.commands  # noqa: F401  (registers the commands)
from syngraph.cli import app
from syngraph.errors import InputError
from syngraph.pipeline import step_names
from syngraph.synth.params import DEMO_SEED

COMMANDS = ["synth", "import", "config init", "config check", "run", "evaluate", "demo", "edit",
            "report", "export synapses", "export skeletons", "train synapses", "train astrocytes", "plan"]


def syngraph(*args):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "160", "TERM": "dumb"})


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_flags_as_flags_and_wd_as_option(command):
    r = syngraph(*command.split(), "--help")
    assert r.exit_code == 0, r.output
    assert "<bool>" not in r.stdout, r.stdout
    if command not in ("synth", "demo"):
        assert re.search(r"--wd\s+-w\s+<path>\s+working directory", r.stdout), r.stdout


def test_run_help_lists_every_step():
    out = syngraph("run", "--help").stdout
    for name in step_names():
        assert re.search(rf"^\W*{name}\s+\w", out, re.M), (name, out)


def test_synth_and_demo_share_one_default_seed():
    for command in ("synth", "demo"):
        assert f"[default: {DEMO_SEED}]" in syngraph(command, "--help").stdout, command


def test_train_options_left_out_keep_the_library_defaults(monkeypatch, tmp_path):
    """--pieces and --cell-steps left out pass nothing of their own (the defaults live in the steps)."""
    import syngraph.steps.celltypes as celltypes
    import syngraph.steps.embeddings as embeddings

    seen: list[dict] = []
    monkeypatch.setattr(celltypes, "train_celltypes", lambda *a, **k: (seen.append(k), ("m.npz", 0.5))[1])
    monkeypatch.setattr(embeddings, "train_embeddings", lambda *a, **k: (seen.append(k), ("m", {}, 0))[1])
    for args in (["celltypes", "--labels", "l.csv"], ["celltypes", "--labels", "l.csv", "--pieces", "2"],
                 ["embeddings"], ["embeddings", "--cell-steps", "7"]):
        assert syngraph("train", *args, "--wd", str(tmp_path)).exit_code == 0
    assert [k.get("pieces", k.get("cell_steps")) for k in seen] == [None, 2, None, 7]
    assert "cell_steps" not in seen[2]


def test_wd_option_and_old_positional_form(tmp_path):
    r = syngraph("report", "--wd", str(tmp_path))
    assert r.exit_code == 0 and (tmp_path / "report.html").exists(), r.output
    (tmp_path / "report.html").unlink()
    r = syngraph("report", str(tmp_path))
    assert r.exit_code == 0 and (tmp_path / "report.html").exists(), r.output
    r = syngraph("report", str(tmp_path), "--wd", str(tmp_path / "other"))
    assert isinstance(r.exception, InputError) and "given twice" in str(r.exception)  # main(): exit 2
