"""Step ``compartments``: a compartment label and class probabilities on every skeleton node.

Top to bottom:

1. per batch of cells (engine task, :func:`compartments_task`): read each cell's skeleton
   (:func:`syngraph.skeleton_io.read_skeleton`) and, when the volume has mi / vc / sj maps, the
   cell's organelles (``tables/cell_organelles.parquet`` + ``tables/<layer>.parquet``);
   :func:`label_cell` computes the node features (:mod:`.features`), runs the two-stage model
   (:mod:`syngraph.models.compartments`), smooths (:mod:`.smooth`) and finds the spines with
   their head volume and neck length (:mod:`.spines`). Astrocytes keep ``astrocyte``.
2. write ``tables/compartments_nodes.parquet`` and ``tables/spines.parquet``
   (docs/compartments.md).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from syngraph import compartments as cp
from syngraph.config import CompartmentParams, load_config, project_path
from syngraph.engine import Compute, read_task_tables, run_tasks, write_table_atomic
from syngraph.errors import StepOrderError
from syngraph.io.ids import ids_in
from syngraph.io.volume import list_layers, open_layer
from syngraph.models.compartments import CLASSES, TwoStage, feature_names, load_model, model_columns
from syngraph.models.domain import DOMAIN_JSON, DomainReport
from syngraph.models.files import load_model_file
from syngraph.steps.compartments.features import (
    Tree,
    context_features,
    organelle_features,
    shape_features,
)
from syngraph.steps.compartments.smooth import smooth_labels
from syngraph.steps.compartments.spines import measure_spines, spine_components
from syngraph.steps.domain import write_domain_json

STEP = "compartments"
NODES_TABLE = "compartments_nodes"
SPINES_TABLE = "spines"
ORGANELLE_LAYERS = ("mi", "vc", "sj")
PROB_COLUMNS = tuple(f"p_{cp.name(c)}" for c in CLASSES)


@dataclass(frozen=True)
class CellBatch:
    id: int
    cell_ids: np.ndarray


def cell_features(tree: Tree, myelin: np.ndarray | None,
                  organelles: dict[str, tuple[np.ndarray, np.ndarray]] | None) -> np.ndarray:
    """First-stage features of one cell (organelle columns only when ``organelles`` is given)."""
    x = shape_features(tree, myelin)
    return x if organelles is None else np.c_[x, organelle_features(tree, organelles)]


def predict_cells(trees: list[Tree], xs: list[np.ndarray], model: TwoStage) -> list[np.ndarray]:
    """Per cell (n, len(CLASSES)) probabilities of the two-stage model (one model call per
    stage for all cells)."""
    if not trees:
        return []
    cut = np.cumsum([len(x) for x in xs])[:-1]
    x = np.concatenate(xs)
    p1 = np.split(model.predict_local(x), cut)
    ctx = np.concatenate([context_features(t, p) for t, p in zip(trees, p1, strict=True)])
    return np.split(model.refine(x, ctx), cut)


def label_cell(tree: Tree, prob: np.ndarray, p: CompartmentParams) -> tuple[np.ndarray, np.ndarray]:
    """(raw codes = argmax, except soma where the radius reaches ``soma_min_radius_nm``,
    smoothed codes) of one cell's nodes."""
    raw = np.asarray(CLASSES, np.uint8)[np.argmax(prob, axis=1)] if len(prob) else np.zeros(0, np.uint8)
    if p.soma_min_radius_nm > 0:
        raw = np.where(tree.radius_nm >= p.soma_min_radius_nm, cp.SOMA, raw).astype(np.uint8)
    smooth = smooth_labels(tree.nodes_nm, tree.edges, raw, window_nm=p.window_nm,
                           component=p.component_majority, axon_min_fraction=p.axon_min_fraction)
    return raw, smooth


# ---------------------------------------------------------------------------- inputs


def has_organelles(workdir: Path) -> bool:
    layers = set(list_layers(workdir))
    tables = workdir / "tables"
    return all(n in layers and (tables / f"{n}.parquet").exists() for n in ORGANELLE_LAYERS) and \
        (tables / "cell_organelles.parquet").exists()


def load_organelles(workdir: Path, cell_ids: np.ndarray, voxel_nm: np.ndarray
                    ) -> dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """cell -> layer -> (centres nm, volume um3) of the organelles assigned to (sj: touching) it."""
    tables = Path(workdir) / "tables"
    stamp = tuple((tables / f"{n}.parquet").stat().st_mtime_ns for n in ("cell_organelles", *ORGANELLE_LAYERS))
    every = _organelles_by_cell(str(tables), stamp, tuple(np.asarray(voxel_nm, np.float64).tolist()))
    return {int(c): every.get(int(c), {}) for c in cell_ids.tolist()}


