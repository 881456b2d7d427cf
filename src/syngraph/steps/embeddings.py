"""Step ``embeddings``: a learned 10-d vector per skeleton node (``latent_morph``) and per cell.

Top to bottom:

1. :func:`node_features`: every cell's skeleton-context features, the compartment step's node
   features (path-window radii, branch order, terminal branches, cable density, myelin; plus
   organelle densities when the volume has mi / vc / sj maps);
2. the node encoder (:mod:`syngraph.models.embeddings`, numpy inference, no torch needed) and
   the shared domain check of its inputs (:mod:`syngraph.models.domain`; a warning past the
   threshold);
3. the cell vector: the cell encoder on the celltypes step's cell features and the
   cable-weighted mean of the cell's node vectors (that mean itself for a file without a
   cell encoder), unit length;
4. ``tables/embeddings_nodes.parquet`` (cell_id, node_id, x_nm, y_nm, z_nm, e0..e9) and
   ``tables/embeddings_cells.parquet`` (cell_id, n_nodes, e0..e9) (docs/celltypes.md).

``syngraph train embeddings`` fits the node encoder and then the cell encoder (two random
connected pieces of a cell as the two views) without labels (needs PyTorch) and stores the
reference bank: the cell vectors and types of the labelled cells of its working directories
(a label table, or the typed cells of a celltypes run).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from syngraph.config import load_config, project_path
from syngraph.engine import Compute, write_table_atomic
from syngraph.errors import InputError, StepOrderError
from syngraph.models.compartments import ORGANELLE_FEATURES, SHAPE_FEATURES
from syngraph.models.domain import DomainWarning
from syngraph.models.embeddings import (
    DIM,
    POSITIVE_NM,
    Encoder,
    fit_encoder,
    load_encoders,
    save_encoders,
)
from syngraph.models.files import load_model_file

if TYPE_CHECKING:
    from syngraph.steps.celltypes import CellInputs

STEP = "embeddings"
COLUMNS = tuple(f"e{i}" for i in range(DIM))
VIEW_SHARE = (0.4, 0.9)  # the cell encoder's views: pieces with this share of the cell's cable
VIEW_MIN_CABLE_UM = 2.0  # cells the cell encoder trains on
VIEW_PIECES = 8
CELL_STEPS = 300  # few cells per volume: longer training overfits them (docs/celltypes.md)



def node_features(workdir: Path) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Node table columns (cell_id, node_id, x_nm, y_nm, z_nm, cable_nm), the (n, f) features
    (shape features, + organelle features when the volume has them) and the features lacking."""
    from syngraph import skeleton_io
    from syngraph.steps.compartments.features import Tree
    from syngraph.steps.compartments.run import cell_features, has_organelles, load_organelles

    if not (workdir / "tables" / "compartments_nodes.parquet").exists():
        raise StepOrderError(f"{workdir / 'tables' / 'compartments_nodes.parquet'} does not exist: run "
                             f"`syngraph run compartments` first")
    ids = skeleton_io.cell_ids(workdir).astype(np.uint64)
    orgs_on = has_organelles(workdir)
    voxel = np.asarray(load_config(workdir).voxel_size_nm, np.float64)
    orgs = load_organelles(workdir, ids, voxel) if orgs_on else {}
    sk = pq.read_table(workdir / "tables" / "skeletons.parquet").to_pandas().sort_values(["neuron", "node_id"])
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("cell_id", "node_id", "x_nm", "y_nm", "z_nm", "cable_nm")}
    xs = []
    for cid, g in sk.groupby("neuron", sort=True):
        xyz = g[["x", "y", "z"]].to_numpy(np.float64)
        tree = Tree(xyz, g["parent_id"].to_numpy(np.int64), g["radius"].to_numpy(np.float64))
        myelin = g["myelin"].to_numpy() if "myelin" in g else None
        xs.append(cell_features(tree, myelin, orgs.get(int(cid), {}) if orgs_on else None))
        for k, v in (("cell_id", np.full(len(g), cid, np.uint64)), ("node_id", g["node_id"].to_numpy()),
                     ("x_nm", xyz[:, 0]), ("y_nm", xyz[:, 1]), ("z_nm", xyz[:, 2]),
                     ("cable_nm", tree.node_cable_nm())):
            cols[k].append(v)
    out = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    nf = len(SHAPE_FEATURES) + (len(ORGANELLE_FEATURES) if orgs_on else 0)
    x = np.concatenate(xs) if xs else np.zeros((0, nf))
    return out, x, [] if orgs_on else list(ORGANELLE_FEATURES)


