"""Step ``celltypes``: a cell type, its class probabilities and a certainty for every cell.

Top to bottom:

1. :func:`cell_features`: one row per skeletonized cell from what earlier steps measured
   (skeleton, compartment labels, spines, cell volume and kind, organelles when the volume has
   mi / vc / sj maps); pure numpy on the concatenated node table, in nm / um.
2. the boosted-tree classifier (:mod:`syngraph.models.celltypes`), ``unknown`` for cells under
   the stated minimum cable (``celltypes.min_cable_um``), and for every cell when the typed
   cells' features lie outside the model's training domain (:mod:`syngraph.models.domain`;
   ``trust_model`` types them anyway).
3. ``tables/celltypes.parquet`` (cell_id, celltype, celltype_certainty, p_<class>, typed,
   the features), joined to ``tables/cells.parquet`` by cell_id (docs/celltypes.md).

The step runs before ``synapses``, so the reference's synapse sign ratio is not a feature.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from syngraph.config import load_config, project_path
from syngraph.engine import Compute, write_table_atomic
from syngraph.errors import InputError, StepOrderError
from syngraph.io.volume import open_layer
from syngraph.models.celltypes import (
    ORGANELLE_FEATURES,
    CelltypeModel,
    certainty,
    feature_names,
    fit_classifier,
    load_model,
)
from syngraph.models.domain import DomainReport, DomainWarning, held_back
from syngraph.models.files import load_model_file
from syngraph.skeleton import volume_hi_nm
from syngraph.steps.compartments.run import ORGANELLE_LAYERS, has_organelles

STEP = "celltypes"
TABLE = "celltypes"
UNKNOWN = "unknown"
STEP_NM = 500.0  # turning angles between consecutive steps of this length
SOURCE = "source_cell_id"  # training rows: the cell a piece was cut from (the cell itself when whole)
XYZ = ("x_nm", "y_nm", "z_nm")
BORDER_NM = 50.0  # spines this close to the dataset border (and >= 2 voxels) are not counted: cut branches


# ---------------------------------------------------------------------------- features


def _node_cable_nm(parent: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Half of every incident edge's length per node (the node's share of the cable)."""
    has = parent >= 0
    child = np.flatnonzero(has)
    length = np.linalg.norm(xyz[child] - xyz[parent[child]], axis=1)
    w = np.zeros(len(parent))
    np.add.at(w, child, length / 2)
    np.add.at(w, parent[child], length / 2)
    return w


def _ancestor(parent: np.ndarray, k: int) -> np.ndarray:
    a = np.arange(len(parent))
    for _ in range(k):
        a = np.where(a >= 0, parent[np.maximum(a, 0)], -1)
    return a


def _turning_deg(parent: np.ndarray, xyz: np.ndarray, edge_nm: float) -> np.ndarray:
    """Per node: the angle between the step to its ancestor ~STEP_NM up and the next such step
    (NaN where the path is shorter)."""
    k = max(1, int(round(STEP_NM / max(edge_nm, 1.0))))
    a1 = _ancestor(parent, k)
    a2 = np.where(a1 >= 0, a1[np.maximum(a1, 0)], -1)
    ok = a2 >= 0
    u = xyz[np.flatnonzero(ok)] - xyz[a1[ok]]
    v = xyz[a1[ok]] - xyz[a2[ok]]
    cos = np.sum(u * v, 1) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-9)
    out = np.full(len(parent), np.nan)
    out[ok] = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    return out


