"""Resumable task runs with done markers (the daisy-v2 design, on Dask or in-process).

What is stored, under ``<step_dir>``::

    manifest.json        step name, parameter hash and task-layout hash of the run
    tasks/<id>.parquet   the task's table (if it returned one), written as .tmp then renamed
    tasks/<id>.done      JSON {seconds, peak_rss_mb, rows}: written last, after every output of the
                         task is in place; its presence is what "done" means
    stats.json           wall time, task counts, peak memory of the last run

On failure: a task that raises leaves no ``.done`` file, so a rerun does it again; every output a
task writes must be deterministic and idempotent (same bytes on a rerun, e.g. label chunks written
at fixed positions), so a half-finished task is simply redone. After all tasks ran, failures raise
:class:`TaskFailure` naming the failed ids; finished tasks stay done. A manifest whose hash differs
from the current parameters refuses to resume (the fix: ``overwrite=True`` / ``--overwrite``).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from syngraph.engine.compute import Compute, session

RUNS_NAME = "runs.json"  # the run records of a step (engine.records), kept by overwrite


class HasId(Protocol):
    id: int


class TaskFailure(RuntimeError):
    """Some tasks of a step failed; the others are done and will be skipped on rerun."""


class ManifestMismatch(RuntimeError):
    """The step directory holds a run with other parameters."""


@dataclass
class RunReport:
    step: str
    n_tasks: int
    n_done: int
    n_skipped: int
    seconds: float
    peak_rss_mb: float


def params_hash(params: Mapping[str, Any]) -> str:
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` to ``path`` through a scratch file and a rename (a failed write leaves none)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


TABLE_FORMAT = 2
"""Version of the table columns (2: a unit in every column name, ``bbox_min_x_vx``, ``area_um2``).
Recorded in every table, DONE marker and task manifest; scratch or results of another format are
never reused (see docs/formats.md, "Tables: columns and units")."""

CURRENT_STEP: ContextVar[str] = ContextVar("syngraph_step", default="")
"""The pipeline step being run (set by ``pipeline.run_step``), recorded in every table's metadata."""

CURRENT_INPUTS: ContextVar[str] = ContextVar("syngraph_inputs", default="")
"""Digest of the finished upstream results the step runs on (set by ``pipeline.run_step``). Task
results from a run on other inputs are discarded, never resumed: resuming is for an interrupted run
of the same inputs."""


def table_metadata(path: Path) -> dict[str, str]:
    """The key-value metadata every table carries: ``syngraph_version``, ``step`` and, inside a
    working directory (the nearest parent holding ``syngraph.toml``), ``voxel_size_nm`` (XYZ)
    and ``config_sha256`` of that file."""
    import tomllib

    from syngraph import __version__

    meta = {"syngraph_version": __version__, "step": CURRENT_STEP.get(), "table_format": str(TABLE_FORMAT)}
    cfg = next((d / "syngraph.toml" for d in Path(path).absolute().parents if (d / "syngraph.toml").exists()), None)
    if cfg is not None:
        raw = cfg.read_bytes()
        meta["config_sha256"] = hashlib.sha256(raw).hexdigest()
        try:
            meta["voxel_size_nm"] = json.dumps([float(v) for v in tomllib.loads(raw.decode())["voxel_size_nm"]])
        except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError):
            pass
    return meta


