"""Cell skeletons on disk: navis Parquet, SWC (nm) and Neuroglancer precomputed skeletons.

What is written, by ``syngraph run skeletons`` (see docs/skeletons.md)::

    tables/skeletons.parquet        every node of every cell, navis' Parquet skeleton layout:
                                    node_id, parent_id (-1 = root), x, y, z (nm, float32),
                                    radius (nm), neuron (cell id, uint64), label (SWC type),
                                    myelin, myelin_raw (bool, when a myelin layer exists);
                                    sorted by neuron then node_id, parents before children; one
                                    row group per ~64k rows, so one cell is read through the
                                    row-group statistics without scanning the others.
                                    Key-value metadata "<cell_id>:units" = "nm" (navis) and
                                    "syngraph:units" = "nm".
    tables/skeleton_stats.parquet   cell_id, cable_length_um, n_branch_points, n_tips, n_nodes,
                                    n_trees
    skeletons/info, skeletons/<id>  Neuroglancer precomputed skeletons (unsharded), positions in
                                    nm with an identity transform; vertex attributes radius
                                    (float32), vertex_types (SWC codes), myelin (0/1), all float32

SWC files (:func:`write_swc`) hold nm coordinates and radii, stated in a ``# Meta:`` JSON line
(``"units": "nm"``, read by navis) and a ``# SCALE 1 1 1`` line (osteoid).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from syngraph.engine import write_table_atomic
from syngraph.engine.run import table_metadata
from syngraph.skeleton import Forest, orient, stats

NODES_TABLE = "skeletons"
STATS_TABLE = "skeleton_stats"
PRECOMPUTED_DIR = "skeletons"
ROW_GROUP_ROWS = 65536
_BOOL_ATTRS = ("myelin", "myelin_raw")


@dataclass(frozen=True)
class CellSkeleton:
    """One cell's skeleton: nodes in nm (XYZ), parents before children, roots have parent -1."""

    cell_id: int
    node_id: np.ndarray  # (n,) int64, 0..n-1
    parent_id: np.ndarray  # (n,) int64
    nodes_nm: np.ndarray  # (n, 3) float32
    radius_nm: np.ndarray  # (n,) float32
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def edges(self) -> np.ndarray:
        """(e, 2) node indices (child, parent)."""
        has = self.parent_id >= 0
        return np.stack([self.node_id[has], self.parent_id[has]], 1)

    @property
    def cable_length_um(self) -> float:
        e = self.edges
        return float(np.linalg.norm(self.nodes_nm[e[:, 0]] - self.nodes_nm[e[:, 1]], axis=1).sum() / 1000)

    def __len__(self) -> int:
        return len(self.node_id)


def to_cell_skeleton(cell_id: int, forest: Forest, priority: np.ndarray | None = None) -> CellSkeleton:
    """Order a :class:`~syngraph.skeleton.Forest` as trees (roots at the node of highest
    ``priority``, default the thickest)."""
    order, parent = orient(forest, priority)
    new = np.empty(len(order), np.int64)
    new[order] = np.arange(len(order))
    par = parent[order]
    return CellSkeleton(
        cell_id=int(cell_id),
        node_id=np.arange(len(order), dtype=np.int64),
        parent_id=np.where(par >= 0, new[np.maximum(par, 0)], -1),
        nodes_nm=np.asarray(forest.nodes_nm, np.float32)[order],
        radius_nm=np.asarray(forest.radius_nm, np.float32)[order],
        attributes={k: np.asarray(v)[order] for k, v in forest.attrs.items()},
    )


def swc_types(skel: CellSkeleton) -> np.ndarray:
    """SWC type per node from the ``compartment`` attribute (:mod:`syngraph.compartments` codes), else 0."""
    from syngraph.compartments import to_swc

    comp = skel.attributes.get("compartment")
    if comp is None:
        return np.zeros(len(skel), np.uint8)
    return to_swc(np.asarray(comp, np.uint8))


# ---------------------------------------------------------------------------- Parquet


