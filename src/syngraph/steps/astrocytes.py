"""Step ``astrocytes``: a per-supervoxel astrocyte probability, then the reference's splitting
rules (syconn.md §2.4) on the pruned graph.

Reads ``tables/sv.parquet``, ``tables/sv_components.parquet`` and ``tables/rag_pruned.parquet``
(step ``rag``), ``tables/sv_contacts.parquet``, ``tables/overlap.parquet`` (optional) and the
``sv`` layer. Writes::

    tables/sv_features.parquet  sv_id + the classifier features (syngraph.models.astrocyte.FEATURES)
    tables/sv_class.parquet     sv_id, astrocyte_prob (the model's final probability),
                                astrocyte_prob_local (its per-supervoxel stage), predicted
                                (prob >= cells.astrocyte_threshold), kind (neuron/astrocyte after
                                the splitting rules)

Splitting, per component of the pruned graph, with size = union bbox diagonal in nm and
``T = cells.min_cc_size_nm`` (the reference uses the same 5000 nm):

1. if no neuron-only sub-component is larger than T, the whole component is astrocyte; else if
   no astrocyte-only sub-component is larger than T, the whole component is neuron;
2. astrocyte sub-components smaller than T (tiny fragments) stay with the neuron;
3. neuron sub-components smaller than T once the astrocyte supervoxels are removed (orphans) go
   to the astrocytes.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from syngraph.bbox import BBox
from syngraph.config import ProjectConfig, load_config
from syngraph.engine import (
    Block,
    Compute,
    block_grid,
    read_task_tables,
    run_tasks,
    write_table_atomic,
)
from syngraph.graph import connected_components, edge_array, group_diagonal_nm, induced_components
from syngraph.io.volume import open_layer
from syngraph.models.astrocyte import (
    FEATURES,
    AstrocyteClassifier,
    GraphData,
    context_features,
    load_model,
)
from syngraph.project import Project
from syngraph.steps.cells import CellsError, SvData

EDT_HALO_VX = 8


@dataclass(frozen=True)
class AstrocyteReport:
    n_sv: int
    n_predicted: int
    n_astrocyte_sv: int
    n_moved_to_neuron: int
    n_moved_to_astrocyte: int


# --------------------------------------------------------------------------- features


def block_morphology(labels: np.ndarray, core: BBox, read: BBox, voxel_size_nm: tuple[float, float, float]) -> pa.Table:
    """Per-label sums over the core of one block: voxels, boundary faces (area), EDT sum and max.

    ``labels`` covers ``read`` (``core`` grown by a halo so the distance transform sees past the
    core's faces). Boundary faces are counted between a core voxel and its +1 neighbour (each
    face once over all blocks) for both sides, against any other label or background
    (``area_nm2``) and against another label only (``contact_area_nm2``); the volume border is
    not a boundary.
    """
    import edt
    import fastremap

    renum, mapping = fastremap.renumber(labels, preserve_zero=True, in_place=False)
    n = max(mapping.values(), default=0) + 1
    vx, vy, vz = (float(v) for v in voxel_size_nm)
    dist = edt.edt(renum, anisotropy=(vx, vy, vz), black_border=False, parallel=1)
    cs = core.local_slices(read)
    c = renum[cs]
    d = dist[cs]
    count = np.bincount(c.ravel(), minlength=n)
    edt_sum = np.bincount(c.ravel(), weights=d.ravel(), minlength=n)
    edt_max = np.zeros(n)
    np.maximum.at(edt_max, c.ravel(), d.ravel())
    area = np.zeros(n)
    contact = np.zeros(n)
    face_area = (vy * vz, vx * vz, vx * vy)
    for axis in range(3):
        lo = [s.start for s in cs]
        hi = [s.stop for s in cs]
        if hi[axis] >= renum.shape[axis]:
            hi[axis] -= 1  # the volume's upper border: no neighbour
        a = renum[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        b_sl = [slice(lo[i], hi[i]) for i in range(3)]
        b_sl[axis] = slice(lo[axis] + 1, hi[axis] + 1)
        b = renum[tuple(b_sl)]
        m = a != b
        area += face_area[axis] * (np.bincount(a[m], minlength=n) + np.bincount(b[m], minlength=n))
        m &= (a != 0) & (b != 0)
        contact += face_area[axis] * (np.bincount(a[m], minlength=n) + np.bincount(b[m], minlength=n))
    inv = np.zeros(n, np.uint64)
    for orig, new in mapping.items():
        inv[new] = orig
    keep = (count > 0) & (inv != 0)
    return pa.table({
        "sv_id": inv[keep], "n_vx": count[keep].astype(np.int64), "area_nm2": area[keep],
        "contact_area_nm2": contact[keep], "edt_sum_nm": edt_sum[keep], "edt_max_nm": edt_max[keep],
    })


def morphology_task(block: Block, workdir: str) -> pa.Table:
    layer = open_layer(workdir, "sv")
    labels = layer.read(block.read)
    return block_morphology(labels, block.core, block.read, layer.info.voxel_size_nm)


def feature_matrix(
    sv: SvData,
    morph: pa.Table,
    contacts: pa.Table | None,
    overlap: pa.Table | None,
    voxel_size_nm: tuple[float, float, float],
) -> np.ndarray:
    """The ``(n_sv, len(FEATURES))`` matrix in ``sv.ids`` order (see FEATURES for definitions)."""
    t = morph.group_by("sv_id").aggregate(
        [("n_vx", "sum"), ("area_nm2", "sum"), ("contact_area_nm2", "sum"), ("edt_sum_nm", "sum"),
         ("edt_max_nm", "max")]
    )
    pos = sv.index(t.column("sv_id").to_numpy().astype(np.uint64), "sv layer labels")
    n = sv.ids.size
    nvx, area, carea, esum, emax = (np.zeros(n) for _ in range(5))
    nvx[pos] = t.column("n_vx_sum").to_numpy()
    area[pos] = t.column("area_nm2_sum").to_numpy()
    carea[pos] = t.column("contact_area_nm2_sum").to_numpy()
    esum[pos] = t.column("edt_sum_nm_sum").to_numpy()
    emax[pos] = t.column("edt_max_nm_max").to_numpy()
    vox_nm3 = float(np.prod(voxel_size_nm))
    vol_nm3 = np.maximum(nvx, 1) * vox_nm3
    radius = np.maximum(3.0 * esum / np.maximum(nvx, 1), min(voxel_size_nm) / 2)
    # cable length of a cylinder with this volume V and surface A: A^2 / (4 pi V)
    length_nm = np.maximum(area, 1.0) ** 2 / (4 * np.pi * vol_nm3)
    diag = np.sqrt((((sv.bbox_max - sv.bbox_min) * np.asarray(voxel_size_nm)) ** 2).sum(1))
    partners = np.zeros(n)
    if contacts is not None and contacts.num_rows:
        ends = np.concatenate([contacts.column("sv_a").to_numpy(), contacts.column("sv_b").to_numpy()])
        ends = ends[np.isin(ends, sv.ids)]
        partners = np.bincount(sv.index(ends.astype(np.uint64)), minlength=n).astype(float)
    dens = {}
    for layer in ("mi", "vc"):
        d = np.zeros(n)
        if overlap is not None and overlap.num_rows:
            lay = np.asarray(overlap.column("organelle_layer").to_pylist(), dtype=object) == layer
            svs = overlap.column("sv_id").to_numpy()[lay].astype(np.uint64)
            ok = np.isin(svs, sv.ids)
            vxs = overlap.column("overlap_vx").to_numpy()[lay][ok].astype(float)
            d = np.bincount(sv.index(svs[ok]), weights=vxs, minlength=n) / np.maximum(nvx, 1)
        dens[layer] = d
    feats = np.stack([
        np.log10(vol_nm3 / 1e9),
        np.log10(np.maximum(area, 1.0) / 1e6 / (vol_nm3 / 1e9)),
        np.log10(radius),
        np.log10(np.maximum(emax, 1.0)),
        np.log10(np.maximum(length_nm, 1.0) / np.maximum(diag, 1.0)),
        dens["mi"],
        dens["vc"],
        np.log10(1.0 + partners / np.maximum(length_nm / 1000.0, 1e-3)),
        carea / np.maximum(area, 1e-9),
    ], axis=1)
    assert feats.shape[1] == len(FEATURES)
    return feats


def compute_features(
    workdir: str | Path, *, config: ProjectConfig, compute: Compute | None = None,
    overwrite: bool = False, progress: bool | None = None,
) -> tuple[SvData, np.ndarray]:
    """Run the blockwise morphology pass and return ``(sv, features)``; writes sv_features."""
    project = Project(workdir)
    layer = project.layer("sv")
    sv = SvData.from_table(project.objects("sv"))
    bs = tuple(config.compute.block_size_vx)
    blocks = block_grid(layer.bbox, bs, EDT_HALO_VX)
    step_dir = project.step_dir("astrocytes")
    run_tasks(
        functools.partial(morphology_task, workdir=str(workdir)), blocks, step_dir,
        params={"block_size_vx": list(bs), "halo": EDT_HALO_VX, "shape": list(layer.shape),
                "features": list(FEATURES)},
        compute=compute, desc="astrocyte features", progress=progress, overwrite=overwrite,
    )
    morph = read_task_tables(step_dir)
    if morph is None:
        morph = pa.table({"sv_id": pa.array([], pa.uint64()), "n_vx": pa.array([], pa.int64()),
                          "area_nm2": pa.array([], pa.float64()),
                          "contact_area_nm2": pa.array([], pa.float64()), "edt_sum_nm": pa.array([], pa.float64()),
                          "edt_max_nm": pa.array([], pa.float64())})
    contacts = project.objects("sv_contacts") if project.table_path("sv_contacts").exists() else None
    overlap = project.objects("overlap") if project.table_path("overlap").exists() else None
    feats = feature_matrix(sv, morph, contacts, overlap, layer.info.voxel_size_nm)
    cols = {"sv_id": sv.ids} | {name: feats[:, i] for i, name in enumerate(FEATURES)}
    write_table_atomic(pa.table(cols), project.table_path("sv_features"))
    return sv, feats


# --------------------------------------------------------------------------- splitting


def split_astrocytes(
    ids: np.ndarray,
    edges: np.ndarray,
    astro: np.ndarray,
    bbox_min: np.ndarray,
    bbox_max: np.ndarray,
    voxel_size_nm: tuple[float, float, float],
    size_nm: float,
) -> np.ndarray:
    """The reference's splitting rules (module docstring); returns the final astrocyte flag per id.

    ``ids`` sorted uint64, ``edges`` among them, ``astro`` the predicted flag per id.
    Vectorised over all components at once (no loop over components).

    >>> ids = np.array([1, 2, 3], np.uint64); e = np.array([[1, 2], [2, 3]], np.uint64)
    >>> bmin = np.zeros((3, 3), int); bmax = np.array([[100, 1, 1], [1, 1, 1], [100, 1, 1]])
    >>> split_astrocytes(ids, e, np.array([False, True, False]), bmin, bmax, (1, 1, 1), 50).tolist()
    [False, False, False]
    """
    astro = np.asarray(astro, bool).copy()
    if ids.size == 0:
        return astro
    _, comp = connected_components(edges, ids)

    def sub_sizes(member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sub = induced_components(ids, edges, member)
        diag = np.zeros(ids.size)
        if member.any():
            diag[member] = group_diagonal_nm(sub[member], bbox_min[member], bbox_max[member], voxel_size_nm)
        return sub, diag

    def any_per_comp(flag: np.ndarray) -> np.ndarray:
        ucomp, inv = np.unique(comp, return_inverse=True)
        out = np.zeros(ucomp.size, bool)
        np.logical_or.at(out, inv, flag)
        return out[inv]

    _, ndiag = sub_sizes(~astro)
    _, gdiag = sub_sizes(astro)
    big_neuron = any_per_comp(~astro & (ndiag > size_nm))
    big_glia = any_per_comp(astro & (gdiag > size_nm))
    all_glia = ~big_neuron
    all_neuron = big_neuron & ~big_glia
    mixed = ~all_glia & ~all_neuron
    # rule 2: tiny astrocyte fragments stay with the neuron
    astro2 = astro & ~(mixed & (gdiag < size_nm))
    # rule 3: neuron orphans (small once astrocyte svs are removed) go to the astrocytes
    _, ndiag2 = sub_sizes(~astro2)
    astro3 = astro2 | (mixed & ~astro2 & (ndiag2 < size_nm))
    return np.where(all_glia, True, np.where(all_neuron, False, astro3))


# --------------------------------------------------------------------------- step


def run_astrocytes(
    workdir: str | Path,
    *,
    config: ProjectConfig | None = None,
    compute: Compute | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    classifier: AstrocyteClassifier | None = None,
) -> AstrocyteReport:
    """Features, probabilities and splitting; writes ``sv_features`` and ``sv_class``."""
    workdir = Path(workdir)
    cfg = config or load_config(workdir)
    compute = compute or Compute.from_config(cfg.compute)
    project = Project(workdir)
    for name, step in (("sv", "init"), ("sv_components", "rag"), ("rag_pruned", "rag")):
        if not project.table_path(name).exists():
            raise CellsError(f"{project.table_path(name)} is missing; run `syngraph run {step}` first")
    model = classifier or load_model(cfg.cells.astrocyte_model)
    sv, feats = compute_features(workdir, config=cfg, compute=compute, overwrite=overwrite, progress=progress)
    edges = edge_array(project.objects("rag_pruned"))
    local = np.asarray(model.predict(feats), np.float64)
    prob = local
    if hasattr(model, "refine"):
        contacts, area = _contacts(project)
        prob = np.asarray(model.refine(feats, context_features(sv.ids, local, edges, contacts, area)), np.float64)
    predicted = prob >= cfg.cells.astrocyte_threshold
    comps = project.objects("sv_components")
    kept_ids = comps.column("sv_id").to_numpy()[comps.column("kept").to_numpy(zero_copy_only=False)].astype(np.uint64)
    kpos = sv.index(kept_ids)
    vs = tuple(project.layer("sv").info.voxel_size_nm)
    final = predicted.copy()
    final[kpos] = split_astrocytes(
        kept_ids, edges, predicted[kpos], sv.bbox_min[kpos], sv.bbox_max[kpos], vs,  # type: ignore[arg-type]
        cfg.cells.min_cc_size_nm,
    )
    kind = np.where(final, "astrocyte", "neuron")
    write_table_atomic(
        pa.table({"sv_id": sv.ids, "astrocyte_prob": prob, "astrocyte_prob_local": local,
                  "predicted": predicted, "kind": kind.tolist()}),
        project.table_path("sv_class"),
        {"astrocyte_threshold": cfg.cells.astrocyte_threshold},
    )
    return AstrocyteReport(
        n_sv=int(sv.ids.size), n_predicted=int(predicted.sum()), n_astrocyte_sv=int(final.sum()),
        n_moved_to_neuron=int((predicted & ~final).sum()), n_moved_to_astrocyte=int((~predicted & final).sum()),
    )


def train_astrocytes(
    workdir: str | Path,
    labels_table_path: str | Path,
    *,
    out: str | Path | None = None,
    config: ProjectConfig | None = None,
    compute: Compute | None = None,
    progress: bool | None = None,
    folds: int = 5,
) -> tuple[Path, float]:
    """Fit the astrocyte model on labelled supervoxels and report k-fold CV accuracy.

    ``labels_table_path``: ``.parquet``/``.csv`` with ``sv_id`` and either ``is_astrocyte``
    (bool/0-1) or ``type`` (``astrocyte`` vs anything else; the demo's ``gt/sv_to_cell`` joined
    with ``gt/cells`` gives it). Features come from ``tables/sv_features.parquet`` (computed if
    missing). Writes ``out`` (default ``<wd>/models/astrocyte.npz``); returns ``(path, cv_acc)``.
    """
    from syngraph.models.astrocyte import cross_validate_context, fit_context_model

    workdir = Path(workdir)
    cfg = config or load_config(workdir)
    compute = compute or Compute.from_config(cfg.compute)
    ids, y = read_labels(labels_table_path)
    data = graph_data(workdir, ids, y, cfg, compute, progress, source=str(labels_table_path))
    model = fit_context_model([data], folds)
    acc = cross_validate_context([data], folds)[0]
    model = type(model)(model.local, dataclasses.replace(model.context, cv_accuracy=acc))
    path = Path(out) if out is not None else Project(workdir).workdir / "models" / "astrocyte.npz"
    model.save(path)
    return path, acc


def _contacts(project: Project) -> tuple[np.ndarray, np.ndarray]:
    if not project.table_path("sv_contacts").exists():
        return np.zeros((0, 2), np.uint64), np.zeros(0)
    t = project.objects("sv_contacts")
    return edge_array(t), t.column("contact_area_nm2").to_numpy().astype(np.float64)


def graph_data(
    workdir: str | Path, ids: np.ndarray, y: np.ndarray, cfg: ProjectConfig, compute: Compute | None,
    progress: bool | None = None, source: str = "labels",
) -> GraphData:
    """Features, pruned graph and contacts of a working directory, with labels ``y`` for the
    sorted supervoxel ``ids`` (training data for :func:`fit_context_model`)."""
    project = Project(workdir)
    if not project.table_path("rag_pruned").exists():
        raise CellsError(f"{project.table_path('rag_pruned')} is missing; run `syngraph run rag` first")
    x_ids, x = load_features(workdir, cfg, compute, progress)
    pos = np.minimum(np.searchsorted(x_ids, ids), max(x_ids.size - 1, 0))
    ok = x_ids[pos] == ids if x_ids.size else np.zeros(ids.size, bool)
    if not ok.all():
        raise CellsError(
            f"{source}: {int((~ok).sum())} labelled sv ids are not in tables/sv.parquet "
            f"(e.g. {ids[~ok][:5].tolist()}); label supervoxels of this working directory"
        )
    contacts, area = _contacts(project)
    return GraphData(x_ids, x, edge_array(project.objects("rag_pruned")), contacts, area, pos, np.asarray(y, np.float64))


def load_features(workdir: str | Path, cfg: ProjectConfig, compute: Compute | None, progress: bool | None) -> tuple[np.ndarray, np.ndarray]:
    project = Project(workdir)
    if not project.table_path("sv_features").exists():
        compute_features(workdir, config=cfg, compute=compute, progress=progress)
    t = project.objects("sv_features").sort_by("sv_id")
    return t.column("sv_id").to_numpy().astype(np.uint64), np.stack([t.column(f).to_numpy() for f in FEATURES], 1)


def read_labels(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(sv_ids sorted, is_astrocyte 0/1)`` from a labels table (see :func:`train_astrocytes`)."""
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(p)
    else:
        import pyarrow.csv as pcsv

        t = pcsv.read_csv(p)
    if "sv_id" not in t.column_names or not ({"is_astrocyte", "type"} & set(t.column_names)):
        raise CellsError(
            f"{p}: columns {t.column_names}; a labels table needs sv_id and is_astrocyte (0/1) or type"
        )
    ids = t.column("sv_id").to_numpy().astype(np.uint64)
    if "is_astrocyte" in t.column_names:
        y = np.asarray(t.column("is_astrocyte").to_pylist(), dtype=float)
    else:
        y = (np.asarray(t.column("type").to_pylist(), dtype=object) == "astrocyte").astype(float)
    order = np.argsort(ids)
    return ids[order], y[order]