def write_table_atomic(table: pa.Table, path: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write a Parquet file under a temporary name, then rename it into place, with
    :func:`table_metadata` (then ``metadata``, which wins) as key-value metadata (task outputs
    under ``tasks/`` get ``metadata`` only, so they do not depend on where they ran)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(table.schema.metadata or {})
    standard = table_metadata(path) if path.parent.name != "tasks" else {}
    meta.update({k.encode(): str(v).encode() for k, v in {**standard, **(metadata or {})}.items()})
    table = table.replace_schema_metadata(meta)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        pq.write_table(table, tmp, compression="zstd")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (disk full) leaves no scratch file


def peak_rss_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` where Linux has it: ``ru_maxrss`` survives
    fork + exec, so a freshly spawned worker would report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20


def _task_name(tid: int) -> str:
    return f"{tid:08d}"


class _TaskWrapper:
    """Runs one task on a worker and puts its outputs in place (picklable)."""

    def __init__(self, fn: Callable[[Any], pa.Table | None], tasks_dir: Path):
        self.fn = fn
        self.tasks_dir = tasks_dir

    def __call__(self, item: HasId) -> dict[str, Any]:
        t0 = time.perf_counter()
        table = self.fn(item)
        name = _task_name(item.id)
        rows = 0
        if table is not None:
            write_table_atomic(table, self.tasks_dir / f"{name}.parquet")
            rows = table.num_rows
        info = {
            "seconds": time.perf_counter() - t0,
            "peak_rss_mb": peak_rss_mb(),
            "rows": rows,
            "pid": os.getpid(),
        }
        write_text_atomic(self.tasks_dir / f"{name}.done", json.dumps(info))
        return info


def is_done(step_dir: str | Path) -> bool:
    return (Path(step_dir) / "stats.json").exists()


def run_tasks(
    fn: Callable[[Any], pa.Table | None],
    tasks: Sequence[HasId],
    step_dir: str | Path,
    *,
    params: Mapping[str, Any],
    compute: Compute | None = None,
    desc: str | None = None,
    progress: bool | None = None,
    overwrite: bool = False,
) -> RunReport:
    """Run ``fn(task)`` for every task not yet done; return a :class:`RunReport`.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one); it may
    write volume data (idempotently) and may return a small ``pyarrow.Table`` that is stored as
    the task's result (see :func:`read_task_tables`). ``params`` (JSON-able) identify the run:
    resuming with other params raises :class:`ManifestMismatch`.
    """
    step_dir = Path(step_dir)
    step = desc or step_dir.name
    if overwrite and step_dir.exists():
        for entry in step_dir.iterdir():  # all but the run records (engine.records) of this attempt
            if entry.name != RUNS_NAME:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    tasks_dir = step_dir / "tasks"
    tasks_dir.mkdir(parents=True, exist_ok=True)
    ids = [int(t.id) for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"step {step}: task ids are not unique")
    manifest = {
        "step": step,
        "params_hash": params_hash(params),
        "tasks_hash": hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16],
        "n_tasks": len(ids),
        "params": json.loads(json.dumps(params, default=str)),
        "table_format": TABLE_FORMAT,
        "inputs": CURRENT_INPUTS.get(),
    }
    mpath = step_dir / "manifest.json"
    old = json.loads(mpath.read_text()) if mpath.exists() else None
    # done tasks of an older syngraph (other columns) or of other upstream results: not reusable
    if old is not None and (old.get("table_format", 1), old.get("inputs", "")) != (TABLE_FORMAT, manifest["inputs"]):
        shutil.rmtree(tasks_dir)
        tasks_dir.mkdir()
        mpath.unlink()
        old = None
    if old is not None:
        for key in ("params_hash", "tasks_hash"):
            if old.get(key) != manifest[key]:
                raise ManifestMismatch(
                    f"step '{step}' in {step_dir} was started with other parameters or blocks "
                    f"({key} {old.get(key)} != {manifest[key]}); rerun with --overwrite "
                    f"(Python: overwrite=True) to discard it and start again"
                )
    else:
        write_text_atomic(mpath, json.dumps(manifest, indent=1))

    todo = [t for t in tasks if not (tasks_dir / f"{_task_name(t.id)}.done").exists()]
    n_skipped = len(tasks) - len(todo)
    (step_dir / "stats.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    failures: list[tuple[int, BaseException]] = []
    infos: list[dict[str, Any]] = []
    wrapper = _TaskWrapper(fn, tasks_dir)
    with session(compute) as runner, _progress(step, len(tasks), n_skipped, progress) as bar:
        keys = [f"{step}-{_task_name(t.id)}-{manifest['params_hash']}" for t in todo]
        for i, info, exc in runner.map_unordered(wrapper, todo, keys):
            if exc is not None:
                failures.append((todo[i].id, exc))
            else:
                infos.append(info)
            bar(failed=len(failures))
    seconds = time.perf_counter() - t0
    if failures:
        first_id, first_exc = failures[0]
        tb = "".join(traceback.format_exception(first_exc))
        raise TaskFailure(
            f"step '{step}': {len(failures)} of {len(tasks)} tasks failed "
            f"(ids {[f for f, _ in failures][:20]}); the other tasks are done and a rerun "
            f"resumes. First failure (task {first_id}):\n{tb}"
        ) from first_exc
    peak = max([i["peak_rss_mb"] for i in infos] + [0.0])
    report = RunReport(step, len(tasks), len(todo), n_skipped, seconds, peak)
    write_text_atomic(step_dir / "stats.json", json.dumps(report.__dict__, indent=1))
    return report


def read_task_tables(step_dir: str | Path) -> pa.Table | None:
    """Concatenate the tables of all tasks in task-id order (deterministic); None if none."""
    files = sorted((Path(step_dir) / "tasks").glob("*.parquet"))
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


class _Bar:
    def __init__(self, progress: Any, task: Any, skipped: int):
        self.progress, self.task, self.skipped = progress, task, skipped

    def __call__(self, failed: int = 0) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, failed=failed)


def clock(seconds: float) -> str:
    """``h:mm:ss`` of ``seconds``."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class LineProgress:
    """Plain progress for logs (no terminal): one line per ``every_pct`` % of the tasks, with the
    task counts, elapsed time and ETA, and a ``still running`` line after ``heartbeat_s`` without
    one (a step of few long tasks). Under Dask the counts are the futures the scheduler reports
    finished (``as_completed``), so the lines follow the cluster, not this process."""

    def __init__(self, step: str, total: int, skipped: int, every_pct: int = 10,
                 heartbeat_s: float = 60.0, stream: Any = None):
        self.step, self.total, self.skipped, self.every = step, total, skipped, every_pct
        self.stream = stream if stream is not None else sys.stderr
        self.done, self.failed = skipped, 0
        self.t0 = self.last = time.perf_counter()
        self.next_pct = (self._pct() // every_pct + 1) * every_pct
        self._lock = threading.Lock()
        self._stop = threading.Event()
        todo = total - skipped
        self._write(f"{step}: {total} tasks, {skipped} already done, {todo} to run")
        if todo:
            threading.Thread(target=self._heartbeat, args=(heartbeat_s,), daemon=True).start()

    def _pct(self) -> int:
        return 100 if self.total == 0 else int(100 * self.done / self.total)

    def _write(self, line: str) -> None:
        with self._lock:
            print(line, file=self.stream, flush=True)
            self.last = time.perf_counter()

    def _heartbeat(self, every_s: float) -> None:
        while not self._stop.wait(max(0.0, self.last + every_s - time.perf_counter())):
            if time.perf_counter() - self.last >= every_s:
                self._write(f"{self.step}: {self._pct():3d}% ({self.done}/{self.total} tasks) "
                            f"elapsed {clock(time.perf_counter() - self.t0)}, still running")

    def close(self) -> None:
        self._stop.set()

    def __call__(self, failed: int = 0) -> None:
        self.done += 1
        self.failed = failed
        pct = self._pct()
        if pct < self.next_pct:
            return
        self.next_pct = (pct // self.every + 1) * self.every
        elapsed = time.perf_counter() - self.t0
        ran = self.done - self.skipped
        eta = elapsed / ran * (self.total - self.done) if ran else 0.0
        fail = f", {failed} failed" if failed else ""
        self._write(f"{self.step}: {pct:3d}% ({self.done}/{self.total} tasks{fail}) "
                    f"elapsed {clock(elapsed)} eta {clock(eta)}")


class _progress:
    """Progress of a step's tasks: a rich bar on a terminal, :class:`LineProgress` lines otherwise
    (``show=None``), rich bar (``True``) or nothing (``False``) when chosen."""

    def __init__(self, step: str, total: int, skipped: int, show: bool | None):
        self.step, self.total, self.skipped, self.show = step, total, skipped, show
        self.progress: Any = None
        self.lines: LineProgress | None = None

    def __enter__(self) -> Callable[..., None]:
        show = sys.stderr.isatty() if self.show is None else self.show
        if not show:
            if self.show is None:
                self.lines = LineProgress(self.step, self.total, self.skipped)
                return self.lines
            return _Bar(None, None, self.skipped)
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("skipped {task.fields[skipped]} failed {task.fields[failed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self.progress.__enter__()
        task = self.progress.add_task(
            self.step, total=self.total, completed=self.skipped, skipped=self.skipped, failed=0
        )
        return _Bar(self.progress, task, self.skipped)

    def __exit__(self, *exc: Any) -> None:
        if self.lines is not None:
            self.lines.close()
        if self.progress is not None:
            self.progress.__exit__(*exc)
