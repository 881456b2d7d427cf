"""The ``synapses`` step: contact sites, synapse fragments, cell-level synapses and contacts.

Reads the ``sv`` layer, ``tables/sv_to_cell`` (cells step), the sj map and, when configured, the
synapse type, vc and mi maps. Writes::

    tables/cs.parquet       one row per touching supervoxel pair: faces, area, contact voxels, bbox, rep
    tables/syn_ssv.parquet  one row per cell-level synapse candidate (all probabilities)
    tables/cs_ssv.parquet   one row per touching cell pair: contact area and synapse count
    steps/synapses/domain.json  the synapse model's domain check (docs/models.md)

Without an sj layer (labels-only data) it writes ``cs`` and ``cs_ssv`` with contact areas and
no synapse columns, and removes a stale ``syn_ssv``: the cell contact graph is what such data gives.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from syngraph.config import ProjectConfig, load_config
from syngraph.engine import Compute, block_grid, read_task_tables, run_tasks, write_table_atomic
from syngraph.errors import InputError, StepOrderError
from syngraph.io.volume import Layer, VolumeError, open_layer
from syngraph.steps.label_runs import first_of_runs
from syngraph.steps.synapses.blocks import contacts_task
from syngraph.steps.synapses.cluster import cluster_synapses, map_to_cells
from syngraph.steps.synapses.contacts import unique_pairs
from syngraph.steps.synapses.features import SynapseChunk, chunk_order, features_task

STEP = "synapses"
CHUNK_SYNAPSES = 64


def _layer_name(cfg: ProjectConfig, key: str) -> str | None:
    src = cfg.layers.get(key)
    return None if src is None else (src.path or key)


def _check_same_grid(sv: Layer, other: Layer, key: str) -> None:
    if other.info.shape_xyz != sv.info.shape_xyz or tuple(other.info.voxel_size_nm) != tuple(sv.info.voxel_size_nm):
        raise InputError(
            f"layer '{key}' ({other.path}) has shape {list(other.info.shape_xyz)} and voxel size "
            f"{list(other.info.voxel_size_nm)} nm, but sv has {list(sv.info.shape_xyz)} and "
            f"{list(sv.info.voxel_size_nm)} nm; re-import it on the sv grid"
        )


def _raw_threshold(layer: Layer, fraction: float) -> float:
    full = layer.info.value_range or (255.0 if layer.dtype == np.uint8 else 1.0)
    return float(fraction) * float(full)


def _open_optional(wd: Path, cfg: ProjectConfig, key: str, sv: Layer) -> Layer | None:
    name = _layer_name(cfg, key)
    if name is None:
        return None
    try:
        lay = open_layer(wd, name)
    except VolumeError as exc:
        raise InputError(f"layer '{key}' is named in the config but missing: {exc}") from exc
    _check_same_grid(sv, lay, key)
    return lay


def run_synapses(
    workdir: str | Path,
    *,
    config: ProjectConfig | None = None,
    compute: Compute | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    contacts_only: bool = False,
    model_path: str | Path | None = None,
    trust_model: bool = False,
) -> dict[str, Any]:
    """Run the synapse step; returns counts (see the module docstring for outputs).

    ``model_path``: the synapse classifier (default: the shipped model); ``"none"`` leaves
    ``syn_prob`` NaN (used to collect training candidates). ``trust_model``: use the classifier
    even outside its training domain (see :func:`_classify`).
    """
    wd = Path(workdir)
    cfg = config or load_config(wd)
    sp = cfg.synapses
    compute = compute or Compute.from_config(cfg.compute)
    sv = open_layer(wd, _layer_name(cfg, "sv") or "sv")
    s2c_path = wd / "tables" / "sv_to_cell.parquet"
    if not contacts_only and not s2c_path.exists():
        raise StepOrderError(
            f"{s2c_path} is missing: synapses need the cells; run `syngraph run cells` first "
            f"(or `--contacts-only` for contact sites alone)"
        )
    sj = None if contacts_only else _open_optional(wd, cfg, "sj", sv)
    syn_type = None if contacts_only else _open_optional(wd, cfg, "syn_type", sv)
    vc = None if contacts_only else _open_optional(wd, cfg, "vc", sv)
    mi = None if contacts_only else _open_optional(wd, cfg, "mi", sv)

    vs = tuple(float(v) for v in sv.info.voxel_size_nm)
    params: dict[str, Any] = {
        "voxel_size_nm": vs,
        "dilations": int(sp.cs_dilations),
        "gap_search_vx": tuple(int(f) // 2 for f in sp.cs_filter_size_vx),
        "sj_layer": sj.info.name if sj else None,
        "sj_threshold_raw": _raw_threshold(sj, cfg.organelles["sj"].threshold) if sj else None,
        "sj_range": (sj.info.value_range or 255.0) if sj else None,
        "type_layer": syn_type.info.name if syn_type else None,
        "sym_threshold_raw": _raw_threshold(syn_type, 0.5) if syn_type else None,
    }
    root = wd / "steps" / STEP
    if overwrite and root.exists():
        import shutil

        shutil.rmtree(root)
    # a contact voxel up to `dilations` outside the core can dilate into it, and its gap search
    # looks `gap_search_vx` further (and its background test one voxel)
    halo = [params["dilations"] + max(1, g) for g in params["gap_search_vx"]]
    blocks = block_grid(sv.bbox, cfg.compute.block_size_vx, halo=halo)
    bdir = root / "blocks"
    fn = functools.partial(contacts_task, workdir=str(wd), step_dir=str(bdir), params=params)
    run_tasks(fn, blocks, bdir, params=params, compute=compute, desc="synapses: contacts",
              progress=progress)

    cs = _reduce_contacts(read_task_tables(bdir))
    meta = {"voxel_size_nm": json.dumps(vs), "step": STEP}
    write_table_atomic(cs, wd / "tables" / "cs.parquet", meta)
    result: dict[str, Any] = {"n_contact_pairs": cs.num_rows}
    if contacts_only:
        return result

    s2c = pq.read_table(s2c_path).sort_by("sv_id")
    sv_ids = s2c["sv_id"].to_numpy()
    cell_ids = s2c["cell_id"].to_numpy()
    if sj is None:  # labels only: the cell contact graph, no synapses
        cs_ssv = _cell_contacts(cs, sv_ids, cell_ids, None)
        (wd / "tables" / "syn_ssv.parquet").unlink(missing_ok=True)
        write_table_atomic(cs_ssv, wd / "tables" / "cs_ssv.parquet", {**meta, "graph": "contacts"})
        result.update(n_cell_pairs_in_contact=cs_ssv.num_rows,
                      synapses="none: no sj layer (contact sites and cell contacts only)")
        return result
    vox = _concat(bdir / "syn_vox")
    faces = _concat(bdir / "syn_faces")
    syn, info = _synapses_from_voxels(vox, faces, sv_ids, cell_ids, vs, sp.cs_gap_nm, sp.min_size_vx,
                                      has_type=syn_type is not None)
    result.update(info)

    feat_params = {
        "voxel_size_nm": vs,
        "vc_layer": vc.info.name if vc else None,
        "vc_threshold_raw": _raw_threshold(vc, cfg.organelles["vc"].threshold) if vc else None,
        "vc_distance_nm": float(sp.vc_distance_nm),
        "mi_layer": mi.info.name if mi else None,
        "mi_threshold_raw": _raw_threshold(mi, cfg.organelles["mi"].threshold) if mi else None,
        "mi_distance_nm": float(sp.mi_distance_nm),
        "n_synapses": syn.num_rows,
    }
    centres = np.stack([syn[f"{a}_vx"].to_numpy() for a in "xyz"], axis=1)
    cells = np.stack([syn["cell_a"].to_numpy(), syn["cell_b"].to_numpy()], axis=1)
    order = chunk_order(centres, sv.info.chunks_xyz)  # neighbours in one task share chunks
    chunks = [
        SynapseChunk(k, order[s:s + CHUNK_SYNAPSES], centres[order[s:s + CHUNK_SYNAPSES]],
                     cells[order[s:s + CHUNK_SYNAPSES]])
        for k, s in enumerate(range(0, syn.num_rows, CHUNK_SYNAPSES))
    ]
    fdir = root / "features"
    run_tasks(functools.partial(features_task, workdir=str(wd), params=feat_params), chunks, fdir,
              params={**feat_params, "synapses_hash": _hash_table(syn), "tasks": "by storage chunk"}, compute=compute,
              desc="synapses: features", progress=progress)
    feats = read_task_tables(fdir)
    syn = _finish(syn, feats, sp.sym_threshold if syn_type else None, vc is not None)
    from syngraph.steps.compartments.synapses import annotate_synapses

    syn = annotate_synapses(wd, syn, vs)  # no-op before `syngraph run compartments`
    from syngraph.config import project_path

    if str(model_path) == "none":
        prob = np.full(syn.num_rows, np.nan, np.float32)
        (root / "domain.json").unlink(missing_ok=True)  # no model, no measurement
    else:
        prob, checked = _classify(wd, syn, model_path or (project_path(wd, sp.model) if sp.model else None),
                                  trust_model)
        result.update(checked)
        meta = {**meta, "syn_prob_source": "sj_mean" if checked["held_back"] else "model"}
    syn = syn.append_column("syn_prob", pa.array(prob, pa.float32()))
    write_table_atomic(syn, wd / "tables" / "syn_ssv.parquet", meta)
    cs_ssv = _cell_contacts(cs, sv_ids, cell_ids, syn)
    write_table_atomic(cs_ssv, wd / "tables" / "cs_ssv.parquet", meta)
    result.update(n_synapses=syn.num_rows, n_cell_pairs_in_contact=cs_ssv.num_rows)
    return result


def _classify(wd: Path, syn: pa.Table, model_path: str | Path | None, trust_model: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """``syn_prob`` from the synapse model, with its domain check (``steps/synapses/domain.json``).

    Outside the model's training domain (and without ``trust_model``) the model is not used:
    ``syn_prob`` is the candidate's mean sj probability, the sj map's own evidence, and a
    :class:`DomainWarning` says how to train on this volume's labels."""
    from syngraph.models.domain import DOMAIN_JSON, DomainWarning, held_back
    from syngraph.models.synapse import DEFAULT_MODEL, feature_matrix, load_forest
    from syngraph.steps.domain import write_domain_json

    forest = load_forest(model_path)
    x = feature_matrix(syn)
    report = forest.domain.distance(x) if forest.domain is not None else None
    held = held_back(report, trust_model)
    write_domain_json(wd / "steps" / STEP, report, str(model_path or DEFAULT_MODEL), trust_model)
    if held:
        prob = syn["sj_mean"].to_numpy().astype(np.float32)
    else:
        prob = forest.predict_proba1(x).astype(np.float32) if syn.num_rows else np.zeros(0, np.float32)
    notes = []
    if held and report is not None:
        notes.append(
            f"synapses: the synapse model was not used, syn_prob is each candidate's mean sj probability: "
            f"{report.summary()}; label a few dozen points and run `syngraph train synapses --labels TABLE`, "
            f"then set synapses.model, or rerun with --trust-model to use it anyway ({DOMAIN_JSON} in steps/{STEP})")
        warnings.warn(notes[-1], DomainWarning, stacklevel=3)
    return prob, {"domain_distance": None if report is None else report.distance,
                  "domain_threshold": None if report is None else report.threshold,
                  "held_back": held, "warnings": notes}


