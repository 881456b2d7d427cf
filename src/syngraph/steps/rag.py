"""Step ``rag``: the supervoxel graph (input edge list or agglomeration), the true contact graph of
the ``sv`` layer, and pruning of small components (reference: ``run_create_rag``, syconn.md §2.3).

Reads ``tables/sv.parquet`` (written by ``init``) and the ``sv`` layer. Writes::

    tables/sv_contacts.parquet    sv_a < sv_b, contact_faces, contact_area_um2:
                                  every pair of 6-connected touching supervoxels
    tables/rag.parquet            the validated input graph: sv_a < sv_b, contact_faces (0 = never touch)
    tables/sv_components.parquet  sv_id, component_id (smallest sv id), component_diag_nm, kept
    tables/rag_pruned.parquet     sv_a, sv_b: the edges among kept supervoxels

Contacts are counted blockwise: each block reads its core plus one voxel on its upper x/y/z faces
and counts the faces between a core voxel and its +x/+y/+z neighbour, so every face of the volume
is counted by exactly one block. Pruning drops components whose union bounding box has an L2
diagonal ``<= cells.min_cc_size_nm`` (``(bbox_max - bbox_min) * voxel_size_nm``, max exclusive).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from syngraph.bbox import BBox
from syngraph.config import ProjectConfig, load_config
from syngraph.engine import Block, Compute, block_grid, run_tasks, write_table_atomic
from syngraph.errors import InputError
from syngraph.graph import connected_components, group_diagonal_nm
from syngraph.io.graph_input import GraphInputError, GraphInputWarning, check_known, read_graph
from syngraph.io.volume import open_layer
from syngraph.project import Project

CONTACT_COLUMNS = ("sv_a", "sv_b", "contact_faces", "contact_area_um2")


class RagError(InputError):
    """The supervoxel graph cannot be built as configured."""


@dataclass(frozen=True)
class RagReport:
    n_sv: int
    n_contacts: int
    n_edges: int
    n_edges_not_touching: int
    n_components: int
    n_components_kept: int
    n_sv_kept: int
    n_vx_kept: int = 0
    n_vx_removed: int = 0
    warnings: list[str] = field(default_factory=list)
    summary: str = ""


class PruningWarning(UserWarning):
    """Pruning (``cells.min_cc_size_nm``) removed most of the volume."""


def pruning_warning(diag_nm: np.ndarray, comp: np.ndarray, kept: np.ndarray, size_vx: np.ndarray,
                    min_cc_size_nm: float) -> str | None:
    """One line when pruning removed every component or more than half of the voxels, else None.

    Arrays are per supervoxel: component id, component diagonal (nm), kept, voxels.

    >>> pruning_warning(np.array([4330.0]), np.array([1]), np.array([False]), np.array([8]), 5000.0)[:62]
    'rag: pruning removed 1 of 1 components (8 of 8 voxels, 100 %):'
    """
    total = int(size_vx.sum())
    removed = int(size_vx[~kept].sum())
    if total == 0 or (kept.any() and 2 * removed <= total):
        return None
    n_comp = int(np.unique(comp).size)
    n_gone = n_comp - int(np.unique(comp[kept]).size)
    largest = float(diag_nm.max()) if diag_nm.size else 0.0
    return (f"rag: pruning removed {n_gone} of {n_comp} components ({removed} of {total} voxels, "
            f"{100 * removed / total:.0f} %): components whose bounding-box diagonal is <= "
            f"cells.min_cc_size_nm = {min_cc_size_nm:g} nm are dropped (largest here {largest:.0f} nm); "
            f"lower cells.min_cc_size_nm in syngraph.toml (0 keeps everything)")


# --------------------------------------------------------------------------- pure cores


def _pairs_from_dict(d: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(d)
    keys = np.fromiter((k for pair in d for k in pair), np.uint64, count=2 * n).reshape(n, 2)
    vals = np.fromiter(d.values(), np.float64, count=n)
    return keys[:, 0], keys[:, 1], vals


def face_contacts(
    labels: np.ndarray,
    core_shape: tuple[int, int, int] | None = None,
    voxel_size_nm: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> pa.Table:
    """Touching label pairs with their face count and contact area (6-connectivity, 0 ignored).

    ``labels`` covers a block's core (its first ``core_shape`` voxels, default: all) plus at
    most one voxel beyond it on the upper x, y, z faces. Counted are the faces between two core
    voxels (``cc3d.contacts``) and between a core voxel and its upper neighbour in the halo, so
    blocks that tile a volume count every face exactly once. Returns ``sv_a < sv_b,
    contact_faces, contact_area_um2`` sorted by ``(sv_a, sv_b)``; a face normal to x has area
    ``vy * vz`` nm2 (``vy * vz / 1e6`` um2) and so on.

    >>> face_contacts(np.array([[[1, 2]], [[1, 3]]], np.uint64), voxel_size_nm=(2, 1, 1)).to_pydict()
    {'sv_a': [1, 1, 2], 'sv_b': [2, 3, 3], 'contact_faces': [1, 1, 1], 'contact_area_um2': [2e-06, 2e-06, 1e-06]}
    """
    import cc3d

    core = tuple(labels.shape) if core_shape is None else tuple(int(c) for c in core_shape)
    vx, vy, vz = (float(v) for v in voxel_size_nm)
    inner = labels[: core[0], : core[1], : core[2]]
    a_parts, b_parts, f_parts, s_parts = [], [], [], []
    if inner.size:
        count = cc3d.contacts(inner, connectivity=6, surface_area=False)
        area = cc3d.contacts(inner, connectivity=6, surface_area=True, anisotropy=(vx, vy, vz))
        ca, cb, cf = _pairs_from_dict(count)
        aa, ab, av = _pairs_from_dict(area)
        if not (np.array_equal(ca, aa) and np.array_equal(cb, ab)):
            order_c, order_a = np.lexsort((cb, ca)), np.lexsort((ab, aa))
            ca, cb, cf = ca[order_c], cb[order_c], cf[order_c]
            av = av[order_a]
        a_parts += [ca]
        b_parts += [cb]
        f_parts += [cf.astype(np.int64)]
        s_parts += [av]
    face_area = (vy * vz, vx * vz, vx * vy)
    for axis in range(3):
        if labels.shape[axis] <= core[axis] or core[axis] == 0:
            continue
        sl_a = [slice(0, core[0]), slice(0, core[1]), slice(0, core[2])]
        sl_b = list(sl_a)
        sl_a[axis] = core[axis] - 1
        sl_b[axis] = core[axis]
        pa_, pb_ = labels[tuple(sl_a)], labels[tuple(sl_b)]
        m = (pa_ != pb_) & (pa_ != 0) & (pb_ != 0)
        if not m.any():
            continue
        u, v = pa_[m].astype(np.uint64), pb_[m].astype(np.uint64)
        pairs = np.stack([np.minimum(u, v), np.maximum(u, v)], axis=1)
        upairs, counts = np.unique(pairs, axis=0, return_counts=True)
        a_parts.append(upairs[:, 0])
        b_parts.append(upairs[:, 1])
        f_parts.append(counts.astype(np.int64))
        s_parts.append(counts * face_area[axis])
    if not a_parts:
        return _empty_contacts()
    a = np.concatenate(a_parts).astype(np.uint64)
    b = np.concatenate(b_parts).astype(np.uint64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    table = pa.table(
        {"sv_a": lo, "sv_b": hi, "contact_faces": np.concatenate(f_parts),
         "contact_area_um2": np.concatenate(s_parts).astype(np.float64) / 1e6}
    )
    return _sum_pairs(table)


def _empty_contacts() -> pa.Table:
    return pa.table(
        {"sv_a": pa.array([], pa.uint64()), "sv_b": pa.array([], pa.uint64()),
         "contact_faces": pa.array([], pa.int64()), "contact_area_um2": pa.array([], pa.float64())}
    )


def _sum_pairs(table: pa.Table) -> pa.Table:
    if table.num_rows == 0:
        return _empty_contacts()
    summed = table.group_by(["sv_a", "sv_b"], use_threads=False).aggregate(  # threads: float sums in any order
        [("contact_faces", "sum"), ("contact_area_um2", "sum")]
    )
    summed = pa.table(
        {
            "sv_a": summed.column("sv_a").cast(pa.uint64()),
            "sv_b": summed.column("sv_b").cast(pa.uint64()),
            "contact_faces": summed.column("contact_faces_sum").cast(pa.int64()),
            "contact_area_um2": summed.column("contact_area_um2_sum").cast(pa.float64()),
        }
    )
    return summed.sort_by([("sv_a", "ascending"), ("sv_b", "ascending")])


def reduce_contacts(parts: pa.Table) -> pa.Table:
    """Sum per-block contact rows per pair (``sv_a < sv_b``, sorted)."""
    return _sum_pairs(parts)


def upper_halo_blocks(volume: BBox, block_size: tuple[int, int, int]) -> list[Block]:
    """Blocks whose read box is the core plus one voxel on the upper faces (clipped)."""
    out = []
    for b in block_grid(volume, block_size, 0):
        stop = tuple(min(s + 1, e) for s, e in zip(b.core.stop, volume.stop, strict=True))
        out.append(Block(b.id, b.index, b.core, BBox(b.core.start, stop)))  # type: ignore[arg-type]
    return out


def contacts_block(block: Block, workdir: str, layer: str) -> pa.Table:
    """Task: the face contacts owned by one block."""
    lay = open_layer(workdir, layer)
    labels = lay.read(block.read)
    return face_contacts(labels, block.core.shape, lay.info.voxel_size_nm)


# --------------------------------------------------------------------------- I/O edges


def _sv_table(project: Project) -> pa.Table:
    try:
        return project.objects("sv")
    except FileNotFoundError as exc:
        raise RagError(
            f"{project.table_path('sv')} is missing: the rag step needs the supervoxel table; "
            f"run `syngraph run init` first"
        ) from exc


def sv_arrays(sv: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, size_vx, bbox_min, bbox_max)`` of the sv table sorted by id."""
    sv = sv.sort_by("id")
    ids = sv.column("id").to_numpy().astype(np.uint64)
    bmin = np.stack([sv.column(f"bbox_min_{a}_vx").to_numpy() for a in "xyz"], axis=1).astype(np.int64)
    bmax = np.stack([sv.column(f"bbox_max_{a}_vx").to_numpy() for a in "xyz"], axis=1).astype(np.int64)
    return ids, sv.column("size_vx").to_numpy().astype(np.int64), bmin, bmax


