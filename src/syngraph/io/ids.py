"""uint64 id filters for Parquet reads: pyarrow's tuple filters turn ids into C longs, which
overflows for ids >= 2**63, so the ids go in as a uint64 array."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def ids_in(column: str, ids: Iterable[int] | np.ndarray) -> pc.Expression:
    """``column in ids`` for uint64 ids (any of the 2**64 values)."""
    arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.uint64)
    return pc.field(column).isin(pa.array(arr, pa.uint64()))


def id_equals(column: str, obj_id: int) -> pc.Expression:
    """``column == obj_id`` for a uint64 id."""
    return pc.field(column) == pa.scalar(int(obj_id), pa.uint64())