def cell_vectors(cell_id: np.ndarray, weight: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell ids, node counts, unit vectors): the weighted mean of each cell's node vectors."""
    ids, inv, counts = np.unique(cell_id, return_inverse=True, return_counts=True)
    w = np.maximum(np.asarray(weight, np.float64), 1e-9)
    acc = np.zeros((len(ids), z.shape[1]))
    np.add.at(acc, inv, z * w[:, None])
    return ids, counts, acc / np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-12)


def cell_descriptor_names(variant: str) -> tuple[str, ...]:
    """The cell encoder's inputs: the celltypes step's features and the pooled node vector."""
    from syngraph.models.celltypes import feature_names

    return feature_names(variant) + tuple(f"pooled_{c}" for c in COLUMNS)


def cell_descriptors(nodes: dict[str, np.ndarray], z: np.ndarray, features: pd.DataFrame,
                     names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell ids, node counts, (cells, len(names) + DIM)): the cell encoder's input, each cell's
    ``features`` (index cell_id) ``names`` and its pooled node vector (:func:`cell_vectors`)."""
    ids, counts, pooled = cell_vectors(nodes["cell_id"], nodes["cable_nm"], z)
    return ids, counts, np.c_[features.reindex(ids)[names].to_numpy(np.float64), pooled]


def cell_embedding(enc: Encoder, nodes: dict[str, np.ndarray], z: np.ndarray,
                   features: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell ids, node counts, unit vectors): the cell encoder on each cell's ``features`` (the
    celltypes step's, index cell_id) and its pooled node vector; the pooled vector itself for
    an encoder file without a cell encoder."""
    if enc.cell is None:
        return cell_vectors(nodes["cell_id"], nodes["cable_nm"], z)
    names = list(enc.cell.feature_names[:-DIM])
    missing = [] if features is None else [n for n in names if n not in features]
    if features is None or missing:
        raise InputError(f"embeddings: the cell encoder reads the celltypes step's features "
                         f"{missing or names}; run `syngraph run celltypes` first")
    ids, counts, x = cell_descriptors(nodes, z, features, names)
    return ids, counts, enc.cell.embed(x)


def _celltype_features(workdir: Path) -> pd.DataFrame | None:
    path = workdir / "tables" / "celltypes.parquet"
    if not path.exists():
        return None
    t = pq.read_table(path).to_pandas()
    return t.set_index(t["cell_id"].to_numpy().astype(np.uint64))


class ViewCut(NamedTuple):
    """What :func:`cell_views` draws once for every encoder variant: the cells cut (ids, sorted),
    ``per_cell`` random pieces of each, the volume's cell features and the pieces' (piece id
    order), the piece order that groups them by cell, each piece node's piece id and its row in
    the volume's node table."""

    keep: np.ndarray
    per_cell: int
    whole: pd.DataFrame
    pieces: pd.DataFrame
    by_cell: np.ndarray
    piece_id: np.ndarray
    at: np.ndarray


def cut_views(inputs: CellInputs, feats: pd.DataFrame, nodes: dict[str, np.ndarray], pieces: int,
              rng: np.random.Generator, min_cable_um: float = VIEW_MIN_CABLE_UM) -> ViewCut:
    """``pieces`` random connected pieces (:data:`VIEW_SHARE` of its cable) of every cell of
    ``inputs`` (:class:`syngraph.steps.celltypes.CellInputs`, its features ``feats``) with >=
    ``min_cable_um``, located in ``nodes`` (the volume's node table)."""
    from syngraph.steps.celltypes_pieces import SOURCE, piece_features, random_pieces

    keep = feats.index[feats["cable_um"].to_numpy() >= min_cable_um].to_numpy()
    if not len(keep):
        none = np.zeros(0, np.int64)
        return ViewCut(keep, pieces, feats.iloc[:0], feats.iloc[:0], none, none.astype(np.uint64), none)
    cut = random_pieces(inputs.nodes, pieces, *VIEW_SHARE, rng, keep)
    pf = piece_features(inputs, cut).sort_index()
    row = pd.Series(np.arange(len(nodes["cell_id"])),
                    index=pd.MultiIndex.from_arrays([nodes["cell_id"].astype(np.uint64), nodes["node_id"]]))
    pn = cut.nodes
    at = row.reindex(pd.MultiIndex.from_arrays([cut.source.reindex(pn["cell_id"].to_numpy()).to_numpy(),
                                                pn["source_node_id"].to_numpy()])).to_numpy()
    order = np.searchsorted(keep, pf[SOURCE].to_numpy())
    if not np.all(np.bincount(order, minlength=len(keep)) == pieces):
        raise ValueError("every cell needs its pieces")
    return ViewCut(keep, pieces, feats, pf, np.argsort(order, kind="stable"), pn["cell_id"].to_numpy(), at)


