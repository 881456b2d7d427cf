"""The error types a user can fix; the CLI prints them without a traceback."""

from syngraph.config import ConfigError
from syngraph.engine.run import ManifestMismatch, TaskFailure
from syngraph.io.volume import VolumeError


class InputError(ValueError):
    """An input file, table or parameter is wrong; the message says which and how to fix it."""


class StepOrderError(RuntimeError):
    """A step needs the output of an earlier step that has not run."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    VolumeError,
    ManifestMismatch,
    TaskFailure,
    InputError,
    StepOrderError,
    FileNotFoundError,
)