def cell_features(nodes: pd.DataFrame, cells: pd.DataFrame, spines: pd.Series,
                  organelles: pd.DataFrame | None) -> pd.DataFrame:
    """One row per cell of ``nodes`` (index cell_id), columns :data:`SHAPE_FEATURES` (+
    :data:`ORGANELLE_FEATURES` when ``organelles`` is given).

    ``nodes``: cell_id, node_id, parent_id (cell-local), x_nm, y_nm, z_nm, radius_nm, myelin,
    label (compartment name); ``cells``: index cell_id, volume_um3, astrocyte (bool);
    ``spines``: spine count per cell_id; ``organelles``: index cell_id, mi_um3, vc_um3, vc_n, sj_n.
    """
    nodes = nodes.sort_values(["cell_id", "node_id"], kind="stable").reset_index(drop=True)
    cid = nodes["cell_id"].to_numpy().astype(np.uint64)
    ids, start = np.unique(cid, return_index=True)
    offset = np.repeat(start, np.diff(np.r_[start, len(cid)]))
    par = nodes["parent_id"].to_numpy().astype(np.int64)
    parent = np.where(par >= 0, par + offset, -1)
    xyz = nodes[["x_nm", "y_nm", "z_nm"]].to_numpy(np.float64)
    radius = nodes["radius_nm"].to_numpy(np.float64)
    w = _node_cable_nm(parent, xyz)
    has = parent >= 0
    edge_nm = float(np.median(np.linalg.norm(xyz[has] - xyz[parent[has]], axis=1))) if has.any() else 1.0
    turn = _turning_deg(parent, xyz, edge_nm)
    label = nodes["label"].to_numpy().astype(str)
    degree = np.bincount(parent[has], minlength=len(parent)) + has
    bouton = np.isin(label, ("bouton", "terminal_bouton"))
    bouton_start = bouton & ~(has & bouton[np.maximum(parent, 0)])
    myelin = nodes["myelin"].to_numpy().astype(bool) if "myelin" in nodes else np.zeros(len(nodes), bool)
    df = pd.DataFrame({
        "cell_id": cid, "w": w, "radius": radius, "turn": turn,
        "soma": w * (label == "soma"), "shaft": w * (label == "shaft"),
        "spine": w * np.isin(label, ("spine_neck", "spine_head")), "axon": w * (label == "axon"),
        "bouton": w * bouton, "astro": w * (label == "astrocyte"), "myelin": w * myelin,
        "bouton_start": bouton_start, "branch": degree >= 3, "tip": (degree == 1) & has,
        "r_axon": np.where(np.isin(label, ("axon",)), radius, np.nan),
        "r_shaft": np.where(label == "shaft", radius, np.nan),
        "r_soma": np.where(label == "soma", radius, 0.0),
    })
    g = df.groupby("cell_id", sort=True)
    s = g[["w", "soma", "shaft", "spine", "axon", "bouton", "astro", "myelin", "bouton_start",
           "branch", "tip"]].sum()
    cable_um = s["w"].to_numpy() / 1000
    cab = np.maximum(cable_um, 1e-3)
    den_um = (s["shaft"] + s["spine"]).to_numpy() / 1000
    ax_um = (s["axon"] + s["bouton"]).to_numpy() / 1000
    cells = cells.reindex(ids)
    vol = cells["volume_um3"].fillna(0).to_numpy(np.float64)
    n_spines = spines.reindex(ids).fillna(0).to_numpy(np.float64)
    r_med, r_p90 = g["radius"].median().to_numpy(), g["radius"].quantile(0.9).to_numpy()
    out = pd.DataFrame({
        "log_cable_um": np.log10(1 + cable_um),
        "log_volume_um3": np.log10(np.maximum(vol, 1e-6)),
        "log_volume_per_cable_um2": np.log10(np.maximum(vol, 1e-6) / cab),
        **{f"frac_{k}": (s[c] / s["w"].clip(lower=1e-9)).to_numpy()
           for k, c in (("soma", "soma"), ("shaft", "shaft"), ("spine", "spine"), ("axon", "axon"),
                        ("bouton", "bouton"), ("astrocyte", "astro"))},
        "spines_per_um_dendrite": np.where(den_um > 0, n_spines / np.maximum(den_um, 1e-3), 0.0),
        "boutons_per_um_axon": np.where(ax_um > 0, s["bouton_start"].to_numpy() / np.maximum(ax_um, 1e-3), 0.0),
        "myelin_frac": (s["myelin"] / s["w"].clip(lower=1e-9)).to_numpy(),
        "log_radius_median_nm": np.log10(np.maximum(r_med, 1.0)),
        "log_radius_p90_nm": np.log10(np.maximum(r_p90, 1.0)),
        "log_radius_axon_nm": np.log10(g["r_axon"].median().to_numpy()),
        "log_radius_dendrite_nm": np.log10(g["r_shaft"].median().to_numpy()),
        "log_soma_radius_nm": np.log10(1 + g["r_soma"].max().to_numpy()),
        "radius_cv": (g["radius"].std(ddof=0) / g["radius"].mean().clip(lower=1e-9)).to_numpy(),
        "branch_points_per_um": s["branch"].to_numpy() / cab,
        "tips_per_um": s["tip"].to_numpy() / cab,
        "turning_deg": g["turn"].median().to_numpy(),
        "astrocyte_kind": cells["astrocyte"].fillna(False).to_numpy().astype(np.float64),
    }, index=pd.Index(ids, name="cell_id"))
    if organelles is not None:
        o = organelles.reindex(ids).fillna(0)
        out["mi_um3_per_um"] = o["mi_um3"].to_numpy() / cab
        out["vc_um3_per_um"] = o["vc_um3"].to_numpy() / cab
        out["vc_per_um"] = o["vc_n"].to_numpy() / cab
        out["sj_per_um"] = o["sj_n"].to_numpy() / cab
        out["sj_per_vc"] = o["sj_n"].to_numpy() / np.maximum(o["vc_n"].to_numpy(), 1)
        out["out_sj_spine_frac"] = o["out_spine"].to_numpy() / o["out_n"].replace(0, np.nan).to_numpy()
        out["out_sj_soma_frac"] = o["out_soma"].to_numpy() / o["out_n"].replace(0, np.nan).to_numpy()
        out["out_sj_symmetric_frac"] = o["out_sym"].to_numpy() / o["out_typed"].replace(0, np.nan).to_numpy()
    out["cable_um"] = cable_um  # for the minimum, not a feature
    return out


