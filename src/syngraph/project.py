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
from typing import Any, Literal

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
        """The object table ``name`` (e.g. ``"sv"``, ``"mi"``) as an Arrow table (``.to_pandas()``
        gives a DataFrame)."""
        path = self.table_path(name)
        if not path.exists():
            raise FileNotFoundError(
                f"table '{name}' not found in {self.tables_dir} (have: {', '.join(self.tables()) or 'none'}); "
                f"run the step that writes it first (e.g. `syngraph run init`)"
            )
        return pq.read_table(path)

    def mesh(self, layer: str, obj_id: int) -> tuple[Any, Any]:
        """One object's mesh: vertices (N, 3) float32 in nm and faces (M, 3) uint32.

        Reads ``meshes/<layer>/`` (Neuroglancer precomputed legacy, written by ``syngraph run init``).
        """
        from syngraph.meshes import read_mesh

        mesh_dir = self.workdir / "meshes" / layer
        if not mesh_dir.is_dir():
            have = sorted(p.name for p in (self.workdir / "meshes").glob("*")) if (self.workdir / "meshes").is_dir() else []
            raise FileNotFoundError(
                f"no meshes for layer '{layer}' in {self.workdir / 'meshes'} (have: {', '.join(have) or 'none'}); "
                f"run `syngraph run init` (and check meshes.exclude in syngraph.toml)"
            )
        return read_mesh(mesh_dir, obj_id)

    def gt(self, name: str) -> pa.Table:
        """A ground-truth table of the demo tissue (``gt/<name>.parquet``)."""
        return pq.read_table(self.workdir / "gt" / f"{name}.parquet")

    def cell(self, cell_id: int) -> Any:
        """One cell (:class:`syngraph.cell.Cell`): sv ids, kind, bbox, organelles, ``.mesh``."""
        from syngraph.cell import load_cell

        return load_cell(self.workdir, cell_id)

    def skeleton(self, cell_id: int) -> Any:
        """One cell's skeleton (:class:`syngraph.skeleton_io.CellSkeleton`): nodes in nm, edges,
        radius and node attributes (``myelin`` ...), read from ``tables/skeletons.parquet``."""
        from syngraph.skeleton_io import read_skeleton

        return read_skeleton(self.workdir, cell_id)

    def sql(self, query: str, output: Literal["relation", "pandas", "arrow"] = "relation") -> Any:
        """Run a DuckDB query over every table (each visible under its name).

        Returns a DuckDB relation (``.df()`` pandas, ``.to_arrow_table()`` Arrow, ``.fetchall()``),
        or with ``output="pandas"`` / ``"arrow"`` the result as a pandas DataFrame / Arrow table.
        """
        import duckdb

        if output not in ("relation", "pandas", "arrow"):
            raise ValueError(f"output={output!r}: choose 'relation', 'pandas' or 'arrow'")
        con = duckdb.connect()
        for name in self.tables():
            con.execute(
                f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{self.table_path(name)}')"
            )
        rel = con.sql(query)
        if output == "pandas":
            return rel.df()
        return rel.to_arrow_table() if output == "arrow" else rel


def open(workdir: str | Path) -> Project:  # noqa: A001 - mirrors zarr.open / syngraph.open
    """Open a working directory."""
    return Project(workdir)