def skeletons_table(skels: Iterable[CellSkeleton]) -> pa.Table:
    parts = []
    for s in sorted(skels, key=lambda s: s.cell_id):
        cols: dict[str, pa.Array] = {
            "node_id": pa.array(s.node_id, pa.int64()),
            "parent_id": pa.array(s.parent_id, pa.int64()),
            "x": pa.array(s.nodes_nm[:, 0], pa.float32()),
            "y": pa.array(s.nodes_nm[:, 1], pa.float32()),
            "z": pa.array(s.nodes_nm[:, 2], pa.float32()),
            "radius": pa.array(s.radius_nm, pa.float32()),
            "label": pa.array(swc_types(s), pa.uint8()),
            "neuron": pa.array(np.full(len(s), s.cell_id, np.uint64), pa.uint64()),
        }
        for k, v in s.attributes.items():
            cols[k] = pa.array(v)
        parts.append(pa.table(cols))
    if not parts:
        return pa.table({
            "node_id": pa.array([], pa.int64()), "parent_id": pa.array([], pa.int64()),
            "x": pa.array([], pa.float32()), "y": pa.array([], pa.float32()),
            "z": pa.array([], pa.float32()), "radius": pa.array([], pa.float32()),
            "label": pa.array([], pa.uint8()), "neuron": pa.array([], pa.uint64()),
        })
    return pa.concat_tables(parts, promote_options="default")


def write_nodes_parquet(path: Path, skels: list[CellSkeleton]) -> None:
    table = skeletons_table(skels)
    meta = {**table_metadata(path), "syngraph:units": "nm", "syngraph:coordinates": "xyz"}
    for s in skels:
        meta[f"{s.cell_id}:units"] = "nm"
        meta[f"{s.cell_id}:name"] = str(s.cell_id)
    table = table.replace_schema_metadata({k.encode(): v.encode() for k, v in meta.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS, write_statistics=True)
    tmp.replace(path)


def read_skeleton(workdir: str | Path, cell_id: int) -> CellSkeleton:
    """One cell's skeleton from ``tables/skeletons.parquet`` (reads only matching row groups)."""
    path = Path(workdir) / "tables" / f"{NODES_TABLE}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run `syngraph run skeletons` first")
    cid = int(cell_id)
    pf = pq.ParquetFile(path)
    idx = pf.schema_arrow.get_field_index("neuron")
    groups = []
    for g in range(pf.num_row_groups):
        st = pf.metadata.row_group(g).column(idx).statistics
        if st is None or not st.has_min_max or st.min <= cid <= st.max:
            groups.append(g)
    t = pf.read_row_groups(groups) if groups else pf.schema_arrow.empty_table()
    t = t.filter(pc.equal(t.column("neuron"), pa.scalar(cid, pa.uint64())))
    if t.num_rows == 0:
        raise KeyError(f"cell {cid} has no skeleton in {path}")
    t = t.sort_by("node_id")
    base = {"node_id", "parent_id", "x", "y", "z", "radius", "neuron", "label"}
    return CellSkeleton(
        cell_id=cid,
        node_id=t.column("node_id").to_numpy(),
        parent_id=t.column("parent_id").to_numpy(),
        nodes_nm=np.stack([t.column(c).to_numpy() for c in "xyz"], 1).astype(np.float32),
        radius_nm=t.column("radius").to_numpy(),
        attributes={c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names if c not in base},
    )


def cell_ids(workdir: str | Path) -> np.ndarray:
    path = Path(workdir) / "tables" / f"{NODES_TABLE}.parquet"
    return np.unique(pq.read_table(path, columns=["neuron"]).column("neuron").to_numpy())


# ---------------------------------------------------------------------------- SWC