# ---------------------------------------------------------------------------- inputs


def junction_partners(nodes: pd.DataFrame, sj_cells: pd.DataFrame, sj_xyz_nm: pd.DataFrame,
                      symmetric: pd.Series | None = None, radius_nm: float = 1500.0) -> pd.DataFrame:
    """Per cell: junctions at its axon (``out_n``: its nearest node to the junction is axon or
    bouton) and of those, how many have the partner's nearest node on a spine (``out_spine``) or
    a soma (``out_soma``), how many have a known type (``out_typed``) and are symmetric
    (``out_sym``). ``sj_cells``: organelle_id, cell_id (the cells a junction touches);
    ``sj_xyz_nm``: index organelle_id, x, y, z; ``symmetric``: organelle_id -> bool."""
    from scipy.spatial import cKDTree

    cid = nodes["cell_id"].to_numpy().astype(np.uint64)
    label = nodes["label"].to_numpy().astype(str)
    tree = cKDTree(nodes[["x_nm", "y_nm", "z_nm"]].to_numpy(np.float64))
    rows = []
    for sj, g in sj_cells.groupby("organelle_id"):
        cells = g["cell_id"].to_numpy().astype(np.uint64)
        if len(cells) < 2 or sj not in sj_xyz_nm.index:
            continue
        near = np.asarray(tree.query_ball_point(sj_xyz_nm.loc[sj].to_numpy(np.float64), radius_nm), np.int64)
        if not near.size:
            continue
        d = np.linalg.norm(tree.data[near] - sj_xyz_nm.loc[sj].to_numpy(np.float64), axis=1)
        near = near[np.argsort(d)]
        first = {}
        for i in near:
            first.setdefault(int(cid[i]), label[i])
        for c in cells.tolist():
            own = first.get(int(c))
            others = [first[int(o)] for o in cells.tolist() if o != c and int(o) in first]
            if own in ("axon", "bouton", "terminal_bouton") and others:
                known = symmetric is not None and sj in symmetric.index
                rows.append((c, 1, others[0] in ("spine_neck", "spine_head"), others[0] == "soma",
                             known, known and bool(symmetric.loc[sj])))
    cols = ["out_n", "out_spine", "out_soma", "out_typed", "out_sym"]
    return pd.DataFrame(rows, columns=["cell_id", *cols]).groupby("cell_id")[cols].sum()


def junction_symmetric(workdir: Path, sj: pd.DataFrame, sym_threshold: float) -> pd.Series | None:
    """sj id -> symmetric: the fraction of the junction's voxels (``sj_seg``) where the
    ``syn_type`` map is over half its range exceeds ``sym_threshold`` (the synapse step's rule);
    None without both layers."""
    from syngraph.bbox import BBox
    from syngraph.io.volume import list_layers

    if not {"syn_type", "sj_seg"} <= set(list_layers(workdir)):
        return None
    seg, typ = open_layer(workdir, "sj_seg"), open_layer(workdir, "syn_type")
    half = 0.5 * float(typ.info.value_range or (255.0 if typ.dtype == np.uint8 else 1.0))
    out = {}
    for r in sj.itertuples():
        box = BBox((r.bbox_min_x_vx, r.bbox_min_y_vx, r.bbox_min_z_vx), (r.bbox_max_x_vx, r.bbox_max_y_vx, r.bbox_max_z_vx))
        m = seg.read(box) == r.id
        if m.any():
            out[r.id] = float(np.mean(typ.read(box)[m] > half)) > sym_threshold
    return pd.Series(out, dtype=bool)


