"""Loading a model file named in syngraph.toml: every failure is one :class:`InputError` naming
the config key, the file and the fix."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from syngraph.errors import InputError

T = TypeVar("T")

TRAIN_COMMANDS = {
    "cells.astrocyte_model": "syngraph train astrocytes --labels TABLE",
    "synapses.model": "syngraph train synapses --labels TABLE",
    "compartments.model": "syngraph train compartments --labels points.csv",
    "celltypes.model": "syngraph train celltypes --labels cells.csv",
    "embeddings.model": "syngraph train embeddings",
}


def load_model_file(
    load: Callable[[Path | None], T], path: str | Path | None, key: str, *,
    fix: str | None = None, error: type[InputError] = InputError, what: str = "model",
) -> T:
    """``load(path)``, or ``load(None)`` (the shipped default) when ``path`` is None.

    A failure raises ``error`` naming ``key`` (a config key or an option), saying the file is not
    a usable ``what`` file and ending in ``fix`` (default: retrain with the command of
    :data:`TRAIN_COMMANDS`, or use the shipped model)."""
    if path is None:
        return load(None)
    path = Path(path)
    if fix is None:
        fix = f"retrain it with `{TRAIN_COMMANDS[key]}`, or remove {key} from syngraph.toml to use the shipped model"
    if not path.is_file():
        raise error(f'{key} = "{path}": no such file; {fix}')
    try:
        return load(path)
    except (ValueError, KeyError, IndexError, TypeError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise error(
            f'{key} = "{path}": not a usable {what} file ({type(exc).__name__}: {exc}); {fix}'
        ) from exc
