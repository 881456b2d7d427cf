"""Model files as plain arrays: an ``.npz`` written atomically, with a string record ``info``
(loaded with ``allow_pickle=False``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], info: dict[str, str] | None = None) -> Path:
    """``arrays`` (plus ``info`` as ``info_keys`` / ``info_values``) in ``path``, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    if info is not None:
        arrays = {"info_keys": np.array(list(info)), "info_values": np.array(list(info.values())), **arrays}
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)
    return path


def read_info(z: Any) -> dict[str, str]:
    """The ``info`` record of an open npz written by :func:`write_npz`."""
    return dict(zip((str(k) for k in z["info_keys"]), (str(v) for v in z["info_values"]), strict=True))