@functools.lru_cache(maxsize=2)
def _organelles_by_cell(tables: str, stamp: tuple[int, ...], voxel_nm: tuple[float, ...]
                        ) -> dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Every cell's organelles, read once per process (``stamp``: the tables' mtimes)."""
    co = pq.read_table(Path(tables) / "cell_organelles.parquet").to_pandas()
    out: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    vox_um3 = float(np.prod(voxel_nm)) / 1e9
    for layer in ORGANELLE_LAYERS:
        t = pq.read_table(Path(tables) / f"{layer}.parquet",
                          columns=["id", "size_vx", "com_x_vx", "com_y_vx", "com_z_vx"]).to_pandas().set_index("id")
        sub = co[co["organelle_layer"] == layer]
        sub = sub[sub["organelle_id"].isin(t.index)]
        rows = t.loc[sub["organelle_id"].to_numpy()]
        xyz = rows[["com_x_vx", "com_y_vx", "com_z_vx"]].to_numpy(np.float64) * np.asarray(voxel_nm)
        vol = rows["size_vx"].to_numpy(np.float64) * vox_um3
        cells = sub["cell_id"].to_numpy().astype(np.uint64)
        if cells.size == 0:
            continue
        order = np.argsort(cells, kind="stable")
        u, start = np.unique(cells[order], return_index=True)
        for c, part in zip(u.tolist(), np.split(order, start[1:]), strict=True):
            out.setdefault(int(c), {})[layer] = (xyz[part], vol[part])
    return out


@functools.lru_cache(maxsize=4)
def _model(path: str | None) -> Any:
    return load_model_file(load_model, path, "compartments.model")


def _model_path(workdir: Path, value: str | None) -> str | None:
    """``compartments.model`` relative to the working directory (None: the shipped model)."""
    return str(project_path(workdir, value)) if value else None


def compartments_task(batch: CellBatch, workdir: str, params: dict[str, Any], organelles: bool,
                      astrocytes: np.ndarray) -> pa.Table:
    """Node rows of a batch of cells (engine task)."""
    from syngraph import skeleton_io

    wd = Path(workdir)
    p = CompartmentParams(**params)
    sv_layer = open_layer(wd, "sv")
    voxel = np.asarray(sv_layer.info.voxel_size_nm, np.float64)
    variant, model = _model(_model_path(wd, p.model)).variant(organelles)
    orgs = load_organelles(wd, batch.cell_ids, voxel) if organelles else {}
    svs = cell_supervoxels(wd, batch.cell_ids)
    astro = set(astrocytes.tolist())
    skels = [skeleton_io.read_skeleton(wd, int(c)) for c in batch.cell_ids.tolist()]
    trees = [Tree(s.nodes_nm.astype(np.float64), s.parent_id, s.radius_nm.astype(np.float64)) for s in skels]
    neuron = [k for k, s in enumerate(skels) if s.cell_id not in astro]
    xs = {k: model_columns(cell_features(trees[k], skels[k].attributes.get("myelin"),
                                         orgs.get(skels[k].cell_id, {}) if organelles else None), variant)
          for k in neuron}
    probs = predict_cells([trees[k] for k in neuron], [xs[k] for k in neuron], model)
    parts = []
    for k, (s, tree) in enumerate(zip(skels, trees, strict=True)):
        if k in xs:
            prob = probs[neuron.index(k)]
            raw, smooth = label_cell(tree, prob, p)
        else:
            prob = np.zeros((len(s), len(CLASSES)))
            raw = smooth = np.full(len(s), cp.ASTROCYTE, np.uint8)
        rows = nodes_rows(s.cell_id, s.node_id, s.nodes_nm, raw, smooth, prob, s.radius_nm)
        spines = measure_spines(tree, smooth, functools.partial(read_cell_mask, sv_layer, svs.get(s.cell_id)),
                                voxel)
        parts.append(add_features(add_spines(rows, tree, smooth, spines), xs.get(k), feature_names(variant)))
    return pa.concat_tables(parts) if parts else add_features(_empty_nodes(), None, feature_names(variant))


def add_features(rows: pa.Table, x: np.ndarray | None, names: tuple[str, ...]) -> pa.Table:
    """Node rows plus the first-stage features (``x_<name>``, NaN for astrocytes) for the domain
    check; the step drops them before writing."""
    x = np.full((rows.num_rows, len(names)), np.nan) if x is None else x
    for j, n in enumerate(names):
        rows = rows.append_column(f"x_{n}", pa.array(np.asarray(x[:, j], np.float64)))  # as measured
    return rows


def cell_supervoxels(workdir: Path, cell_ids: np.ndarray) -> dict[int, np.ndarray]:
    t = pq.read_table(workdir / "tables" / "sv_to_cell.parquet", filters=ids_in("cell_id", cell_ids)).to_pandas()
    return {int(c): np.sort(g["sv_id"].to_numpy().astype(np.uint64)) for c, g in t.groupby("cell_id")}


def read_cell_mask(layer: Any, svs: np.ndarray | None, lo: np.ndarray, hi: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(the cell's voxels in the box [lo, hi) clipped to the volume, the clipped lo)."""
    from syngraph.bbox import BBox

    lo = np.clip(lo, 0, np.asarray(layer.shape))
    hi = np.clip(hi, lo, np.asarray(layer.shape))
    if svs is None or np.any(hi <= lo):
        return np.zeros(tuple((hi - lo).tolist()), bool), lo
    data = layer.read(BBox(tuple(lo.tolist()), tuple(hi.tolist())))
    return np.isin(data, svs), lo


