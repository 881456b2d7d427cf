"""A run as a whole: step dependencies (needs and uses), one cluster and one scheduler probe per run,
and `syngraph plan`."""

import functools
import socket

import _engine_tasks
import cloudpickle
import pytest

from syngraph.engine import done
from syngraph.errors import StepOrderError
from syngraph.pipeline import step_inputs, upstream_of


def _finish(wd, step, table, inputs):
    """A DONE marker for ``step`` that wrote ``tables/<table>.parquet`` (content: ``table``)."""
    path = wd / "tables" / f"{table}.parquet"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"{table} {len(list(path.parent.iterdir()))}")
    outputs = {f"tables/{table}.parquet": done.file_digest(path)}
    record = {n: done.read_done(wd, n)["digest"] for n in inputs}
    done.write_done(wd, step, {"step": step}, outputs, record)


def test_rerunning_compartments_makes_synapses_and_matrix_stale(tmp_path):
    for step, inputs in (("init", ()), ("rag", ("init",)), ("astrocytes", ("rag",)), ("cells", ("astrocytes",))):
        _finish(tmp_path, step, step, inputs)
    assert step_inputs(tmp_path, "synapses") == ("cells",)  # compartments never ran: not required
    assert step_inputs(tmp_path, "synapses", contacts_only=True) == ("init",)
    _finish(tmp_path, "skeletons", "skeletons", ("cells",))
    _finish(tmp_path, "compartments", "compartments", ("skeletons",))
    assert step_inputs(tmp_path, "synapses") == ("cells", "compartments")
    _finish(tmp_path, "synapses", "syn_ssv", step_inputs(tmp_path, "synapses"))
    assert step_inputs(tmp_path, "matrix") == ("synapses", "compartments")
    done.check_inputs(tmp_path, "matrix", step_inputs(tmp_path, "matrix"), upstream_of, StepOrderError)
    _finish(tmp_path, "compartments", "compartments", ("skeletons",))  # rerun, other labels
    with pytest.raises(StepOrderError, match="step 'synapses' ran on an earlier result of step 'compartments'"):
        done.check_inputs(tmp_path, "matrix", step_inputs(tmp_path, "matrix"), upstream_of, StepOrderError)
    _finish(tmp_path, "synapses", "syn_ssv", step_inputs(tmp_path, "synapses"))
    _finish(tmp_path, "celltypes", "celltypes", ("compartments",))
    assert step_inputs(tmp_path, "matrix") == ("synapses", "compartments", "celltypes")
    done.check_inputs(tmp_path, "matrix", step_inputs(tmp_path, "matrix"), upstream_of, StepOrderError)


def test_one_cluster_for_the_steps_of_a_session_and_each_step_records_its_workers(tmp_path, monkeypatch):
    import distributed

    from syngraph.engine import Block, Compute, run_tasks, session
    from syngraph.engine.records import StepRun

    cloudpickle.register_pickle_by_value(_engine_tasks)
    started = []

    class Counted(distributed.LocalCluster):
        def __init__(self, *a, **k):
            started.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(distributed, "LocalCluster", Counted)
    tasks = [Block(id=i, index=(i, 0, 0), core=None, read=None) for i in range(2)]
    peaks = {}
    with session(Compute(workers=2)):
        for step, mb in (("a", 300), ("b", 20)):
            with StepRun(tmp_path / step) as rec:
                run_tasks(functools.partial(_engine_tasks.hold_mb, mb=mb), tasks, tmp_path / step / "t",
                          params={}, compute=Compute(workers=2), progress=False)
            peaks[step] = rec.runs[-1]["peak_rss_mb"] - rec.runs[-1]["peak_rss_mb_main"]
    assert len(started) == 1
    assert peaks["a"] > 300 and 0 < peaks["b"] < peaks["a"] - 250, peaks  # the workers' own peak, per step


def test_a_scheduler_address_is_probed_once_per_process(monkeypatch):
    from syngraph.engine import compute

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        address = f"tcp://127.0.0.1:{srv.getsockname()[1]}"
        calls = []
        real = socket.create_connection
        monkeypatch.setattr(socket, "create_connection", lambda *a, **k: calls.append(a) or real(*a, **k))
        compute.check_scheduler(address)  # syngraph.checks.check_project
        compute.check_scheduler(address)  # the session
    assert len(calls) == 1