def write_swc(path: str | Path, skel: CellSkeleton) -> Path:
    """Write one skeleton as SWC, coordinates and radii in nm (stated in the header)."""
    path = Path(path)
    meta = {"id": skel.cell_id, "name": str(skel.cell_id), "units": "nm"}
    lines = [
        f"# syngraph skeleton of cell {skel.cell_id}",
        f"# Meta: {json.dumps(meta)}",
        "# units: nm (x, y, z and radius in nanometers)",
        "# SCALE 1.0 1.0 1.0",
        "# n T x y z R P",
    ]
    types = swc_types(skel)
    for i in range(len(skel)):
        x, y, z = (float(v) for v in skel.nodes_nm[i])
        p = int(skel.parent_id[i])
        lines.append(
            f"{i + 1} {int(types[i])} {x:.1f} {y:.1f} {z:.1f} {float(skel.radius_nm[i]):.1f} "
            f"{p + 1 if p >= 0 else -1}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def read_swc(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(node_id, type, xyz, radius, parent) as written by :func:`write_swc` -> (xyz, radius, parent, type)."""
    rows = [ln.split() for ln in Path(path).read_text().splitlines() if ln and not ln.startswith("#")]
    a = np.array(rows, dtype=np.float64).reshape(-1, 7)
    return a[:, 2:5], a[:, 5], a[:, 6].astype(np.int64), a[:, 1].astype(np.int64)


# ---------------------------------------------------------------------------- precomputed


def _attr_spec(attrs: Mapping[str, np.ndarray]) -> list[dict[str, object]]:
    spec: list[dict[str, object]] = [
        {"id": "radius", "data_type": "float32", "num_components": 1},
        {"id": "vertex_types", "data_type": "float32", "num_components": 1},
    ]
    for k in attrs:  # float32: Neuroglancer rejects integer vertex attributes (google/neuroglancer#572)
        if k in _BOOL_ATTRS or k == "compartment":
            spec.append({"id": k, "data_type": "float32", "num_components": 1})
    return spec


def encode_precomputed(skel: CellSkeleton, spec: list[dict[str, object]]) -> bytes:
    """The Neuroglancer precomputed skeleton encoding of one cell (little endian)."""
    v = np.ascontiguousarray(skel.nodes_nm, "<f4")
    e = np.ascontiguousarray(skel.edges, "<u4")
    out = [struct.pack("<II", len(v), len(e)), v.tobytes(), e.tobytes()]
    for a in spec:
        name = str(a["id"])
        if name == "radius":
            vals = np.asarray(skel.radius_nm, "<f4")
        elif name == "vertex_types":
            vals = swc_types(skel).astype("<f4")
        else:
            raw = skel.attributes.get(name)
            vals = (np.zeros(len(skel)) if raw is None else np.asarray(raw)).astype(str(a["data_type"]))
        out.append(np.ascontiguousarray(vals).tobytes())
    return b"".join(out)


def decode_precomputed(data: bytes, spec: list[dict[str, object]]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    nv, ne = struct.unpack_from("<II", data, 0)
    off = 8
    v = np.frombuffer(data, "<f4", nv * 3, off).reshape(nv, 3)
    off += nv * 12
    e = np.frombuffer(data, "<u4", ne * 2, off).reshape(ne, 2)
    off += ne * 8
    attrs = {}
    for a in spec:
        dt = np.dtype(str(a["data_type"])).newbyteorder("<")
        n = nv * int(a["num_components"])  # type: ignore[call-overload]
        attrs[str(a["id"])] = np.frombuffer(data, dt, n, off)
        off += n * dt.itemsize
    return v, e, attrs


def write_precomputed(directory: Path, skels: list[CellSkeleton]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    keys: dict[str, np.ndarray] = {}
    for s in skels:
        keys.update(s.attributes)
    spec = _attr_spec(keys)
    info = {
        "@type": "neuroglancer_skeletons",
        "transform": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0],
        "vertex_attributes": spec,
    }
    for s in skels:
        tmp = directory / f".{s.cell_id}.tmp{os.getpid()}"
        tmp.write_bytes(encode_precomputed(s, spec))
        tmp.replace(directory / str(s.cell_id))
    tmp = directory / f".info.tmp{os.getpid()}"
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(directory / "info")


def read_precomputed(directory: str | Path, cell_id: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    directory = Path(directory)
    spec = json.loads((directory / "info").read_text())["vertex_attributes"]
    return decode_precomputed((directory / str(int(cell_id))).read_bytes(), spec)


# ---------------------------------------------------------------------------- the step's outputs


def stats_table(skels: list[CellSkeleton]) -> pa.Table:
    rows = []
    for s in skels:
        f = Forest(s.nodes_nm.astype(np.float64), s.edges, s.radius_nm, {})
        st = stats(f)
        rows.append((s.cell_id, st.cable_length_um, st.n_branch_points, st.n_tips, st.n_nodes, st.n_trees))
    a = list(zip(*rows, strict=True)) if rows else [[]] * 6
    return pa.table({
        "cell_id": pa.array(a[0], pa.uint64()),
        "cable_length_um": pa.array(a[1], pa.float64()),
        "n_branch_points": pa.array(a[2], pa.int64()),
        "n_tips": pa.array(a[3], pa.int64()),
        "n_nodes": pa.array(a[4], pa.int64()),
        "n_trees": pa.array(a[5], pa.int64()),
    })


def write_skeletons(workdir: str | Path, forests: Mapping[int, Forest]) -> list[CellSkeleton]:
    """Write all outputs of the skeletons step for ``{cell_id: Forest}``."""
    workdir = Path(workdir)
    skels = [to_cell_skeleton(c, f) for c, f in sorted(forests.items())]
    write_nodes_parquet(workdir / "tables" / f"{NODES_TABLE}.parquet", skels)
    write_table_atomic(stats_table(skels), workdir / "tables" / f"{STATS_TABLE}.parquet")
    write_precomputed(workdir / PRECOMPUTED_DIR, skels)
    return skels