def add_spines(rows: pa.Table, tree: Tree, codes: np.ndarray, spines: list[dict[str, float]]) -> pa.Table:
    """Node rows plus spine_id (0 = none), and the spine's neck_length_nm and head_volume_um3
    on the spine's representative head node (NaN elsewhere)."""
    sid = spine_components(tree, codes)
    neck = np.full(len(codes), np.nan, np.float32)
    vol = np.full(len(codes), np.nan, np.float32)
    for sp in spines:
        i = int(np.argmin(np.linalg.norm(tree.nodes_nm - [sp["x_nm"], sp["y_nm"], sp["z_nm"]], axis=1)))
        neck[i], vol[i] = sp["neck_length_nm"], sp["head_volume_um3"]
    return rows.append_column("spine_id", pa.array(sid.astype(np.int64))) \
        .append_column("spine_rep", pa.array(np.isfinite(neck))) \
        .append_column("neck_length_nm", pa.array(neck)).append_column("head_volume_um3", pa.array(vol))


def spines_table(nodes: pa.Table) -> pa.Table:
    """``tables/spines.parquet``: one row per spine (its representative node)."""
    t = nodes.filter(pc.field("spine_rep"))
    return pa.table({
        "cell_id": t.column("cell_id"), "spine_id": t.column("spine_id"), "node_id": t.column("node_id"),
        "x_nm": t.column("x_nm"), "y_nm": t.column("y_nm"), "z_nm": t.column("z_nm"),
        "neck_length_nm": t.column("neck_length_nm"), "head_volume_um3": t.column("head_volume_um3"),
    })


def nodes_rows(cell_id: int, node_id: np.ndarray, nodes_nm: np.ndarray, raw: np.ndarray,
               smooth: np.ndarray, prob: np.ndarray, radius_nm: np.ndarray) -> pa.Table:
    names = np.array([cp.name(c) for c in range(len(cp.NAMES))], dtype=object)
    nodes_nm = np.asarray(nodes_nm, np.float32).reshape(-1, 3)
    prob = np.asarray(prob, np.float32).reshape(len(nodes_nm), len(CLASSES))
    cols: dict[str, Any] = {
        "cell_id": pa.array(np.full(len(nodes_nm), cell_id, np.uint64)),
        "node_id": pa.array(np.asarray(node_id, np.int64)),
        "x_nm": nodes_nm[:, 0], "y_nm": nodes_nm[:, 1], "z_nm": nodes_nm[:, 2],
        "radius_nm": np.asarray(radius_nm, np.float32),
        "label": pa.array(names[np.asarray(smooth, np.int64)].tolist(), pa.string()),
        "label_raw": pa.array(names[np.asarray(raw, np.int64)].tolist(), pa.string()),
    }
    for j, c in enumerate(PROB_COLUMNS):
        cols[c] = prob[:, j]
    return pa.table(cols)


def _empty_nodes() -> pa.Table:
    t = nodes_rows(0, *(np.zeros(0),) * 6)
    return add_spines(t, Tree(np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0)), np.zeros(0, np.uint8), [])


# ---------------------------------------------------------------------------- the step


def _check_inputs(workdir: Path) -> None:
    if not (workdir / "tables" / "skeletons.parquet").exists():
        raise StepOrderError(
            f"{workdir / 'tables' / 'skeletons.parquet'} does not exist: the compartments step labels "
            f"skeleton nodes; run `syngraph run skeletons` first"
        )