def _organelle_table(workdir: Path, voxel_nm: np.ndarray, nodes: pd.DataFrame) -> pd.DataFrame:
    co = pq.read_table(workdir / "tables" / "cell_organelles.parquet").to_pandas()
    vox_um3 = float(np.prod(voxel_nm)) / 1e9
    out = pd.DataFrame(index=pd.Index(np.unique(co["cell_id"].to_numpy()).astype(np.uint64), name="cell_id"))
    for layer in ORGANELLE_LAYERS:
        size = pq.read_table(workdir / "tables" / f"{layer}.parquet", columns=["id", "size_vx"]
                             ).to_pandas().set_index("id")["size_vx"]
        sub = co[co["organelle_layer"] == layer]
        sub = sub.assign(um3=size.reindex(sub["organelle_id"].to_numpy()).fillna(0).to_numpy() * vox_um3)
        g = sub.groupby("cell_id")
        out[f"{layer}_um3"] = g["um3"].sum().reindex(out.index).fillna(0)
        out[f"{layer}_n"] = g.size().reindex(out.index).fillna(0)
    sj = pq.read_table(workdir / "tables" / "sj.parquet").to_pandas()
    xyz = pd.DataFrame(sj[["com_x_vx", "com_y_vx", "com_z_vx"]].to_numpy(np.float64) * voxel_nm, index=sj["id"].to_numpy())
    sym = junction_symmetric(workdir, sj, load_config(workdir).synapses.sym_threshold)
    partners = junction_partners(nodes, co[co["organelle_layer"] == "sj"], xyz, sym)
    partners.index = partners.index.astype(np.uint64)
    return out.join(partners, how="left").fillna(0)


def off_border(xyz_nm: np.ndarray, hi_nm: np.ndarray, margin_nm: np.ndarray) -> np.ndarray:
    """Per point: farther than ``margin_nm`` (per axis) from every face of the box ``[0, hi_nm]``
    (voxel centres: the first's and the last's, :func:`syngraph.skeleton.volume_hi_nm`). A branch
    the border cuts leaves a short stub that looks like a spine."""
    xyz = np.asarray(xyz_nm, np.float64).reshape(-1, 3)
    return np.all((xyz >= margin_nm) & (xyz <= np.asarray(hi_nm) - margin_nm), axis=1)


@dataclass(frozen=True)
class CellInputs:
    """What :func:`cell_features` reads, per working directory: the node table, the cells
    (volume_um3, astrocyte), the spines (cell_id, node_id), the organelle counts (None without
    mi / vc / sj maps) and the features lacking for that reason."""

    nodes: pd.DataFrame
    cells: pd.DataFrame
    spines: pd.DataFrame
    organelles: pd.DataFrame | None
    lacking: list[str]

    def features(self) -> pd.DataFrame:
        counts = self.spines.groupby("cell_id").size() if len(self.spines) else pd.Series(dtype=float)
        counts.index = counts.index.to_numpy().astype(np.uint64)
        return cell_features(self.nodes, self.cells, counts, self.organelles)


def load_inputs(workdir: Path) -> tuple[pd.DataFrame, list[str]]:
    """The feature table of a working directory (cells with a skeleton) and the features it
    lacked (organelle features without mi / vc / sj maps)."""
    inputs = load_cell_inputs(workdir)
    return inputs.features(), inputs.lacking


