"""The error types a user can fix, and how the CLI reports any error in one line.

Exit codes: 2 for bad input (a file, layer or parameter the user can fix), 3 for a broken
environment (disk full, read-only file system, unreachable scheduler), 1 for anything else (a bug:
``--debug`` shows the traceback).
"""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

from syngraph.config import ConfigError
from syngraph.engine.compute import SchedulerAddressError, SchedulerUnreachable
from syngraph.engine.run import ManifestMismatch, TaskFailure
from syngraph.io.volume import VolumeError

USER_EXIT, ENVIRONMENT_EXIT, BUG_EXIT = 2, 3, 1


class InputError(ValueError):
    """An input file, table or parameter is wrong; the message says which and how to fix it."""


class StepOrderError(RuntimeError):
    """A step needs the output of an earlier step that has not run (or has changed since)."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    VolumeError,
    ManifestMismatch,
    InputError,
    StepOrderError,
    SchedulerAddressError,
    FileNotFoundError,
)

_ENV_ERRNOS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk full (quota exceeded)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied (read-only?)",
    errno.EPERM: "permission denied (read-only?)",
}
_ENV_WORDS = {"No space left on device": errno.ENOSPC, "Read-only file system": errno.EROFS,
              "Permission denied": errno.EACCES, "Disk quota exceeded": errno.EDQUOT}


LOW_SPACE_BYTES = 16 * 2**20
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")  # numpy's fwrite on a full disk


def _env_errno(exc: BaseException, workdir: Path | None) -> int | None:
    """The errno of an environment failure: by errno, by the words of readers that drop it
    (pyarrow, tensorstore, numpy), or any failed write while the working directory's disk is full."""
    if not isinstance(exc, OSError | ValueError) or isinstance(exc, FileNotFoundError | ConnectionError):
        return None
    if isinstance(exc, OSError) and exc.errno in _ENV_ERRNOS:
        return exc.errno
    words = next((code for words, code in _ENV_WORDS.items() if words in str(exc)), None)
    if words is not None:
        return words
    if isinstance(exc, OSError) and (_SHORT_WRITE.search(str(exc)) or _free_bytes(workdir) < LOW_SPACE_BYTES):
        return errno.ENOSPC
    return None


def _free_bytes(workdir: Path | None) -> float:
    try:
        return shutil.disk_usage(workdir or Path.cwd()).free
    except OSError:
        return float("inf")


def _remove_scratch(exc: BaseException, workdir: Path | None) -> None:
    """A write that failed half-way leaves temporary files: remove them (never trusted, but litter
    that fills a full disk further). Only names our atomic writers use (``*.tmp*``)."""
    names = [getattr(exc, "filename", None), getattr(exc, "filename2", None)]
    for name in names:
        if name and ".tmp" in Path(str(name)).name:
            Path(str(name)).unlink(missing_ok=True)
    if workdir is None or not (workdir / "syngraph.toml").exists():
        return
    for sub in ("steps", "tables", "meshes", "skeletons", "export"):
        for p in (workdir / sub).rglob("*.tmp*"):
            if p.is_file():
                p.unlink(missing_ok=True)


def explain(exc: BaseException, workdir: str | Path | None = None) -> tuple[int, str]:
    """The exit code and the one-line message the CLI prints for ``exc`` (``workdir``: the
    working directory of the command, to tell a full disk and to clear scratch files)."""
    wd = Path(workdir).absolute() if workdir is not None else None
    if isinstance(exc, TaskFailure) and exc.__cause__ is not None:
        code, msg = explain(exc.__cause__, wd)
        head = str(exc).split(" (ids", 1)[0]
        if code == BUG_EXIT:
            return BUG_EXIT, f"{head}; the first: {msg}"
        return code, msg
    code = _env_errno(exc, wd)
    if code is not None:
        _remove_scratch(exc, wd)
        where = getattr(exc, "filename", None) or (f"in {wd}" if wd else "a file")
        detail = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
        return ENVIRONMENT_EXIT, (
            f"{_ENV_ERRNOS[code]}: cannot write {where} ({detail}); free space or make it writable "
            f"(or choose another --wd), then rerun: finished work is kept"
        )
    if isinstance(exc, SchedulerUnreachable):
        return ENVIRONMENT_EXIT, str(exc)
    if isinstance(exc, USER_ERRORS):
        return USER_EXIT, str(exc)
    first = (str(exc).splitlines() or [""])[0]
    return BUG_EXIT, (f"internal error: {type(exc).__name__}: {first} "
                      f"(rerun with --debug for the traceback, and please report it)")
