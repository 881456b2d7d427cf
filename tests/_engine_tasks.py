"""Block functions used by the engine tests (importable by Dask workers and subprocesses)."""

from __future__ import annotations

import os
import time

import cc3d
import numpy as np
import pyarrow as pa

from syngraph.engine import Block
from syngraph.io.volume import open_layer


def label_block(block: Block, workdir: str, sleep_s: float = 0.0) -> pa.Table:
    """Label the block's core with cc3d, write it to `out` and return per-label voxel counts."""
    src = open_layer(workdir, "src").read(block.core)
    labels = cc3d.connected_components(src > 0, connectivity=26).astype(np.uint64)
    labels[labels > 0] += np.uint64(block.id * 10_000)
    open_layer(workdir, "out").write(labels, block.core.start)
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    if sleep_s:
        time.sleep(sleep_s)
    return pa.table({"block": np.full(len(ids), block.id, np.int64), "id": ids, "size_vx": counts})


def flaky_block(block: Block, workdir: str, fail_ids: tuple[int, ...]) -> pa.Table:
    if block.id in fail_ids and not os.path.exists(os.path.join(workdir, "fixed")):
        raise RuntimeError(f"injected failure in block {block.id}")
    return label_block(block, workdir)


def hold_mb(block: Block, mb: int) -> None:
    """Hold ``mb`` MiB for a moment (a task whose memory a step's record must show)."""
    a = np.ones(mb * 2**20 // 8)
    time.sleep(0.3)
    del a