def load_cell_inputs(workdir: Path) -> CellInputs:
    """The tables :func:`cell_features` reads, from a working directory."""
    for name, step in (("skeletons", "skeletons"), ("compartments_nodes", "compartments"),
                       ("cells", "cells")):
        if not (workdir / "tables" / f"{name}.parquet").exists():
            raise StepOrderError(f"{workdir / 'tables' / f'{name}.parquet'} does not exist: the celltypes "
                                 f"step uses it; run `syngraph run {step}` first")
    sk = pq.read_table(workdir / "tables" / "skeletons.parquet").to_pandas()
    comp = pq.read_table(workdir / "tables" / "compartments_nodes.parquet",
                         columns=["cell_id", "node_id", "label"]).to_pandas()
    nodes = pd.DataFrame({"cell_id": sk["neuron"].to_numpy().astype(np.uint64),
                          "node_id": sk["node_id"].to_numpy(), "parent_id": sk["parent_id"].to_numpy(),
                          "x_nm": sk["x"], "y_nm": sk["y"], "z_nm": sk["z"], "radius_nm": sk["radius"]})
    if "myelin" in sk:
        nodes["myelin"] = sk["myelin"].to_numpy().astype(bool)
    comp["cell_id"] = comp["cell_id"].to_numpy().astype(np.uint64)
    nodes = nodes.merge(comp, on=["cell_id", "node_id"], how="left")
    nodes["label"] = nodes["label"].fillna("unknown")
    voxel = np.asarray(load_config(workdir).voxel_size_nm, np.float64)
    ct = pq.read_table(workdir / "tables" / "cells.parquet").to_pandas()
    cells = pd.DataFrame({"volume_um3": ct["size_vx"].to_numpy() * float(np.prod(voxel)) / 1e9,
                          "astrocyte": (ct["kind"] == "astrocyte").to_numpy() if "kind" in ct else False},
                         index=pd.Index(ct["cell_id"].to_numpy().astype(np.uint64), name="cell_id"))
    sp_path = workdir / "tables" / "spines.parquet"
    spines = pd.DataFrame({"cell_id": []})
    if sp_path.exists():  # the columns used (a hand-written table may lack node_id or the position)
        have = pq.read_schema(sp_path).names
        spines = pq.read_table(sp_path, columns=[c for c in ("cell_id", "node_id", *XYZ) if c in have]).to_pandas()
        if all(c in spines for c in XYZ):
            hi_nm = volume_hi_nm(open_layer(workdir, "sv").shape, voxel)  # the last voxel's centre
            spines = spines[off_border(spines[list(XYZ)].to_numpy(np.float64), hi_nm, np.maximum(BORDER_NM, 2 * voxel))]
    spines = spines.reindex(columns=["cell_id", "node_id"]).fillna({"node_id": -1})  # node_id: for pieces
    spines["cell_id"] = spines["cell_id"].to_numpy().astype(np.uint64)
    orgs = _organelle_table(workdir, voxel, nodes) if has_organelles(workdir) else None
    return CellInputs(nodes, cells, spines, orgs, [] if orgs is not None else list(ORGANELLE_FEATURES))


# ---------------------------------------------------------------------------- prediction



def predict(features: pd.DataFrame, model: CelltypeModel, organelles: bool, min_cable_um: float,
            trust_model: bool = False) -> tuple[pd.DataFrame, str, DomainReport | None]:
    """The celltypes table (index cell_id), the model variant used and the domain check of the
    cells over the minimum (None when the model stores no domain or no cell is over it). Outside
    the domain no cell is typed unless ``trust_model``."""
    variant, clf = model.variant(organelles)
    x = features[list(feature_names(variant))].to_numpy(np.float64)
    prob = clf.predict_proba(x)
    typed = features["cable_um"].to_numpy() >= min_cable_um
    check = clf.domain.distance(x[typed]) if clf.domain is not None and typed.any() else None
    if held_back(check, trust_model):
        typed = np.zeros_like(typed)
    names = np.asarray(clf.classes, dtype=object)
    label = np.where(typed, names[np.argmax(prob, 1)] if len(prob) else np.zeros(0, object), UNKNOWN)
    out = pd.DataFrame({"celltype": label.astype(str), "celltype_certainty": certainty(prob),
                        **{f"p_{c}": prob[:, j] for j, c in enumerate(clf.classes)},
                        "typed": typed}, index=features.index)
    return out.join(features), variant, check


