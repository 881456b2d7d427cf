"""One reconstructed cell, as ``syngraph.open(wd).cell(id)`` returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from syngraph.bbox import BBox
from syngraph.io.ids import id_equals


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh: vertices (n, 3) float32 in nm (XYZ), faces (k, 3) uint32."""

    vertices: np.ndarray
    faces: np.ndarray

    @property
    def area_um2(self) -> float:
        from syngraph.meshes import area

        return area(self.vertices, self.faces) / 1e6

    @property
    def is_closed(self) -> bool:
        """Every edge is shared by exactly two faces (a watertight, welded surface)."""
        from syngraph.meshes import is_closed

        return is_closed(self.faces)


@dataclass(frozen=True)
class Cell:
    """A cell: its supervoxels, kind, size, bounding box (voxels), organelles, and mesh on demand."""

    cell_id: int
    kind: str
    sv_ids: np.ndarray
    size_vx: int
    bbox: BBox
    rep_vx: tuple[int, int, int]
    organelles: dict[str, np.ndarray] = field(default_factory=dict)
    workdir: Path | None = None

    @property
    def mesh(self) -> Mesh:
        if self.workdir is None:
            raise FileNotFoundError("this Cell was not loaded from a working directory")
        from syngraph.meshes import read_mesh

        return Mesh(*read_mesh(self.workdir / "meshes" / "cells", self.cell_id))


def load_cell(workdir: str | Path, cell_id: int) -> Cell:
    """Read one cell's rows from ``tables/cells``, ``sv_to_cell`` and ``cell_organelles``."""
    wd = Path(workdir)
    tables = wd / "tables"
    if not (tables / "cells.parquet").exists():
        raise FileNotFoundError(f"{tables / 'cells.parquet'} is missing; run `syngraph run cells` first")
    rows = pq.read_table(tables / "cells.parquet", filters=id_equals("cell_id", cell_id)).to_pylist()
    if not rows:
        raise KeyError(
            f"cell {cell_id} is not in {tables / 'cells.parquet'}; cell ids are the smallest "
            f"supervoxel id of each cell (look one up in tables/sv_to_cell.parquet)"
        )
    row = rows[0]
    svs = pq.read_table(tables / "sv_to_cell.parquet", filters=id_equals("cell_id", cell_id))
    organelles: dict[str, np.ndarray] = {}
    org_path = tables / "cell_organelles.parquet"
    if org_path.exists():
        org = pq.read_table(org_path, filters=id_equals("cell_id", cell_id))
        layers = np.asarray(org.column("organelle_layer").to_pylist(), dtype=object)
        oid = org.column("organelle_id").to_numpy()
        for layer in sorted(set(layers.tolist())):
            organelles[layer] = np.sort(oid[layers == layer]).astype(np.uint64)
    return Cell(
        cell_id=int(cell_id),
        kind=row["kind"],
        sv_ids=np.sort(svs.column("sv_id").to_numpy()).astype(np.uint64),
        size_vx=int(row["size_vx"]),
        bbox=BBox(tuple(row[f"bbox_min_{a}_vx"] for a in "xyz"), tuple(row[f"bbox_max_{a}_vx"] for a in "xyz")),  # type: ignore[arg-type]
        rep_vx=tuple(int(row[f"rep_{a}_vx"]) for a in "xyz"),  # type: ignore[arg-type]
        organelles=organelles,
        workdir=wd,
    )
