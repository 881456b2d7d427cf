"""A syngraph working directory: config, volumes, tables, meshes; ``syngraph.open(wd)``.

Layout of a working directory::

    syngraph.toml            the config (see syngraph.config)
    volumes.zarr/<layer>/    input and derived volumes (see syngraph.io.volume)
    tables/<name>.parquet    object tables written by the steps (sv, mi, vc, sj, overlap, cells ...)
    meshes/<layer>/          Neuroglancer precomputed legacy meshes, vertices in nm
    steps/<step>/            per-step resumable state (see syngraph.engine.run)
    gt/                      ground truth (demo tissue only)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from syngraph.config import ProjectConfig, load_config
from syngraph.io.volume import Layer, list_layers, open_layer


class Project:
    """Access to everything a working directory holds."""

    def __init__(self, workdir: str | Path):
        self.workdir = Path(workdir)
        if not self.workdir.is_dir():
            raise FileNotFoundError(f"working directory {self.workdir} does not exist")

    def __repr__(self) -> str:
        return f"Project({str(self.workdir)!r})"

    @property
    def config(self) -> ProjectConfig:
        return load_config(self.workdir)

    @property
    def tables_dir(self) -> Path:
        return self.workdir / "tables"

    def step_dir(self, step: str) -> Path:
        return self.workdir / "steps" / step

    def layer(self, name: str) -> Layer:
        return open_layer(self.workdir, name)

    def layers(self) -> list[str]:
        return list_layers(self.workdir)

    def table_path(self, name: str) -> Path:
        return self.tables_dir / f"{name}.parquet"

    def tables(self) -> list[str]:
        if not self.tables_dir.exists():
            return []
        return sorted(p.stem for p in self.tables_dir.glob("*.parquet"))

    def objects(self, name: str) -> pa.Table:
        """The object table ``name`` (e.g. ``"sv"``, ``"mi"``) as an Arrow table."""
        path = self.table_path(name)
        if not path.exists():
            raise FileNotFoundError(
                f"table '{name}' not found in {self.tables_dir} (have: {', '.join(self.tables()) or 'none'}); "
                f"run the step that writes it first (e.g. `syngraph run init`)"
            )
        return pq.read_table(path)

    def gt(self, name: str) -> pa.Table:
        """A ground-truth table of the demo tissue (``gt/<name>.parquet``)."""
        return pq.read_table(self.workdir / "gt" / f"{name}.parquet")

    def sql(self, query: str) -> Any:
        """Run a DuckDB query over every table (each visible under its name); returns Arrow."""
        import duckdb

        con = duckdb.connect()
        for name in self.tables():
            con.execute(
                f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{self.table_path(name)}')"
            )
        return con.execute(query).arrow()


def open(workdir: str | Path) -> Project:  # noqa: A001 - mirrors zarr.open / syngraph.open
    """Open a working directory."""
    return Project(workdir)
