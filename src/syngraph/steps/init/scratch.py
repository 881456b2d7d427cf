"""Block-local label scratch: one uncompressed ``.npy`` per block, ids mapped on read.

The segment and watershed passes write each block's labels as small unsigned ints (uint16 when
they fit, else uint32) under ``<wd>/steps/init/scratch/<name>/<block id>.npy``: block-local ids
(segment) or global seed ids (watershed). Compared with a uint64 Zarr layer of provisional ids
this skips the zstd (de)compression and the 64-bit conversions, which dominated the block tasks.

:func:`read` assembles any box from the blocks it touches and maps each block's ids through a
lookup table: provisional ids ``(block_id + 1) << 32 | local`` when no mapping is given (see
:mod:`syngraph.steps.init.stitch`), else the rows of a sorted ``src -> dst`` mapping whose
source is provisional (``per_block=True``) or a global id (``per_block=False``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from syngraph.bbox import BBox
from syngraph.steps.init.stitch import LOCAL_BITS


def block_path(root: Path, name: str, block_id: int) -> Path:
    return Path(root) / name / f"{block_id:08d}.npy"


def write(root: Path, name: str, block_id: int, labels: np.ndarray) -> None:
    """Store one block's labels (ids < 2**32) as uint16/uint32, atomically (temp name, rename)."""
    top = int(labels.max()) if labels.size else 0
    if top >= 2**32:
        raise ValueError(f"scratch {name}: id {top} does not fit in 32 bits")
    dt = np.uint16 if top < 2**16 else np.uint32
    path = block_path(root, name, block_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npy")
    try:
        np.save(tmp, np.asarray(labels).astype(dt, copy=False))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (disk full) leaves no scratch file


def load(root: Path, name: str, block_id: int) -> np.ndarray:
    return np.load(block_path(root, name, block_id), mmap_mode="r")


def block_lut(src: np.ndarray, dst: np.ndarray, block_id: int | None, n_local: int) -> np.ndarray:
    """Lookup table local id -> mapped id for one block (``block_id=None``: ids are global).

    Ids with no row map to 0.
    """
    lut = np.zeros(n_local + 1, np.uint64)
    if block_id is None:
        hi = int(np.searchsorted(src, np.uint64(n_local), side="right"))
        lut[src[:hi].astype(np.int64)] = dst[:hi]
        return lut
    base = np.uint64((block_id + 1) << LOCAL_BITS)
    lo = int(np.searchsorted(src, base))
    hi = int(np.searchsorted(src, base + np.uint64(n_local), side="right"))
    loc = (src[lo:hi] - base).astype(np.int64)
    lut[loc] = dst[lo:hi]
    return lut


def read(
    root: Path,
    name: str,
    box: BBox,
    grid: dict[tuple[int, int, int], tuple[int, BBox]],
    block_size: tuple[int, int, int],
    mapping: tuple[np.ndarray, np.ndarray] | None = None,
    per_block: bool = True,
) -> np.ndarray:
    """Labels of ``box`` (uint64) assembled from the scratch blocks it touches.

    ``grid`` maps a block index to (block id, core). Without ``mapping`` the result holds
    provisional ids; with ``mapping=(src, dst)`` (``src`` sorted) every id goes through it.
    """
    out = np.zeros(box.shape, np.uint64)
    lo = [s // b for s, b in zip(box.start, block_size, strict=True)]
    hi = [(e - 1) // b for e, b in zip(box.stop, block_size, strict=True)]
    for i in range(lo[0], hi[0] + 1):
        for j in range(lo[1], hi[1] + 1):
            for k in range(lo[2], hi[2] + 1):
                bid, core = grid[(i, j, k)]
                inter = core.intersect(box)
                part = np.asarray(load(root, name, bid)[inter.local_slices(core)])
                n = int(part.max()) if part.size else 0
                if mapping is None:
                    lut = np.zeros(n + 1, np.uint64)
                    lut[1:] = np.arange(1, n + 1, dtype=np.uint64) | np.uint64((bid + 1) << LOCAL_BITS)
                else:
                    lut = block_lut(mapping[0], mapping[1], bid if per_block else None, n)
                out[inter.local_slices(box)] = lut[part]
    return out