def compute_contacts(
    workdir: str | Path,
    *,
    config: ProjectConfig,
    compute: Compute | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> pa.Table:
    """Run the blockwise contact count over the ``sv`` layer; returns the reduced table."""
    from syngraph.engine import read_task_tables

    project = Project(workdir)
    layer = project.layer("sv")
    bs = tuple(config.compute.block_size_vx)
    blocks = upper_halo_blocks(layer.bbox, bs)  # type: ignore[arg-type]
    step_dir = project.step_dir("rag")
    run_tasks(
        functools.partial(contacts_block, workdir=str(workdir), layer="sv"),
        blocks,
        step_dir,
        params={"layer": "sv", "block_size_vx": list(bs), "shape": list(layer.shape)},
        compute=compute,
        desc="rag contacts",
        progress=progress,
        overwrite=overwrite,
    )
    parts = read_task_tables(step_dir)
    if parts is None:
        return _empty_contacts()
    return reduce_contacts(parts)


def _pair_lookup(table_a: np.ndarray, table_b: np.ndarray, a: np.ndarray, b: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values of (a, b) pairs in a sorted (table_a, table_b) table; 0 where absent."""
    if table_a.size == 0 or a.size == 0:
        return np.zeros(a.size, values.dtype)
    ka = np.stack([table_a, table_b], axis=1)
    order = np.lexsort((table_b, table_a))
    ka = ka[order]
    vals = values[order]
    view = np.ascontiguousarray(ka).view([("a", np.uint64), ("b", np.uint64)]).ravel()
    q = np.ascontiguousarray(np.stack([a, b], axis=1)).view([("a", np.uint64), ("b", np.uint64)]).ravel()
    pos = np.searchsorted(view, q)
    pos = np.minimum(pos, view.size - 1)
    hit = view[pos] == q
    return np.where(hit, vals[pos], 0)


def prune_components(
    ids: np.ndarray,
    edges: np.ndarray,
    bbox_min: np.ndarray,
    bbox_max: np.ndarray,
    voxel_size_nm: tuple[float, float, float],
    min_cc_size_nm: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Components of the graph over ``ids`` (sorted) and which survive pruning.

    Returns ``(component_id, diag_nm, kept)`` aligned with ``ids``; a component is kept when its
    union bounding-box diagonal exceeds ``min_cc_size_nm`` (or always when it is 0).
    """
    cids, comp = connected_components(edges, ids)
    if not np.array_equal(cids, ids):
        raise RagError("internal: graph nodes differ from the supervoxel table")
    diag = group_diagonal_nm(comp, bbox_min, bbox_max, voxel_size_nm)
    kept = diag > min_cc_size_nm if min_cc_size_nm > 0 else np.ones(ids.size, bool)
    return comp, diag, kept


def run_rag(
    workdir: str | Path,
    *,
    config: ProjectConfig | None = None,
    compute: Compute | None = None,
    overwrite: bool = False,
    drop_unknown: bool = False,
    progress: bool | None = None,
    rag: str | Path | None = None,
) -> RagReport:
    """Build the contact graph, read and validate the input graph, prune; write the tables above.

    ``rag`` overrides ``config.rag`` (a path, relative paths are relative to ``workdir``).
    """
    workdir = Path(workdir)
    cfg = config or load_config(workdir)
    compute = compute or Compute.from_config(cfg.compute)
    project = Project(workdir)
    ids, size_vx, bmin, bmax = sv_arrays(_sv_table(project))
    vs = tuple(project.layer("sv").info.voxel_size_nm)

    contacts = compute_contacts(workdir, config=cfg, compute=compute, overwrite=overwrite, progress=progress)
    write_table_atomic(contacts, project.table_path("sv_contacts"), {"voxel_size_nm": list(vs)})

    source = rag if rag is not None else cfg.rag
    if source:
        path = Path(source)
        if not path.is_absolute():
            path = workdir / path
        try:
            graph = read_graph(path)
        except GraphInputError as exc:
            where = "run_rag(rag=...)" if rag is not None else f'rag = "{source}" in syngraph.toml'
            raise GraphInputError(f"{where}: {exc}") from exc
        edges = check_known(graph, ids, drop_unknown=drop_unknown)
    else:
        edges = np.zeros((0, 2), np.uint64)
    faces = _pair_lookup(
        contacts.column("sv_a").to_numpy(), contacts.column("sv_b").to_numpy(),
        edges[:, 0], edges[:, 1], contacts.column("contact_faces").to_numpy(),
    )
    n_not_touching = int((faces == 0).sum())
    if n_not_touching:
        bad = np.flatnonzero(faces == 0)
        ex = ", ".join(f"({int(edges[i, 0])}, {int(edges[i, 1])})" for i in bad[:5])
        warnings.warn(
            f"{source}: {n_not_touching} of {edges.shape[0]} edges join supervoxels that never touch "
            f"in the sv layer (e.g. {ex}); they are kept (rag.parquet: contact_faces == 0)",
            GraphInputWarning,
            stacklevel=2,
        )
    write_table_atomic(
        pa.table({"sv_a": edges[:, 0], "sv_b": edges[:, 1], "contact_faces": faces.astype(np.int64)}),
        project.table_path("rag"),
        {"source": str(source or "")},
    )

    comp, diag, kept = prune_components(ids, edges, bmin, bmax, vs, cfg.cells.min_cc_size_nm)  # type: ignore[arg-type]
    limit = cfg.cells.max_component_sv
    if limit:
        ucomp, counts = np.unique(comp, return_counts=True)
        big = np.flatnonzero(counts > limit)
        if big.size:
            raise RagError(
                f"{source}: {big.size} components have more than cells.max_component_sv={limit} "
                f"supervoxels (e.g. component {int(ucomp[big[0]])} with {int(counts[big[0]])}); "
                f"check the edge list for false merges or raise cells.max_component_sv"
            )
    write_table_atomic(
        pa.table({"sv_id": ids, "component_id": comp, "component_diag_nm": diag, "kept": kept}),
        project.table_path("sv_components"),
        {"min_cc_size_nm": cfg.cells.min_cc_size_nm},
    )
    pos = np.searchsorted(ids, edges)
    ekeep = kept[pos[:, 0]] & kept[pos[:, 1]] if edges.size else np.zeros(0, bool)
    write_table_atomic(
        pa.table({"sv_a": edges[ekeep, 0], "sv_b": edges[ekeep, 1]}),
        project.table_path("rag_pruned"),
    )
    n_comp = int(np.unique(comp).size)
    n_comp_kept = int(np.unique(comp[kept]).size)
    vx_kept = int(size_vx[kept].sum())
    vx_removed = int(size_vx[~kept].sum())
    note = pruning_warning(diag, comp, kept, size_vx, cfg.cells.min_cc_size_nm)
    if note:
        warnings.warn(note, PruningWarning, stacklevel=2)
    return RagReport(
        n_sv=int(ids.size),
        n_contacts=contacts.num_rows,
        n_edges=int(edges.shape[0]),
        n_edges_not_touching=n_not_touching,
        n_components=n_comp,
        n_components_kept=n_comp_kept,
        n_sv_kept=int(kept.sum()),
        n_vx_kept=vx_kept,
        n_vx_removed=vx_removed,
        warnings=[note] if note else [],
        summary=(f"kept {n_comp_kept} of {n_comp} components ({int(kept.sum())} of {ids.size} supervoxels, "
                 f"{vx_kept} voxels); removed {n_comp - n_comp_kept} ({vx_removed} voxels) "
                 f"with diagonal <= cells.min_cc_size_nm = {cfg.cells.min_cc_size_nm:g} nm"),
    )


__all__ = [
    "RagError",
    "RagReport",
    "compute_contacts",
    "contacts_block",
    "face_contacts",
    "prune_components",
    "reduce_contacts",
    "run_rag",
    "sv_arrays",
    "upper_halo_blocks",
]

