"""Step ``cells``: connected components of the neuron and astrocyte graphs become cells
(reference: ``run_create_neuron_ssd``, syconn.md §2.5).

Reads ``tables/sv.parquet``, ``tables/sv_components.parquet`` and ``tables/rag_pruned.parquet``
(step ``rag``), ``tables/sv_class.parquet`` (step ``astrocytes``, optional: without it every kept
supervoxel is a neuron supervoxel), ``tables/edits.parquet`` (step ``edit``, optional) and, for
the organelle assignment, ``tables/overlap.parquet`` and ``tables/<layer>.parquet`` of each
organelle layer in the config. Writes::

    tables/cell_graph.parquet      sv_a < sv_b: the supervoxel edges the cells are made of
                                   (pruned graph, same-class edges only, edits applied)
    tables/sv_to_cell.parquet      sv_id, cell_id (sorted by sv_id)
    tables/cells.parquet           cell_id, kind (neuron/astrocyte), n_sv, size_vx,
                                   bbox_min/max_x/y/z_vx (max exclusive), rep_x/y/z_vx
    tables/cell_organelles.parquet cell_id, organelle_layer, organelle_id, ratio
    meshes/cells/<id>:0, <id>:0:<k>  one closed mesh per cell, a fragment per block (syngraph.meshes), nm;
                                   see syngraph.steps.cell_meshes

Cell id = the smallest supervoxel id of the component. Components come from
``scipy.sparse.csgraph`` on renumbered integer arrays (see :mod:`syngraph.graph`). A cell is an
astrocyte when more than half of its voxels are in astrocyte supervoxels. Organelle o is assigned
to cell c when the fraction of o's voxels inside c is ``> ratio_min`` and ``<= ratio_max`` and
o has more than ``assign_min_size_vx`` voxels, with each layer's own parameters (the reference
applies the first layer's to all, syconn.md §6.1.1).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syngraph.config import ProjectConfig, load_config
from syngraph.engine import Compute, write_table_atomic
from syngraph.errors import InputError
from syngraph.graph import connected_components, edge_array, normalize_edges
from syngraph.project import Project
from syngraph.steps.cell_meshes import mesh_cells

CELL_COLUMNS = (
    "cell_id", "kind", "n_sv", "size_vx",
    "bbox_min_x_vx", "bbox_min_y_vx", "bbox_min_z_vx", "bbox_max_x_vx", "bbox_max_y_vx", "bbox_max_z_vx",
    "rep_x_vx", "rep_y_vx", "rep_z_vx",
)


class CellsError(InputError):
    """The cells step is missing an input or got an inconsistent one."""


@dataclass(frozen=True)
class CellsReport:
    n_cells: int
    n_neurons: int
    n_astrocytes: int
    n_sv: int
    n_edges: int
    n_sv_not_in_cells: int = 0  # pruned by the rag step (cells.min_cc_size_nm)
    warnings: list[str] = field(default_factory=list)
    summary: str = ""


@dataclass
class SvData:
    """The supervoxel table as arrays, sorted by id."""

    ids: np.ndarray
    size_vx: np.ndarray
    bbox_min: np.ndarray
    bbox_max: np.ndarray
    rep: np.ndarray

    @classmethod
    def from_table(cls, sv: pa.Table) -> SvData:
        sv = sv.sort_by("id")
        col = lambda n: sv.column(n).to_numpy()  # noqa: E731
        return cls(
            ids=col("id").astype(np.uint64),
            size_vx=col("size_vx").astype(np.int64),
            bbox_min=np.stack([col(f"bbox_min_{a}_vx") for a in "xyz"], 1).astype(np.int64),
            bbox_max=np.stack([col(f"bbox_max_{a}_vx") for a in "xyz"], 1).astype(np.int64),
            rep=np.stack([col(f"rep_{a}_vx") for a in "xyz"], 1).astype(np.int64),
        )

    def index(self, sv_ids: np.ndarray, what: str = "supervoxel ids") -> np.ndarray:
        pos = np.searchsorted(self.ids, sv_ids)
        pos = np.minimum(pos, max(self.ids.size - 1, 0))
        bad = self.ids[pos] != sv_ids if self.ids.size else np.ones(np.shape(sv_ids), bool)
        if np.any(bad):
            raise CellsError(
                f"{what} {np.asarray(sv_ids)[bad][:10].tolist()} are not in tables/sv.parquet; "
                f"use ids of the sv layer"
            )
        return pos


# --------------------------------------------------------------------------- pure cores


def apply_edits(edges: np.ndarray, edits: pa.Table | None) -> np.ndarray:
    """The edge set after replaying logged edits in order (last action on an edge wins).

    ``edits`` has rows ``edit_id, edge_a, edge_b, action`` (``add``/``remove``).
    """
    base = normalize_edges(edges)
    if edits is None or edits.num_rows == 0:
        return base
    order = np.argsort(edits.column("edit_id").to_numpy(), kind="stable")
    ea = edits.column("edge_a").to_numpy().astype(np.uint64)[order]
    eb = edits.column("edge_b").to_numpy().astype(np.uint64)[order]
    add = (np.asarray(edits.column("action").to_pylist(), dtype=object)[order] == "add")
    lo, hi = np.minimum(ea, eb), np.maximum(ea, eb)
    # last action per edge: walk in reverse and keep first occurrence
    rev = np.arange(lo.size)[::-1]
    pairs = np.stack([lo[rev], hi[rev]], 1)
    _, first = np.unique(pairs, axis=0, return_index=True)
    last = rev[first]
    final_add = np.stack([lo[last], hi[last]], 1)[add[last]]
    final_rm = np.stack([lo[last], hi[last]], 1)[~add[last]]
    allp = normalize_edges(np.concatenate([base, final_add]))
    if final_rm.size == 0:
        return allp
    v = lambda e: np.ascontiguousarray(e).view([("a", np.uint64), ("b", np.uint64)]).ravel()  # noqa: E731
    keep = ~np.isin(v(allp), v(normalize_edges(final_rm)))
    return allp[keep]


def class_edges(edges: np.ndarray, ids: np.ndarray, astro: np.ndarray) -> np.ndarray:
    """Edges whose two ends have the same class (``astro`` is a bool per sorted ``ids``)."""
    if edges.size == 0:
        return edges.reshape(0, 2)
    pa_, pb = np.searchsorted(ids, edges[:, 0]), np.searchsorted(ids, edges[:, 1])
    return edges[astro[pa_] == astro[pb]]


def cell_rows(sv: SvData, sv_ids: np.ndarray, cell_of: np.ndarray, astro_sv: np.ndarray) -> pa.Table:
    """The ``cells`` table rows for the cells that ``sv_ids`` (sorted) form.

    ``cell_of`` is the cell id per sv, ``astro_sv`` whether each sv is an astrocyte sv.
    """
    pos = sv.index(sv_ids)
    order = np.lexsort((sv_ids, cell_of))
    c = cell_of[order]
    p = pos[order]
    if c.size == 0:
        return empty_cells()
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    size = sv.size_vx[p]
    n_sv = np.diff(np.r_[starts, c.size])
    size_vx = np.add.reduceat(size, starts)
    astro_vx = np.add.reduceat(np.where(astro_sv[order], size, 0), starts)
    bmin = np.minimum.reduceat(sv.bbox_min[p], starts, axis=0)
    bmax = np.maximum.reduceat(sv.bbox_max[p], starts, axis=0)
    # rep: the rep voxel of the largest member sv (ties: smallest sv id, the first in order)
    seg = np.repeat(np.arange(starts.size), n_sv)
    best = np.lexsort((np.arange(c.size), -size, seg))
    first_of_seg = best[np.r_[0, np.cumsum(n_sv)[:-1]]]
    rep = sv.rep[p][first_of_seg]
    kind = np.where(2 * astro_vx > size_vx, "astrocyte", "neuron")
    cols = {
        "cell_id": c[starts].astype(np.uint64),
        "kind": kind.tolist(),
        "n_sv": n_sv.astype(np.int64),
        "size_vx": size_vx.astype(np.int64),
    }
    for i, a in enumerate("xyz"):
        cols[f"bbox_min_{a}_vx"] = bmin[:, i]
    for i, a in enumerate("xyz"):
        cols[f"bbox_max_{a}_vx"] = bmax[:, i]
    for i, a in enumerate("xyz"):
        cols[f"rep_{a}_vx"] = rep[:, i]
    return pa.table(cols)


def empty_cells() -> pa.Table:
    return pa.table(
        {
            n: pa.array([], pa.uint64() if n == "cell_id" else pa.string() if n == "kind" else pa.int64())
            for n in CELL_COLUMNS
        }
    )


def assign_organelles(
    sv_to_cell: pa.Table,
    overlap: pa.Table | None,
    organelle_sizes: dict[str, tuple[np.ndarray, np.ndarray]],
    params: dict[str, tuple[float, float, int]],
) -> pa.Table:
    """Organelles per cell from per-(organelle, sv) overlap ratios (organelle voxels / organelle size).

    ``organelle_sizes[layer] = (ids sorted, size_vx)``; ``params[layer] = (ratio_min, ratio_max,
    assign_min_size_vx)``. Keeps ``ratio > ratio_min``, ``ratio <= ratio_max`` and size > min.
    """
    empty = pa.table(
        {"cell_id": pa.array([], pa.uint64()), "organelle_layer": pa.array([], pa.string()),
         "organelle_id": pa.array([], pa.uint64()), "ratio": pa.array([], pa.float64())}
    )
    if overlap is None or overlap.num_rows == 0 or sv_to_cell.num_rows == 0:
        return empty
    svs = sv_to_cell.column("sv_id").to_numpy()
    cells = sv_to_cell.column("cell_id").to_numpy()
    out = []
    for layer, (rmin, rmax, min_size) in sorted(params.items()):
        rows = overlap.filter(pc.equal(overlap.column("organelle_layer"), layer))
        if rows.num_rows == 0:
            continue
        sv = rows.column("sv_id").to_numpy().astype(np.uint64)
        pos = np.minimum(np.searchsorted(svs, sv), svs.size - 1)
        inside = svs[pos] == sv
        oid = rows.column("organelle_id").to_numpy().astype(np.uint64)[inside]
        ratio = rows.column("ratio").to_numpy().astype(np.float64)[inside]
        cell = cells[pos[inside]]
        if oid.size == 0:
            continue
        t = pa.table({"cell_id": cell, "organelle_id": oid, "ratio": ratio})
        t = t.group_by(["cell_id", "organelle_id"], use_threads=False).aggregate([("ratio", "sum")])
        cid = t.column("cell_id").to_numpy().astype(np.uint64)
        o = t.column("organelle_id").to_numpy().astype(np.uint64)
        r = t.column("ratio_sum").to_numpy()
        keep = (r > rmin) & (r <= rmax + 1e-9)
        if layer in organelle_sizes:
            ids, size = organelle_sizes[layer]
            p = np.minimum(np.searchsorted(ids, o), max(ids.size - 1, 0))
            known = ids[p] == o if ids.size else np.zeros(o.size, bool)
            keep &= known & (np.where(known, size[p], 0) > min_size)
        out.append(pa.table({"cell_id": cid[keep], "organelle_id": o[keep], "ratio": r[keep],
                             "organelle_layer": pa.array([layer] * int(keep.sum()), pa.string())},
                            schema=empty.schema))
    if not out:
        return empty
    res = pa.concat_tables(out)
    return res.sort_by([("cell_id", "ascending"), ("organelle_layer", "ascending"), ("organelle_id", "ascending")])


# --------------------------------------------------------------------------- meshes


# --------------------------------------------------------------------------- step


@dataclass
class CellInputs:
    sv: SvData
    nodes: np.ndarray  # sorted sv ids taking part (kept + edited)
    astro: np.ndarray  # bool per sv.ids: astrocyte sv
    edges: np.ndarray  # the cell graph (normalized)


def load_inputs(project: Project) -> CellInputs:
    """The supervoxels, their class and the cell graph (pruned, same-class, edits applied)."""
    for name, step in (("sv", "init"), ("sv_components", "rag"), ("rag_pruned", "rag")):
        if not project.table_path(name).exists():
            raise CellsError(
                f"{project.table_path(name)} is missing; run `syngraph run {step}` first"
            )
    sv = SvData.from_table(project.objects("sv"))
    comps = project.objects("sv_components")
    kept = comps.column("sv_id").to_numpy()[comps.column("kept").to_numpy(zero_copy_only=False)]
    astro = np.zeros(sv.ids.size, bool)
    if project.table_path("sv_class").exists():
        cls = project.objects("sv_class")
        pos = sv.index(cls.column("sv_id").to_numpy().astype(np.uint64), "sv_class ids")
        astro[pos] = np.asarray(cls.column("kind").to_pylist(), dtype=object) == "astrocyte"
    base = class_edges(normalize_edges(edge_array(project.objects("rag_pruned"))), sv.ids, astro)
    edits = project.objects("edits") if project.table_path("edits").exists() else None
    edges = apply_edits(base, edits)
    nodes = np.asarray(kept, np.uint64)
    if edits is not None and edits.num_rows:
        extra = np.concatenate(
            [edits.column(c).to_numpy().astype(np.uint64) for c in ("sv_a", "sv_b")]
        )
        nodes = np.union1d(nodes, extra[extra != 0])
    nodes = np.union1d(nodes, edges.ravel())
    return CellInputs(sv=sv, nodes=nodes, astro=astro, edges=edges)


def organelle_inputs(project: Project, config: ProjectConfig) -> tuple[pa.Table | None, dict, dict]:
    overlap = project.objects("overlap") if project.table_path("overlap").exists() else None
    sizes, params = {}, {}
    for layer, p in config.organelles.items():
        params[layer] = (p.ratio_min, p.ratio_max, p.assign_min_size_vx)
        if project.table_path(layer).exists():
            t = project.objects(layer).sort_by("id")
            sizes[layer] = (t.column("id").to_numpy().astype(np.uint64), t.column("size_vx").to_numpy())
    return overlap, sizes, params


def build_cells(inputs: CellInputs, nodes: np.ndarray, edges: np.ndarray) -> tuple[pa.Table, pa.Table]:
    """``(cells, sv_to_cell)`` for the components of ``edges`` over ``nodes`` (sorted)."""
    ids, cell_of = connected_components(edges, nodes)
    astro_sv = inputs.astro[inputs.sv.index(ids)]
    cells = cell_rows(inputs.sv, ids, cell_of, astro_sv)
    s2c = pa.table({"sv_id": ids, "cell_id": cell_of})
    return cells, s2c


def write_cell_tables(
    project: Project, edges: np.ndarray, cells: pa.Table, s2c: pa.Table, organelles: pa.Table
) -> None:
    write_table_atomic(pa.table({"sv_a": edges[:, 0], "sv_b": edges[:, 1]}), project.table_path("cell_graph"))
    write_table_atomic(s2c, project.table_path("sv_to_cell"))
    write_table_atomic(cells, project.table_path("cells"))
    write_table_atomic(organelles, project.table_path("cell_organelles"))


def run_cells(
    workdir: str | Path,
    *,
    config: ProjectConfig | None = None,
    compute: Compute | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> CellsReport:
    """Build every cell from scratch (replaying ``tables/edits.parquet`` if present)."""
    workdir = Path(workdir)
    cfg = config or load_config(workdir)
    compute = compute or Compute.from_config(cfg.compute)
    project = Project(workdir)
    inputs = load_inputs(project)
    cells, s2c = build_cells(inputs, inputs.nodes, inputs.edges)
    overlap, sizes, params = organelle_inputs(project, cfg)
    organelles = assign_organelles(s2c, overlap, sizes, params)
    write_cell_tables(project, inputs.edges, cells, s2c, organelles)
    if cfg.cells.mesh:
        mesh_dir = workdir / "meshes" / "cells"
        if mesh_dir.exists():
            import shutil

            shutil.rmtree(mesh_dir)
        mesh_cells(workdir, cells.column("cell_id").to_numpy(), config=cfg, compute=compute, progress=progress,
                   overwrite_occupancy=overwrite)
    kinds = np.asarray(cells.column("kind").to_pylist(), dtype=object)
    n_neurons, n_astro = int((kinds == "neuron").sum()), int((kinds == "astrocyte").sum())
    left_out = int(inputs.sv.ids.size) - s2c.num_rows
    notes = [] if cells.num_rows else [
        f"cells: no cell was built: all {left_out} supervoxels were pruned by the rag step "
        f"(cells.min_cc_size_nm = {cfg.cells.min_cc_size_nm:g} nm); lower it in syngraph.toml"]
    if notes:
        warnings.warn(notes[0], UserWarning, stacklevel=2)
    return CellsReport(
        n_cells=cells.num_rows,
        n_neurons=n_neurons,
        n_astrocytes=n_astro,
        n_sv=s2c.num_rows,
        n_edges=int(inputs.edges.shape[0]),
        n_sv_not_in_cells=left_out,
        warnings=notes,
        summary=(f"kept {cells.num_rows} cells ({n_neurons} neuron, {n_astro} astrocyte) of {s2c.num_rows} "
                 f"supervoxels; {left_out} supervoxels removed by pruning are in no cell"),
    )