def run_compartments(
    workdir: str | Path,
    *,
    compute: Compute | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run the step; writes ``tables/compartments_nodes.parquet`` and ``tables/spines.parquet``."""
    from syngraph import skeleton_io
    from syngraph.steps.skeletons.run import astrocyte_ids

    workdir = Path(workdir)
    cfg = load_config(workdir)
    compute = compute or Compute.from_config(cfg.compute)
    p = cfg.compartments
    _check_inputs(workdir)
    organelles = has_organelles(workdir)
    variant, _ = _model(_model_path(workdir, p.model)).variant(organelles)
    ids = skeleton_io.cell_ids(workdir).astype(np.uint64)
    batches = [CellBatch(i, ids[a:a + p.cells_per_task])
               for i, a in enumerate(range(0, len(ids), p.cells_per_task))]
    astro = astrocyte_ids(workdir)
    fn = functools.partial(compartments_task, workdir=str(workdir), params=p.model_dump(mode="json"),
                           organelles=organelles, astrocytes=astro)
    step_dir = workdir / "steps" / STEP
    skel_path = workdir / "tables" / "skeletons.parquet"
    report = run_tasks(
        fn, batches, step_dir,
        params={"compartments": p.model_dump(mode="json"), "organelles": organelles,
                "skeletons": hashlib.sha1(skel_path.read_bytes()).hexdigest()},
        compute=compute, desc=STEP, progress=progress, overwrite=overwrite,
    )
    table = read_task_tables(step_dir)
    names = feature_names(variant)
    table = add_features(_empty_nodes(), None, names) if table is None else table
    feats = [f"x_{n}" for n in names]
    check = domain_check(workdir, p.model, variant, table.select(feats))
    table = table.drop_columns(feats)
    spines = spines_table(table)
    write_table_atomic(spines, workdir / "tables" / f"{SPINES_TABLE}.parquet", metadata={"syngraph:units": "nm"})
    meta = {"syngraph:units": "nm", "syngraph:model_variant": variant}
    if check is not None:
        meta |= {"syngraph:domain_distance": f"{check.distance:.4f}", "syngraph:in_domain": str(check.in_domain)}
    write_table_atomic(table.drop_columns(["spine_rep", "neck_length_nm", "head_volume_um3"]),
                       workdir / "tables" / f"{NODES_TABLE}.parquet", metadata=meta)
    labels = np.asarray(table.column("label").to_pylist(), dtype=object)
    lacking = [] if organelles else ["mi_um3_per_um", "vc_um3_per_um", "sj_per_um", "vc_near_um3"]
    warnings = []
    if check is not None and not check.in_domain:
        warnings.append(
            f"compartments: the cells lie outside the model's training data, labels are unreliable "
            f"(every node still has one): {check.summary()}; label a few hundred nodes of this volume "
            f"(x_nm, y_nm, z_nm, label) and run `syngraph train compartments --labels points.csv --wd {workdir}`, "
            f"then set [compartments] model (steps/{STEP}/{DOMAIN_JSON})")
    return {
        "cells": len(ids),
        "nodes": table.num_rows,
        "model_variant": variant,
        "features_lacking": lacking,
        "nodes_per_label": {str(k): int((labels == k).sum()) for k in np.unique(labels)},
        "spines": spines.num_rows,
        "domain_distance": None if check is None else check.distance,
        "domain_threshold": None if check is None else check.threshold,
        "in_domain": None if check is None else check.in_domain,
        "warnings": warnings,
        "summary": f"{table.num_rows} nodes of {len(ids)} cells labelled ({variant} model)"
                   + ("" if check is None else f"; {check.summary()}"),
        "task_peak_rss_mb": report.peak_rss_mb,
        "task_seconds": report.seconds,
    }


def domain_check(workdir: Path, model: str | None, variant: str, feats: pa.Table) -> DomainReport | None:
    """The neuron nodes' features against the model's training domain (None: the model file
    stores none); writes ``steps/compartments/domain.json``."""
    x = np.stack([c.to_numpy(zero_copy_only=False) for c in feats.columns], 1) if feats.num_columns else \
        np.zeros((feats.num_rows, 0))
    x = x[np.isfinite(x).all(axis=1)]  # astrocytes carry NaN
    domain = _model(_model_path(workdir, model)).domains.get(variant)
    report = domain.distance(x) if domain is not None and len(x) else None
    write_domain_json(workdir / "steps" / STEP, report, _model_path(workdir, model) or "shipped default",
                      variant=variant, held_back=False)  # labels every node even outside; flags it
    return report