def run_celltypes(
    workdir: str | Path,
    *,
    compute: Compute | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    trust_model: bool = False,
) -> dict[str, Any]:
    """Run the step; writes ``tables/celltypes.parquet``. Outside the model's training domain
    every cell is ``unknown`` (a warning says so) unless ``trust_model``."""
    workdir = Path(workdir)
    p = load_config(workdir).celltypes
    features, lacking = load_inputs(workdir)
    model = load_model_file(load_model, project_path(workdir, p.model) if p.model else None, "celltypes.model")
    if p.classes and tuple(p.classes) != model.classes:
        raise InputError(f"[celltypes] classes {list(p.classes)} differ from the model's "
                         f"{list(model.classes)}; set classes = {list(model.classes)} or retrain")
    table, variant, check = predict(features, model, not lacking, p.min_cable_um, trust_model)
    held = held_back(check, trust_model)
    t = pa.Table.from_pandas(table.reset_index(), preserve_index=False)
    digest = hashlib.sha1((workdir / "tables" / "compartments_nodes.parquet").read_bytes()).hexdigest()
    write_table_atomic(t, workdir / "tables" / f"{TABLE}.parquet",
                       metadata={"syngraph:model_variant": variant, "syngraph:compartments": digest,
                                 "syngraph:min_cable_um": str(p.min_cable_um),
                                 "syngraph:in_domain": str(None if check is None else check.in_domain)})
    notes = []
    if check is not None and not check.in_domain:
        notes.append(f"celltypes: the cells over {p.min_cable_um} um lie outside the model's training data: "
                     f"{check.summary()}; "
                     + ("typed anyway (--trust-model)" if trust_model else
                        "no cell was typed (all unknown); train on this volume's labels with `syngraph train "
                        "celltypes --labels cells.csv` and set celltypes.model, or rerun with --trust-model"))
        warnings.warn(notes[-1], DomainWarning, stacklevel=2)
    counts = table["celltype"].value_counts()
    return {"cells": len(table), "typed": int(table["typed"].sum()), "min_cable_um": p.min_cable_um,
            "model_variant": variant, "features_lacking": lacking,
            "cells_per_type": {str(k): int(v) for k, v in counts.items()},
            "domain_distance": None if check is None else check.distance,
            "domain_threshold": None if check is None else check.threshold,
            "held_back": held, "warnings": notes,
            "summary": (f"{int(table['typed'].sum())} of {len(table)} cells typed ({variant} model)"
                        + ("; held back: outside the training domain" if held else "")
                        + ("" if check is None else f"; domain distance {check.distance:.2f} / {check.threshold:.2f}"))}


# ---------------------------------------------------------------------------- training