def _concat(folder: Path) -> pa.Table:
    files = sorted(folder.glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else pa.table({})


def _hash_table(t: pa.Table) -> str:
    import hashlib

    h = hashlib.sha256()
    for col in ("x_vx", "y_vx", "z_vx", "cell_a", "cell_b"):
        h.update(t[col].to_numpy().tobytes())
    return h.hexdigest()[:16]


def _reduce_contacts(t: pa.Table | None) -> pa.Table:
    """Sum per-block contact rows per supervoxel pair; rep from the block with most voxels."""
    if t is None or t.num_rows == 0:
        z = pa.array([], pa.uint64())
        return pa.table({"sv_a": z, "sv_b": z})
    con = duckdb.connect()
    con.register("t", t)
    q = """
    select sv_a, sv_b,
      sum(size_vx)::bigint as size_vx,
      sum(n_faces_x)::bigint as n_faces_x, sum(n_faces_y)::bigint as n_faces_y,
      sum(n_faces_z)::bigint as n_faces_z,
      sum(area_nm2) / 1e6 as area_um2,
      min(bbox_min_x) filter (where size_vx > 0) as bbox_min_x_vx,
      min(bbox_min_y) filter (where size_vx > 0) as bbox_min_y_vx,
      min(bbox_min_z) filter (where size_vx > 0) as bbox_min_z_vx,
      max(bbox_max_x) filter (where size_vx > 0) as bbox_max_x_vx,
      max(bbox_max_y) filter (where size_vx > 0) as bbox_max_y_vx,
      max(bbox_max_z) filter (where size_vx > 0) as bbox_max_z_vx,
      sum(sum_x) / nullif(sum(size_vx), 0) as com_x_vx,
      sum(sum_y) / nullif(sum(size_vx), 0) as com_y_vx,
      sum(sum_z) / nullif(sum(size_vx), 0) as com_z_vx,
      arg_max(rep_x, size_vx * 1000000 - block) as rep_x_vx,
      arg_max(rep_y, size_vx * 1000000 - block) as rep_y_vx,
      arg_max(rep_z, size_vx * 1000000 - block) as rep_z_vx
    from t group by sv_a, sv_b order by sv_a, sv_b
    """
    return con.sql(q).to_arrow_table()


def _synapses_from_voxels(
    vox: pa.Table,
    faces: pa.Table,
    sv_ids: np.ndarray,
    cell_ids: np.ndarray,
    vs: tuple[float, float, float],
    gap_nm: float,
    min_size_vx: int,
    has_type: bool,
) -> tuple[pa.Table, dict[str, int]]:
    if vox.num_rows == 0:
        return _empty_synapses(has_type), {"n_synapses": 0}
    xyz = np.stack([vox[a].to_numpy() for a in "xyz"], axis=1).astype(np.int64)
    sva, svb = vox["sv_a"].to_numpy(), vox["sv_b"].to_numpy()
    ca = map_to_cells(sva, sv_ids, cell_ids)
    cb = map_to_cells(svb, sv_ids, cell_ids)
    cl = cluster_synapses(xyz, ca, cb, vs, gap_nm, min_size_vx)
    keep = cl.voxel_synapse >= 0
    s = cl.voxel_synapse[keep]
    n = len(cl.cell_pair)
    xyz_k = xyz[keep]
    vsa = np.asarray(vs)
    size = np.bincount(s, minlength=n)
    com = np.stack([np.bincount(s, xyz_k[:, i] * vsa[i], n) for i in range(3)], axis=1) / size[:, None]
    d2 = ((xyz_k * vsa - com[s]) ** 2).sum(1)
    order = np.lexsort((xyz_k[:, 2], xyz_k[:, 1], xyz_k[:, 0], d2, s))
    first = order[first_of_runs(s[order])]
    centre = np.zeros((n, 3), np.int64)
    centre[s[first]] = xyz_k[first]
    # stable synapse ids: order by centre x, y, z then cell pair
    rank = np.lexsort((cl.cell_pair[:, 1], cl.cell_pair[:, 0], centre[:, 2], centre[:, 1], centre[:, 0]))
    new_index = np.empty(n, np.int64)
    new_index[rank] = np.arange(n)
    s = new_index[s]
    centre = centre[rank]
    pair = cl.cell_pair[rank]
    size = size[rank]
    sj = vox["sj_prob"].to_numpy()[keep]
    sj_mean = np.bincount(s, sj, n) / size
    sj_max = np.zeros(n, np.float32)
    np.maximum.at(sj_max, s, sj)
    own_sv = vox["sv"].to_numpy()[keep]
    own_cell = map_to_cells(own_sv, sv_ids, cell_ids)
    sv_a_major = _majority_sv(s, own_sv, own_cell == pair[s, 0], n)
    sv_b_major = _majority_sv(s, own_sv, own_cell == pair[s, 1], n)
    area = _face_area(faces, vox, keep, s, n, sj_max)
    cols: dict[str, Any] = {
        "synapse_index": np.arange(n, dtype=np.int64),
        "cell_a": pair[:, 0],
        "cell_b": pair[:, 1],
        "sv_a": sv_a_major,
        "sv_b": sv_b_major,
        "x_vx": centre[:, 0],
        "y_vx": centre[:, 1],
        "z_vx": centre[:, 2],
        "size_vx": size.astype(np.int64),
        "area_um2": area / 1e6,
        "sj_mean": sj_mean.astype(np.float32),
        "sj_max": sj_max,
    }
    if has_type:
        sym = vox["sym"].to_numpy()[keep].astype(np.float64)
        cols["sym_ratio"] = (np.bincount(s, sym, n) / size).astype(np.float32)
    info = {
        "n_synapse_voxels": int(keep.sum()),
        "dropped_same_cell_vx": cl.n_dropped_same_cell,
        "dropped_no_cell_vx": cl.n_dropped_no_cell,
        "dropped_small_clusters": cl.n_dropped_small,
    }
    return pa.table(cols), info


def _majority_sv(s: np.ndarray, sv: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, np.uint64)
    if not mask.any():
        return out
    pairs, inverse = unique_pairs(s[mask].astype(np.uint64), sv[mask].astype(np.uint64))
    counts = np.bincount(inverse, minlength=len(pairs))
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
    k = pairs[order]
    first = first_of_runs(k[:, 0])
    out[k[first, 0].astype(np.int64)] = k[first, 1]
    return out


def _face_area(
    faces: pa.Table, vox: pa.Table, keep: np.ndarray, s: np.ndarray, n: int, sj_max: np.ndarray
) -> np.ndarray:
    """Junction area of each synapse: the faces between its two cells whose voxels both reach half
    the synapse's peak sj probability (full width at half maximum, so the blur of a prediction map
    does not widen the junction). A face belongs to the synapse of a voxel on either side."""
    area = np.zeros(n, np.float64)
    if faces.num_rows == 0:
        return area
    con = duckdb.connect()
    v = pa.table({
        "x": vox["x"].to_numpy()[keep], "y": vox["y"].to_numpy()[keep], "z": vox["z"].to_numpy()[keep],
        "sv_a": vox["sv_a"].to_numpy()[keep], "sv_b": vox["sv_b"].to_numpy()[keep], "s": s,
    })
    con.register("v", v)
    con.register("f", faces)
    q = """
    with f2 as (
      select row_number() over () as fid, x, y, z, sv_a, sv_b, axis, area_nm2, sj_min,
        x + (axis = 0)::int as ux, y + (axis = 1)::int as uy, z + (axis = 2)::int as uz from f),
    hits as (
      select f2.fid, f2.area_nm2, f2.sj_min, v.s from f2 join v on v.sv_a = f2.sv_a and v.sv_b = f2.sv_b
        and v.x = f2.x and v.y = f2.y and v.z = f2.z
      union all
      select f2.fid, f2.area_nm2, f2.sj_min, v.s from f2 join v on v.sv_a = f2.sv_a and v.sv_b = f2.sv_b
        and v.x = f2.ux and v.y = f2.uy and v.z = f2.uz)
    select min(s) as s, any_value(area_nm2) as a, any_value(sj_min) as p from hits group by fid
    """
    r = con.execute(q).fetchnumpy()
    syn_of = r["s"].astype(np.int64)
    half = r["p"] >= 0.5 * sj_max[syn_of]
    np.add.at(area, syn_of[half], r["a"][half])
    return area


def _finish(syn: pa.Table, feats: pa.Table | None, sym_threshold: float | None, has_vc: bool) -> pa.Table:
    """Direction from vesicles, sign from the type ratio, pre/post columns."""
    n = syn.num_rows
    f = {}
    if feats is not None and feats.num_rows:
        order = np.argsort(feats["synapse_index"].to_numpy())
        f = {k: feats[k].to_numpy()[order] for k in feats.column_names}
    zeros = np.zeros(n, np.int64)
    infs = np.full(n, np.inf)
    vc_a, vc_b = f.get("vc_a_vx", zeros), f.get("vc_b_vx", zeros)
    a_is_pre = vc_a >= vc_b
    tot = vc_a + vc_b
    conf = np.where(tot > 0, np.abs(vc_a - vc_b) / np.maximum(tot, 1), 0.0)

    def pick(a, b, pre: bool):
        return np.where(a_is_pre == pre, a, b)

    ca, cb = syn["cell_a"].to_numpy(), syn["cell_b"].to_numpy()
    sa, sb = syn["sv_a"].to_numpy(), syn["sv_b"].to_numpy()
    if sym_threshold is None:
        sign = np.zeros(n, np.int8)
    else:
        sign = np.where(syn["sym_ratio"].to_numpy() > sym_threshold, -1, 1).astype(np.int8)
    cols: dict[str, Any] = {
        "synapse_id": np.arange(1, n + 1, dtype=np.uint64),
        "pre_cell_id": pick(ca, cb, True).astype(np.uint64),
        "post_cell_id": pick(ca, cb, False).astype(np.uint64),
        "pre_sv_id": pick(sa, sb, True).astype(np.uint64),
        "post_sv_id": pick(sa, sb, False).astype(np.uint64),
    }
    for name in ("x_vx", "y_vx", "z_vx", "size_vx", "area_um2", "sj_mean", "sj_max"):
        cols[name] = syn[name].to_numpy()
    cols["sign"] = sign
    if "sym_ratio" in syn.column_names:
        cols["sym_ratio"] = syn["sym_ratio"].to_numpy()
    cols["direction_conf"] = conf.astype(np.float32)
    cols["direction_source"] = np.where(tot > 0, "vesicles", "none") if has_vc else np.full(n, "none")
    for org in ("vc", "mi"):
        a, b = f.get(f"{org}_a_vx", zeros), f.get(f"{org}_b_vx", zeros)
        da, db = f.get(f"{org}_a_dist_nm", infs), f.get(f"{org}_b_dist_nm", infs)
        cols[f"{org}_pre_vx"] = pick(a, b, True).astype(np.int64)
        cols[f"{org}_post_vx"] = pick(a, b, False).astype(np.int64)
        cols[f"{org}_pre_dist_nm"] = pick(da, db, True).astype(np.float32)
        cols[f"{org}_post_dist_nm"] = pick(da, db, False).astype(np.float32)
    return pa.table(cols)


def _empty_synapses(has_type: bool) -> pa.Table:
    """No synapses: the same columns a non-empty table has (``sym_ratio`` with a type layer)."""
    z = np.zeros(0, np.int64)
    u = np.zeros(0, np.uint64)
    f = np.zeros(0, np.float32)
    cols = {
        "synapse_index": z, "cell_a": u, "cell_b": u, "sv_a": u, "sv_b": u,
        "x_vx": z, "y_vx": z, "z_vx": z, "size_vx": z, "area_um2": np.zeros(0),
        "sj_mean": f, "sj_max": f,
    }
    return pa.table({**cols, "sym_ratio": f} if has_type else cols)


def _cell_contacts(
    cs: pa.Table, sv_ids: np.ndarray, cell_ids: np.ndarray, syn: pa.Table | None
) -> pa.Table:
    """Contacts per cell pair (the reference's cs_ssv): area, supervoxel pairs, and synapses
    unless ``syn`` is None (no sj layer)."""
    if cs.num_rows == 0:
        u = pa.array([], pa.uint64())
        return pa.table({"cell_a": u, "cell_b": u})
    ca = map_to_cells(cs["sv_a"].to_numpy(), sv_ids, cell_ids)
    cb = map_to_cells(cs["sv_b"].to_numpy(), sv_ids, cell_ids)
    t = pa.table({
        "cell_a": np.minimum(ca, cb), "cell_b": np.maximum(ca, cb),
        "area_um2": cs["area_um2"].to_numpy(), "size_vx": cs["size_vx"].to_numpy(),
    })
    con = duckdb.connect()
    con.register("t", t)
    contacts = """
      select cell_a, cell_b, count(*) as n_sv_pairs, sum(area_um2) as contact_area_um2,
        sum(size_vx)::bigint as contact_size_vx
      from t where cell_a > 0 and cell_a <> cell_b group by cell_a, cell_b"""
    if syn is None:
        return con.sql(contacts + " order by cell_a, cell_b").to_arrow_table()
    s = pa.table({
        "cell_a": np.minimum(syn["pre_cell_id"].to_numpy(), syn["post_cell_id"].to_numpy()),
        "cell_b": np.maximum(syn["pre_cell_id"].to_numpy(), syn["post_cell_id"].to_numpy()),
        "area_um2": syn["area_um2"].to_numpy(),
    })
    con.register("s", s)
    q = f"""
    with c as ({contacts}),
    y as (select cell_a, cell_b, count(*) as n_synapses, sum(area_um2) as synapse_area_um2
      from s group by cell_a, cell_b)
    select c.*, coalesce(y.n_synapses, 0)::bigint as n_synapses,
      coalesce(y.synapse_area_um2, 0.0) as synapse_area_um2
    from c left join y using (cell_a, cell_b) order by cell_a, cell_b
    """
    return con.sql(q).to_arrow_table()
