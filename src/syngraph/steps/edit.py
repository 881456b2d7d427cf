"""Step ``edit``: proofreading merges and splits that recompute only the cells they touch.

``edit_cells(wd, merges=[(a, b)], splits=[(a, b)])`` (supervoxel ids) or a table of edits
(``.csv``/``.parquet`` with columns ``op`` = merge/split, ``sv_a``, ``sv_b``, applied in row
order). A merge adds the edge ``(a, b)``; a split removes a minimum cut between ``a`` and ``b`` in
their cell's supervoxel graph, weighted by contact face count (``tables/sv_contacts.parquet``) so
the smallest contacts are cut. Every edge change is appended to ``tables/edits.parquet``::

    edit_id, op, sv_a, sv_b, edge_a, edge_b, action (add/remove)

so ``syngraph run cells`` (a full recompute) replays the log and gives the same tables and
meshes. Only the rows and meshes of the touched cells change; other cells' rows and mesh files
are left as they are (their bytes are not rewritten).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syngraph.config import ProjectConfig, absolute_path, load_config
from syngraph.engine import Compute, write_table_atomic
from syngraph.engine.done import refresh_done
from syngraph.errors import InputError
from syngraph.graph import connected_components, edge_array, min_cut, normalize_edges
from syngraph.project import Project
from syngraph.steps.cell_meshes import mesh_cells, remove_cell_mesh
from syngraph.steps.cells import (
    CellsError,
    SvData,
    assign_organelles,
    cell_rows,
    organelle_inputs,
)


class EditError(InputError):
    """An edit names unknown supervoxels or cannot be applied."""


@dataclass(frozen=True)
class EditReport:
    n_edits: int
    edges_added: int
    edges_removed: int
    cells_removed: list[int]
    cells_created: list[int]


def _read_edit_table(path: str | Path) -> list[tuple[str, int, int]]:
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(p)
    elif p.suffix.lower() in (".csv", ".tsv", ".txt"):
        import pyarrow.csv as pcsv

        t = pcsv.read_csv(p)
    else:
        raise EditError(f"{p}: unknown edit table format '{p.suffix}'; use .csv or .parquet")
    missing = {"op", "sv_a", "sv_b"} - set(t.column_names)
    if missing:
        raise EditError(
            f"{p}: missing columns {sorted(missing)}; an edit table has columns op (merge/split), sv_a, sv_b"
        )
    ops = [str(o).strip().lower() for o in t.column("op").to_pylist()]
    bad = [i for i, o in enumerate(ops) if o not in ("merge", "split")]
    if bad:
        raise EditError(f"{p}: rows {bad[:10]} have op {ops[bad[0]]!r}; use merge or split")
    a, b = t.column("sv_a").to_pylist(), t.column("sv_b").to_pylist()
    return [(o, int(x), int(y)) for o, x, y in zip(ops, a, b, strict=True)]


def _edge_set(e: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(normalize_edges(e)).view([("a", np.uint64), ("b", np.uint64)]).ravel()


def _contact_capacity(project: Project, edges: np.ndarray) -> np.ndarray:
    """Contact faces per edge + 1 (edges between non-touching svs get 1)."""
    cap = np.ones(edges.shape[0], np.int64)
    if edges.size and project.table_path("sv_contacts").exists():
        c = project.objects("sv_contacts")
        key = _edge_set(np.stack([c.column("sv_a").to_numpy(), c.column("sv_b").to_numpy()], 1))
        faces = c.column("contact_faces").to_numpy()
        q = np.ascontiguousarray(edges).view([("a", np.uint64), ("b", np.uint64)]).ravel()
        pos = np.minimum(np.searchsorted(key, q), max(key.size - 1, 0))
        hit = key[pos] == q
        cap[hit] += faces[pos[hit]]
    return np.minimum(cap, 2**31 - 1)


def edit_cells(
    workdir: str | Path,
    merges: Sequence[tuple[int, int]] = (),
    splits: Sequence[tuple[int, int]] = (),
    table: str | Path | None = None,
    *,
    config: ProjectConfig | None = None,
    compute: Compute | None = None,
    progress: bool | None = None,
) -> EditReport:
    """Apply merges, then splits, then the rows of ``table``; recompute only the touched cells."""
    workdir = absolute_path(workdir)  # mesh workers may run elsewhere
    cfg = config or load_config(workdir)
    compute = compute or Compute.from_config(cfg.compute)
    project = Project(workdir)
    for name in ("cells", "sv_to_cell", "cell_graph"):
        if not project.table_path(name).exists():
            raise EditError(f"{project.table_path(name)} is missing; run `syngraph run cells` before editing")
    ops: list[tuple[str, int, int]] = [("merge", int(a), int(b)) for a, b in merges]
    ops += [("split", int(a), int(b)) for a, b in splits]
    if table is not None:
        ops += _read_edit_table(table)
    if not ops:
        raise EditError("no edits given; pass merges=[(a, b)], splits=[(a, b)] or a table")

    sv = SvData.from_table(project.objects("sv"))
    for op, a, b in ops:
        try:
            sv.index(np.array([a, b], np.uint64), f"{op} {a} {b}: supervoxel ids")
        except CellsError as exc:
            raise EditError(str(exc)) from exc
        if a == b:
            raise EditError(f"{op} {a} {b}: the two supervoxels are the same; name two different ids")

    s2c = project.objects("sv_to_cell")
    s2c_sv = s2c.column("sv_id").to_numpy().astype(np.uint64)
    s2c_cell = s2c.column("cell_id").to_numpy().astype(np.uint64)
    graph = project.objects("cell_graph")
    all_edges = edge_array(graph)

    def cell_of(x: int) -> int | None:
        i = np.searchsorted(s2c_sv, np.uint64(x))
        return int(s2c_cell[i]) if i < s2c_sv.size and s2c_sv[i] == x else None

    touched_cells: set[int] = set()
    touched_svs = np.zeros(0, np.uint64)
    local = np.zeros((0, 2), np.uint64)  # current edges among touched svs

    def touch(x: int) -> None:
        nonlocal touched_svs, local
        c = cell_of(x)
        new = np.array([x], np.uint64) if c is None else s2c_sv[s2c_cell == c]
        if c is not None:
            if c in touched_cells:
                return
            touched_cells.add(c)
        elif np.isin(new, touched_svs).all():
            return
        touched_svs = np.union1d(touched_svs, new)
        inside = np.isin(all_edges[:, 0], new) | np.isin(all_edges[:, 1], new)
        local = normalize_edges(np.concatenate([local, all_edges[inside]]))

    log_prev = project.objects("edits") if project.table_path("edits").exists() else None
    next_id = int(pc.max(log_prev.column("edit_id")).as_py()) + 1 if log_prev is not None and log_prev.num_rows else 0
    rows: dict[str, list] = {k: [] for k in ("edit_id", "op", "sv_a", "sv_b", "edge_a", "edge_b", "action")}
    added = removed = 0
    for k, (op, a, b) in enumerate(ops):
        touch(a)
        touch(b)
        eid = next_id + k
        if op == "merge":
            change = np.array([[min(a, b), max(a, b)]], np.uint64)
            local = normalize_edges(np.concatenate([local, change]))
            action = "add"
            added += 1
        else:
            cap = _contact_capacity(project, local)
            change = min_cut(local, a, b, capacity=cap)
            if change.size == 0:
                warnings.warn(f"split {a} {b}: the two supervoxels are already in different cells; nothing to do", stacklevel=2)
                continue
            keep = ~np.isin(_edge_set(local), _edge_set(change))
            local = local[keep]
            action = "remove"
            removed += change.shape[0]
        for ea, eb in change.tolist():
            for key, val in zip(rows, (eid, op, a, b, ea, eb, action), strict=True):
                rows[key].append(val)

    # recompute the touched cells only
    ids, new_cell = connected_components(local, touched_svs)
    astro = np.zeros(sv.ids.size, bool)
    if project.table_path("sv_class").exists():
        cls = project.objects("sv_class")
        pos = sv.index(cls.column("sv_id").to_numpy().astype(np.uint64))
        astro[pos] = np.asarray(cls.column("kind").to_pylist(), dtype=object) == "astrocyte"
    new_cells = cell_rows(sv, ids, new_cell, astro[sv.index(ids)])
    new_s2c = pa.table({"sv_id": ids, "cell_id": new_cell})
    overlap, sizes, params = organelle_inputs(project, cfg)
    new_org = assign_organelles(new_s2c, overlap, sizes, params)

    old_ids = pa.array(sorted(touched_cells), pa.uint64())
    cells = project.objects("cells")
    cells = pa.concat_tables([cells.filter(pc.invert(pc.is_in(cells.column("cell_id"), old_ids))), new_cells.cast(cells.schema)])
    cells = cells.sort_by("cell_id")
    keep_sv = ~np.isin(s2c_sv, touched_svs)
    s2c_out = pa.table({"sv_id": np.concatenate([s2c_sv[keep_sv], ids]), "cell_id": np.concatenate([s2c_cell[keep_sv], new_cell])}).sort_by("sv_id")
    org = project.objects("cell_organelles") if project.table_path("cell_organelles").exists() else new_org
    org = pa.concat_tables([org.filter(pc.invert(pc.is_in(org.column("cell_id"), old_ids))), new_org.cast(org.schema)])
    org = org.sort_by([("cell_id", "ascending"), ("organelle_layer", "ascending"), ("organelle_id", "ascending")])
    outside = ~(np.isin(all_edges[:, 0], touched_svs) | np.isin(all_edges[:, 1], touched_svs))
    edges_out = normalize_edges(np.concatenate([all_edges[outside], local]))

    log_new = pa.table({
        "edit_id": pa.array(rows["edit_id"], pa.int64()), "op": pa.array(rows["op"], pa.string()),
        "sv_a": pa.array(rows["sv_a"], pa.uint64()), "sv_b": pa.array(rows["sv_b"], pa.uint64()),
        "edge_a": pa.array(rows["edge_a"], pa.uint64()), "edge_b": pa.array(rows["edge_b"], pa.uint64()),
        "action": pa.array(rows["action"], pa.string()),
    })
    log = log_new if log_prev is None else pa.concat_tables([log_prev, log_new])
    write_table_atomic(log, project.table_path("edits"))
    write_table_atomic(pa.table({"sv_a": edges_out[:, 0], "sv_b": edges_out[:, 1]}), project.table_path("cell_graph"))
    write_table_atomic(s2c_out, project.table_path("sv_to_cell"))
    write_table_atomic(cells, project.table_path("cells"))
    write_table_atomic(org, project.table_path("cell_organelles"))
    refresh_done(workdir, "cells", also=[project.table_path("edits")])  # later steps see the change

    created = [int(c) for c in new_cells.column("cell_id").to_numpy()]
    if cfg.cells.mesh:
        mesh_dir = workdir / "meshes" / "cells"
        for c in touched_cells:
            remove_cell_mesh(mesh_dir, c)
        mesh_cells(workdir, np.array(created, np.uint64), config=cfg, compute=compute,
                   progress=progress, step="edit_mesh", overwrite=True)
    return EditReport(
        n_edits=len(ops), edges_added=added, edges_removed=removed,
        cells_removed=sorted(touched_cells), cells_created=created,
    )


def parse_pairs(values: Iterable[Sequence[int]] | None) -> list[tuple[int, int]]:
    """Normalise CLI pairs (``--merge A B`` repeated) to a list of int tuples."""
    return [(int(a), int(b)) for a, b in (values or [])]