def read_labels(path: str | Path, workdir: Path) -> pd.Series:
    """cell_id -> type from a csv/parquet with ``type`` and either ``cell_id`` or ``x_nm, y_nm,
    z_nm`` (a point inside the cell, looked up in the sv layer)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: label table does not exist; give a csv or parquet with cell_id "
                         f"(or x_nm, y_nm, z_nm) and type")
    t = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if "type" not in t:
        raise InputError(f"{path}: no 'type' column (columns: {', '.join(map(str, t.columns))}); add the "
                         f"cell type of every row")
    bad = t["type"].isna() | (t["type"].astype(str).str.strip() == "")
    if bad.any():
        raise InputError(f"{path}: row {int(np.flatnonzero(bad.to_numpy())[0]) + 2} has no type; fill it or drop the row")
    if "cell_id" in t:
        ids = pd.to_numeric(t["cell_id"], errors="coerce")
        if ids.isna().any() or (ids < 0).any():
            row = int(np.flatnonzero((ids.isna() | (ids < 0)).to_numpy())[0]) + 2
            raise InputError(f"{path}: row {row}: cell_id {t['cell_id'].iloc[row - 2]!r} is not a "
                             f"cell id (a non-negative integer)")
        ids = ids.to_numpy().astype(np.uint64)
    elif all(c in t for c in ("x_nm", "y_nm", "z_nm")):
        ids = _cells_at_points(workdir, t[["x_nm", "y_nm", "z_nm"]].to_numpy(np.float64), path)
    else:
        raise InputError(f"{path}: give a cell_id column or x_nm, y_nm, z_nm columns (a point in the cell)")
    return pd.Series(t["type"].astype(str).str.strip().to_numpy(), index=pd.Index(ids, name="cell_id"))


def _cells_at_points(workdir: Path, xyz_nm: np.ndarray, path: Path) -> np.ndarray:
    from syngraph.bbox import BBox

    layer = open_layer(workdir, "sv")
    vox = np.floor(xyz_nm / np.asarray(layer.info.voxel_size_nm)).astype(np.int64)
    out = np.zeros(len(vox), np.uint64)
    s2c = pq.read_table(workdir / "tables" / "sv_to_cell.parquet").to_pandas()
    lut = pd.Series(s2c["cell_id"].to_numpy().astype(np.uint64), index=s2c["sv_id"].to_numpy().astype(np.uint64))
    for i, v in enumerate(vox):
        if np.any(v < 0) or np.any(v >= np.asarray(layer.shape)):
            raise InputError(f"{path}: row {i + 2}: point {xyz_nm[i].tolist()} nm lies outside the volume")
        sv = int(layer.read(BBox(tuple(v.tolist()), tuple((v + 1).tolist()))).ravel()[0])
        if sv == 0 or sv not in lut.index:
            raise InputError(f"{path}: row {i + 2}: point {xyz_nm[i].tolist()} nm is in no cell "
                             f"(background); move it inside the cell")
        out[i] = lut[sv]
    return out


def fit_model(features: list[pd.DataFrame], labels: list[pd.Series], *, organelles: bool,
              classes: tuple[str, ...] | None = None, info: dict[str, str] | None = None,
              min_cable_um: float = 0.0) -> tuple[CelltypeModel, float]:
    """Fit both variants (``full`` only when every working directory has organelles) on the
    labelled cells, the probabilities calibrated on the cells with >= ``min_cable_um`` of cable
    (those the step types), out of fold by working directory when there are >= 4; returns the
    model and the shape variant's out-of-fold accuracy."""
    rows = [f.join(lab.rename("type"), how="inner").assign(volume=i)
            for i, (f, lab) in enumerate(zip(features, labels, strict=True))]
    data = pd.concat(rows)
    if data.empty:
        raise InputError("no labelled cell has a skeleton; label cells that `syngraph run skeletons` kept")
    classes = classes or tuple(sorted(data["type"].unique()))
    counts = data["type"].value_counts()
    few = [c for c in classes if counts.get(c, 0) < 2]
    if few:
        raise InputError(f"labels: classes {few} have fewer than 2 labelled cells with a skeleton; "
                         f"label more cells of each type")
    # a cell and its pieces (with_pieces' SOURCE column) share a fold
    src = data[SOURCE].to_numpy() if SOURCE in data else data.index.to_numpy()
    units = pd.factorize(pd.Series(list(zip(data["volume"].to_numpy(), src, strict=True))))[0]
    variants, acc = {}, {}
    for v in (("full", "shape") if organelles else ("shape",)):
        names = feature_names(v)
        variants[v], acc[v] = fit_classifier(data[list(names)].to_numpy(np.float64),
                                             data["type"].to_numpy(), names, classes,
                                             calibrate=data["cable_um"].to_numpy() >= min_cable_um,
                                             groups=data["volume"].to_numpy(),
                                             units=units)
    rec = {"n_cells": str(len(data)), **{f"cv_accuracy_{v}": f"{a:.4f}" for v, a in acc.items()}}
    return CelltypeModel(variants, (info or {}) | rec), acc["shape"]


def train_celltypes(workdir: str | Path, labels_path: str | Path, out: str | Path | None = None,
                    min_cable_um: float | None = None, pieces: int | None = None) -> tuple[Path, float]:
    """``syngraph train celltypes``: fit from a label table on one working directory, each
    labelled cell with ``pieces`` (default
    :data:`~syngraph.steps.celltypes_pieces.PIECES_PER_CELL`) random pieces of itself (the cell
    as a smaller volume would cut it)."""
    workdir = Path(workdir)
    p = load_config(workdir).celltypes
    minimum = p.min_cable_um if min_cable_um is None else min_cable_um
    from syngraph.steps.celltypes_pieces import PIECES_PER_CELL, with_pieces

    inputs = load_cell_inputs(workdir)
    labels = read_labels(labels_path, workdir)
    pieces = PIECES_PER_CELL if pieces is None else pieces
    features, labels = with_pieces(labels, inputs, pieces, np.random.default_rng(0),
                                   min_cable_um=minimum)
    model, acc = fit_model([features], [labels], organelles=not inputs.lacking,
                           info={"labels": str(labels_path), "min_cable_um": str(minimum),
                                 "pieces_per_cell": str(pieces)})
    return model.save(Path(out) if out else workdir / "models" / "celltypes.npz"), acc
