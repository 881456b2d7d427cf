"""The error types a user can fix, and how the CLI reports any error in one line.

Exit codes: 2 for bad input (a file, layer or parameter the user can fix), 3 for a broken
environment (disk full, read-only file system, unreachable scheduler), 1 for anything else (a bug:
``--debug`` shows the traceback).
"""

from __future__ import annotations

import errno
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


def _env_errno(exc: BaseException) -> int | None:
    if not isinstance(exc, OSError) or isinstance(exc, FileNotFoundError | ConnectionError):
        return None
    if exc.errno in _ENV_ERRNOS:
        return exc.errno
    return next((code for words, code in _ENV_WORDS.items() if words in str(exc)), None)


def _remove_scratch(exc: OSError) -> None:
    """A write that failed half-way leaves its temporary file: remove it (never trusted, but litter)."""
    for name in (exc.filename, exc.filename2):
        if name and ".tmp" in Path(str(name)).name:
            Path(str(name)).unlink(missing_ok=True)


def explain(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message the CLI prints for ``exc``."""
    if isinstance(exc, TaskFailure) and exc.__cause__ is not None:
        code, msg = explain(exc.__cause__)
        head = str(exc).split(" (ids", 1)[0]
        if code == BUG_EXIT:
            return BUG_EXIT, f"{head}; the first: {msg}"
        return code, msg
    code = _env_errno(exc)
    if code is not None:
        assert isinstance(exc, OSError)
        _remove_scratch(exc)
        where = exc.filename or "a file in the working directory"
        return ENVIRONMENT_EXIT, (
            f"{_ENV_ERRNOS[code]}: cannot write {where} ({exc.strerror or exc}); "
            f"free space or make it writable (or choose another --wd), then rerun: finished work is kept"
        )
    if isinstance(exc, SchedulerUnreachable):
        return ENVIRONMENT_EXIT, str(exc)
    if isinstance(exc, USER_ERRORS):
        return USER_EXIT, str(exc)
    first = (str(exc).splitlines() or [""])[0]
    return BUG_EXIT, (f"internal error: {type(exc).__name__}: {first} "
                      f"(rerun with --debug for the traceback, and please report it)")
