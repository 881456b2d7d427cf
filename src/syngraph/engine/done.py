"""Step DONE markers with digests: a step runs only on finished, unchanged inputs.

``steps/<step>/DONE`` (JSON) is written last, when the whole step finished. Besides wall time and
a result summary it records

- ``outputs``: ``{path relative to the working directory: sha256[:16] of the file}`` for every table
  the step wrote (``tables/*.parquet`` that are new or replaced during the run),
- ``digest``: one hash over ``outputs`` (what a later step compares),
- ``inputs``: ``{needed step: its digest}`` at the time this step ran,
- ``table_format``: :data:`~syngraph.engine.run.TABLE_FORMAT` of the tables it wrote (none: 1).

Before a step runs, :func:`check_inputs` refuses (``StepOrderError``, naming the step to rerun)
when a step it needs has no DONE, when a needed step's tables changed after its DONE was written
or are of an older :data:`~syngraph.engine.run.TABLE_FORMAT`, or when a step upstream ran on an
earlier result of its own inputs (it is stale).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from syngraph.engine.run import TABLE_FORMAT, write_text_atomic

OUTPUT_DIRS = ("tables",)


def done_path(workdir: str | Path, step: str) -> Path:
    return Path(workdir) / "steps" / step / "DONE"


def read_done(workdir: str | Path, step: str) -> dict[str, Any] | None:
    """The DONE record of ``step``, or None when the step has not finished."""
    path = done_path(workdir, step)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:  # a torn or hand-edited marker is not trusted
        return None


def snapshot(workdir: str | Path) -> dict[str, tuple[int, int, int]]:
    """``{relative path: (inode, size, mtime_ns)}`` of the files a step may write (cheap, no reads)."""
    wd = Path(workdir)
    out = {}
    for d in OUTPUT_DIRS:
        for p in sorted((wd / d).glob("*.parquet")):
            st = p.stat()
            out[p.relative_to(wd).as_posix()] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def combined_digest(outputs: Mapping[str, str]) -> str:
    blob = "\n".join(f"{k} {v}" for k, v in sorted(outputs.items())).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def produced(workdir: str | Path, before: Mapping[str, tuple[int, int, int]],
             previous: Iterable[str] = ()) -> dict[str, str]:
    """Digests of the files written since ``before`` (plus ``previous`` outputs that still exist)."""
    wd = Path(workdir)
    now = snapshot(wd)
    names = {k for k, v in now.items() if before.get(k) != v} | {k for k in previous if k in now}
    return {k: file_digest(wd / k) for k in sorted(names)}


def write_done(workdir: str | Path, step: str, info: Mapping[str, Any], outputs: Mapping[str, str],
               inputs: Mapping[str, str]) -> Path:
    """Write ``steps/<step>/DONE`` atomically (a failed write leaves no scratch file)."""
    path = done_path(workdir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**info, "outputs": dict(outputs), "digest": combined_digest(outputs), "inputs": dict(inputs),
              "table_format": TABLE_FORMAT}
    write_text_atomic(path, json.dumps(record, indent=1, default=str))
    return path


def refresh_done(workdir: str | Path, step: str, also: Iterable[str | Path] = ()) -> None:
    """After a command rewrote ``step``'s tables in place (``syngraph edit``), record their new
    digests; steps that ran on the old ones then count as stale. No-op when ``step`` has no DONE."""
    wd = Path(workdir)
    record = read_done(wd, step)
    if record is None:
        return
    names = set(record.get("outputs", {})) | {Path(p).resolve().relative_to(wd.resolve()).as_posix() for p in also}
    outputs = {k: file_digest(wd / k) for k in sorted(names) if (wd / k).exists()}
    info = {k: v for k, v in record.items() if k not in ("outputs", "digest", "inputs")}
    write_done(wd, step, info, outputs, record.get("inputs", {}))


def _old_format(record: Mapping[str, Any], step: str, first: str | None = None) -> str | None:
    """What to do when ``step``'s DONE ``record`` is of an older table format (None: it is current);
    ``first``: the most upstream step of that format, where the rerun starts (default ``step``)."""
    fmt = record.get("table_format", 1)
    if fmt == TABLE_FORMAT:
        return None
    return (f"step '{step}' wrote its tables with an earlier syngraph (table format {fmt}; this version "
            f"reads format {TABLE_FORMAT}, with units in column names); rerun `syngraph run {first or step}` "
            "and the steps after it (or `syngraph run all`)")


def _first_of_old_format(workdir: Path, step: str, needs_of: Callable[[str], Iterable[str]]) -> str:
    """The most upstream finished step of an older table format above ``step`` (itself if none)."""
    for up in needs_of(step):
        record = read_done(workdir, up)
        if record is not None and record.get("table_format", 1) != TABLE_FORMAT:
            return _first_of_old_format(workdir, up, needs_of)
    return step


def check_inputs(workdir: str | Path, step: str, needs: Iterable[str],
                 needs_of: Callable[[str], Iterable[str]], error: type[Exception]) -> dict[str, str]:
    """Raise ``error`` unless every needed step is DONE, unchanged and not stale; return their digests.

    ``needs_of(name)`` gives the steps ``name`` needs (to walk upstream)."""
    wd = Path(workdir)
    digests: dict[str, str] = {}
    for need in needs:
        record = read_done(wd, need)
        if record is None:
            raise error(
                f"step '{step}' needs step '{need}', which has not finished (no {done_path(wd, need)}); "
                f"run `syngraph run {need}` first"
            )
        if (old := _old_format(record, need, _first_of_old_format(wd, need, needs_of))) is not None:
            raise error(old)
        for rel, digest in record.get("outputs", {}).items():
            if not (wd / rel).exists() or file_digest(wd / rel) != digest:
                raise error(
                    f"{wd / rel} changed (or vanished) after step '{need}' finished, so step '{step}' "
                    f"cannot trust it; rerun `syngraph run {need}`"
                )
        digests[need] = record.get("digest", "")
    _check_upstream(wd, list(needs), needs_of, error, set())
    return digests


def _check_upstream(wd: Path, names: list[str], needs_of: Callable[[str], Iterable[str]],
                    error: type[Exception], seen: set[str]) -> None:
    """Every finished step upstream must have run on the current result of its own inputs."""
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        record = read_done(wd, name) or {}
        for inp, digest in record.get("inputs", {}).items():
            now = read_done(wd, inp)
            if now is None or now.get("digest") != digest:
                raise error(
                    f"step '{name}' ran on an earlier result of step '{inp}' (which was rerun or "
                    f"edited since); rerun `syngraph run {name}` (and the steps after it)"
                )
        _check_upstream(wd, list(needs_of(name)), needs_of, error, seen)
