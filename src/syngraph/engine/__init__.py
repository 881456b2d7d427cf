"""The blockwise engine: block grids, resumable task runs, and where they run."""

from syngraph.engine.blocks import Block, align_block_size, block_grid, grid_shape
from syngraph.engine.compute import Compute, session
from syngraph.engine.run import (
    ManifestMismatch,
    RunReport,
    TaskFailure,
    is_done,
    params_hash,
    read_task_tables,
    run_tasks,
    write_table_atomic,
)

__all__ = [
    "Block",
    "Compute",
    "ManifestMismatch",
    "RunReport",
    "TaskFailure",
    "align_block_size",
    "block_grid",
    "grid_shape",
    "is_done",
    "params_hash",
    "read_task_tables",
    "run_tasks",
    "session",
    "write_table_atomic",
]