def views_of(cut: ViewCut, nodes: dict[str, np.ndarray], z: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """(cells, pieces + 1, f): the cell encoder's inputs (``names``) for the whole cells and the
    pieces of ``cut``; ``nodes``, ``z``: the volume's node table and node vectors."""
    if not len(cut.keep):
        return np.zeros((0, cut.per_cell + 1, len(names)))
    cols = list(names[:-DIM])
    piece_nodes = {"cell_id": cut.piece_id, "cable_nm": nodes["cable_nm"][cut.at]}
    _, _, piece_x = cell_descriptors(piece_nodes, z[cut.at], cut.pieces, cols)
    ids, _, whole_x = cell_descriptors(nodes, z, cut.whole, cols)
    whole_x = whole_x[np.searchsorted(ids, cut.keep)]
    return np.concatenate([whole_x[:, None], piece_x[cut.by_cell].reshape(len(cut.keep), cut.per_cell, -1)], 1)


def cell_views(inputs: CellInputs, feats: pd.DataFrame, nodes: dict[str, np.ndarray], z: np.ndarray,
               names: tuple[str, ...], pieces: int, rng: np.random.Generator,
               min_cable_um: float = VIEW_MIN_CABLE_UM) -> np.ndarray:
    """(cells, pieces + 1, f): :func:`views_of` the pieces :func:`cut_views` draws."""
    return views_of(cut_views(inputs, feats, nodes, pieces, rng, min_cable_um), nodes, z, names)


def _encoder(path: str | None, organelles: bool) -> tuple[str, Encoder]:
    try:
        encoders, _ = load_model_file(load_encoders, path, "embeddings.model")
    except ImportError as e:  # safetensors missing
        raise InputError(f"embeddings.model: {e}") from None
    want = "full" if organelles and "full" in encoders else "shape"
    if want not in encoders:
        raise InputError("[embeddings] model has no labels-only ('shape') encoder and the volume has no "
                         "mi/vc/sj maps: retrain with `syngraph train embeddings`")
    return want, encoders[want]


def run_embeddings(
    workdir: str | Path,
    *,
    compute: Compute | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run the step; writes ``tables/embeddings_nodes.parquet`` and ``tables/embeddings_cells.parquet``."""
    workdir = Path(workdir)
    p = load_config(workdir).embeddings
    nodes, x, lacking = node_features(workdir)
    variant, enc = _encoder(str(project_path(workdir, p.model)) if p.model else None, not lacking)
    domain = enc.domain.distance(x) if enc.domain is not None and len(x) else None
    notes = []
    if domain is not None and not domain.in_domain:
        notes.append(f"embeddings: the node features lie outside the encoder's training data: {domain.summary()}; "
                     f"the vectors may not mean what they mean on the training tissue; train on this volume "
                     f"with `syngraph train embeddings -w {workdir}` and set embeddings.model")
        warnings.warn(notes[-1], DomainWarning, stacklevel=2)
    z = enc.embed(x).astype(np.float32)
    node_cols = {k: pa.array(v) for k, v in nodes.items() if k != "cable_nm"}
    write_table_atomic(pa.table(node_cols | {c: z[:, i] for i, c in enumerate(COLUMNS)}),
                       workdir / "tables" / "embeddings_nodes.parquet",
                       metadata={"syngraph:units": "nm", "syngraph:model_variant": variant})
    ids, counts, cz = cell_embedding(enc, nodes, z, _celltype_features(workdir) if enc.cell is not None else None)
    bank = 0 if enc.bank_z is None else len(enc.bank_z)
    write_table_atomic(pa.table({"cell_id": pa.array(ids.astype(np.uint64)), "n_nodes": pa.array(counts),
                                 **{c: cz[:, i].astype(np.float32) for i, c in enumerate(COLUMNS)}}),
                       workdir / "tables" / "embeddings_cells.parquet",
                       metadata={"syngraph:model_variant": variant})
    return {"cells": len(ids), "nodes": len(z), "model_variant": variant, "features_lacking": lacking,
            "bank_cells": bank,
            "domain_distance": None if domain is None else domain.distance,
            "domain_threshold": None if domain is None else domain.threshold,
            "in_domain": None if domain is None else domain.in_domain, "warnings": notes,
            "summary": f"{len(ids)} cell and {len(z)} node vectors ({variant} encoder)"
                       + ("" if domain is None else f"; domain distance {domain.distance:.2f} / {domain.threshold:.2f}")}


def positives(cell_id: np.ndarray, xyz_nm: np.ndarray, seed: int = 0) -> np.ndarray:
    """For each node, a random other node of the same cell within POSITIVE_NM (itself if none)."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    k = min(16, len(xyz_nm))
    d, nb = cKDTree(xyz_nm).query(xyz_nm, k=k)
    nb = nb.reshape(len(xyz_nm), k)
    ok = (d.reshape(len(xyz_nm), k) <= POSITIVE_NM) & (cell_id[nb] == cell_id[:, None])
    ok[:, 0] = False
    out = np.arange(len(xyz_nm))
    for i in np.flatnonzero(ok.any(1)):
        out[i] = nb[i, rng.choice(np.flatnonzero(ok[i]))]
    return out


def bank_labels(workdir: Path, labels: pd.Series | None = None) -> pd.Series:
    """cell_id -> type of the cells of ``workdir`` that go into the reference bank: ``labels``
    (a label table's), else the typed cells of the celltypes run (empty without one)."""
    if labels is None:
        path = workdir / "tables" / "celltypes.parquet"
        if not path.exists():
            return pd.Series(dtype=str)
        t = pq.read_table(path, columns=["cell_id", "celltype", "typed"]).to_pandas()
        t = t[t["typed"].to_numpy(bool)]
        labels = pd.Series(t["celltype"].to_numpy().astype(str), index=t["cell_id"].to_numpy().astype(np.uint64))
    labels = labels.copy()
    labels.index = labels.index.to_numpy().astype(np.uint64)
    return labels


class Volume(NamedTuple):
    """A training volume: :func:`node_features`'s node table, features and features lacking, the
    celltypes step's inputs (:class:`syngraph.steps.celltypes.CellInputs`) and its cell features."""

    nodes: dict[str, np.ndarray]
    x: np.ndarray
    lacking: list[str]
    inputs: CellInputs
    features: pd.DataFrame


def load_volume(workdir: Path) -> Volume:
    """The :class:`Volume` of a working directory (its cell inputs read once)."""
    from syngraph.steps.celltypes import load_cell_inputs

    nodes, x, lacking = node_features(workdir)
    inputs = load_cell_inputs(workdir)
    return Volume(nodes, x, lacking, inputs, inputs.features())


def node_vectors(encoders: dict[str, Encoder], volumes: list[Volume]) -> dict[str, list[np.ndarray]]:
    """Variant -> the node vectors of every volume (:func:`load_volume`) under its node encoder."""
    return {v: [enc.embed(vol.x[:, :len(enc.feature_names)]) for vol in volumes] for v, enc in encoders.items()}


def with_bank(encoders: dict[str, Encoder], volumes: list[Volume], labels: list[pd.Series],
              min_cable_um: float, node_z: dict[str, list[np.ndarray]]) -> dict[str, Encoder]:
    """The encoders with their reference banks: the cell vectors (as the step computes them) and
    types of every labelled cell with >= ``min_cable_um`` of cable in ``volumes``
    (:func:`load_volume`); ``node_z``: their :func:`node_vectors`."""
    out = {}
    for v, enc in encoders.items():
        zs, ys = [], []
        for (nodes, x, _, _, feats), lab, z in zip(volumes, labels, node_z[v], strict=True):
            if not len(lab) or not len(x):
                continue
            ids, _, cz = cell_embedding(enc, nodes, z, feats)
            cable_um = np.bincount(np.searchsorted(ids, nodes["cell_id"]), nodes["cable_nm"], len(ids)) / 1000
            keep = (cable_um >= min_cable_um) & np.isin(ids, lab.index.to_numpy())
            zs.append(cz[keep])
            ys.extend(lab.reindex(ids[keep]).astype(str).tolist())
        out[v] = dataclasses.replace(enc, bank_z=np.concatenate(zs) if zs else None, bank_type=tuple(ys))
    return out


def bank_of_config(encoders: dict[str, Encoder], volumes: list[Volume], labels: list[pd.Series], workdir: Path,
                   node_z: dict[str, list[np.ndarray]]) -> tuple[dict[str, Encoder], dict[str, str]]:
    """:func:`with_bank` over ``celltypes.min_cable_um`` of ``workdir``'s syngraph.toml, and the
    training-record keys that describe the bank."""
    minimum = load_config(Path(workdir)).celltypes.min_cable_um
    encoders = with_bank(encoders, volumes, labels, minimum, node_z)
    return encoders, {"bank_min_cable_um": str(minimum),
                      **{f"bank_cells_{v}": str(len(e.bank_type)) for v, e in encoders.items()}}


def fit_cell_encoders(encoders: dict[str, Encoder], volumes: list[Volume], steps: int,
                      pieces: int = VIEW_PIECES, seed: int = 0,
                      *, node_z: dict[str, list[np.ndarray]]) -> dict[str, Encoder]:
    """The node encoders with a cell encoder each, trained without labels on random pieces of
    the cells of ``volumes`` (:func:`cell_views`; the same pieces for every variant);
    ``node_z``: their :func:`node_vectors`."""
    from syngraph.models.embeddings import fit_cell_encoder

    rng = np.random.default_rng(seed)
    cuts = [cut_views(vol.inputs, vol.features, vol.nodes, pieces, rng) for vol in volumes]  # for every variant
    out = {}
    for v, enc in encoders.items():
        names = cell_descriptor_names(v)
        views = np.concatenate([views_of(cut, vol.nodes, z, names)
                                for cut, vol, z in zip(cuts, volumes, node_z[v], strict=True)])
        if len(views) < 8:
            raise InputError(f"training the cell encoder needs >= 8 cells with >= {VIEW_MIN_CABLE_UM} um of "
                             f"cable in all; got {len(views)}")
        cell, _ = fit_cell_encoder(views, names, steps=steps, seed=seed)
        out[v] = dataclasses.replace(enc, cell=cell)
    return out


def train_embeddings(workdirs: list[Path], out: Path, steps: int = 1500,
                     labels: list[pd.Series | None] | None = None,
                     cell_steps: int = CELL_STEPS) -> tuple[Path, dict[str, float], int]:
    """``syngraph train embeddings``: fit the node encoder (and its domain) on every node of
    ``workdirs`` (no labels), then the cell encoder on random pieces of their cells (no labels);
    ``full`` too when every working directory has organelles. The reference bank holds the
    cells of ``labels`` (one per working directory; None: its typed celltypes run, if any) over
    ``celltypes.min_cable_um``. Returns the path, the final node losses and the number of cells
    in the (``shape``) reference bank."""
    xs, ps, base, lacking_any, vols = [], [], 0, False, []
    for wd in workdirs:
        vol = load_volume(Path(wd))
        nodes, x = vol.nodes, vol.x
        lacking_any |= bool(vol.lacking)
        xs.append(x)
        vols.append(vol)
        ps.append(positives(nodes["cell_id"], np.c_[nodes["x_nm"], nodes["y_nm"], nodes["z_nm"]]) + base)
        base += len(x)
    if base < 100:
        raise InputError(f"training the node encoder needs skeletons with >= 100 nodes in all; got {base}")
    x = np.concatenate([a[:, :len(SHAPE_FEATURES)] for a in xs]) if lacking_any else np.concatenate(xs)
    pos = np.concatenate(ps)
    encoders, losses = {}, {}
    for v in (("shape",) if lacking_any else ("full", "shape")):
        names = SHAPE_FEATURES + (ORGANELLE_FEATURES if v == "full" else ())
        try:
            encoders[v], loss = fit_encoder(x[:, :len(names)], pos, names, steps=steps)
        except ImportError as e:
            raise InputError(str(e)) from None
        losses[v] = loss[-1]
    node_z = node_vectors(encoders, vols)  # once: the cell encoder and the bank read the same vectors
    encoders = fit_cell_encoders(encoders, vols, cell_steps, node_z=node_z)
    labels = [bank_labels(Path(wd), lab) for wd, lab in zip(workdirs, labels or [None] * len(workdirs), strict=True)]
    encoders, bank_info = bank_of_config(encoders, vols, labels, workdirs[0], node_z)
    info = {"workdirs": " ".join(Path(w).name for w in workdirs), "nodes": str(base), "steps": str(steps),
            "cell_steps": str(cell_steps),
            **{f"final_loss_{v}": f"{loss:.4f}" for v, loss in losses.items()}, **bank_info}
    return save_encoders(out, encoders, info), losses, len(encoders["shape"].bank_type)
