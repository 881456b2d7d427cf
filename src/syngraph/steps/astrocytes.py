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
import warnings
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
from syngraph.io.volume import Layer, open_layer
from syngraph.models.astrocyte import (
    DEFAULT_MODEL_PATH,
    FEATURES,
    LEARNERS,
    AdaptedStage,
    AstrocyteClassifier,
    ContextModel,
    GraphData,
    context_features,
    cross_validate_context,
    fit_context_model,
    load_domain,
    load_model,
)
from syngraph.models.domain import (
    DOMAIN_JSON,
    Domain,
    DomainReport,
    DomainWarning,
    held_back,
)
from syngraph.models.files import load_model_file
from syngraph.project import Project
from syngraph.steps.cells import CellsError, SvData
from syngraph.steps.domain import write_domain_json
from syngraph.steps.label_runs import (
    Runs,
    coordinate_moments,
    label_runs,
    run_max,
    run_sums,
    slice_hull_points,
)

EDT_HALO_VX = 8
# block_morphology's output; 2: a label met only beyond a core's upper faces keeps that area
MORPHOLOGY_VERSION = 2


@dataclass(frozen=True)
class AstrocyteReport:
    n_sv: int
    n_predicted: int
    n_astrocyte_sv: int
    n_moved_to_neuron: int
    n_moved_to_astrocyte: int
    domain_distance: float | None = None  # median per-feature KS (syngraph.models.domain); None: no stored domain
    domain_threshold: float | None = None
    held_back: bool = False  # outside the training domain: every supervoxel kept as neuron (no split)
    warnings: list[str] = dataclasses.field(default_factory=list)
    summary: str = ""


# --------------------------------------------------------------------------- features


def _memory_order(a: np.ndarray, cs: tuple[slice, ...]) -> tuple[np.ndarray, list[int], tuple[slice, ...]]:
    """``a`` transposed to memory order (slowest axis first, so runs follow the fastest axis), the
    permutation and the slices ``cs`` in that order."""
    perm = sorted(range(3), key=lambda k: -a.strides[k])
    return a.transpose(perm), perm, tuple(cs[k] for k in perm)


def block_morphology(labels: np.ndarray, core: BBox, read: BBox, voxel_size_nm: tuple[float, float, float]) -> pa.Table:
    """Per-label sums over the core of one block: voxels, boundary faces (area), EDT sum and max.

    ``labels`` covers ``read`` (``core`` grown by a halo so the distance transform sees past the
    core's faces). Boundary faces are counted between a core voxel and its +1 neighbour (each
    face once over all blocks) for both sides, against any other label or background
    (``area_nm2``) and against another label only (``contact_area_nm2``); the volume border is
    not a boundary. Shape: first and second moments of the voxel centres in nm (``m_x`` ...
    ``m_yz``, global coordinates, so they sum over blocks) and ``hull_vx``, candidate
    convex-hull vertices (global voxel indices, flat xyz) of the label's voxels in the core: the
    hull of the union of blocks is the hull of these points (see :func:`hull_volume_nm3`). A
    label met only beyond the core's upper faces gets a row for those faces' area (``n_vx`` 0).

    Sums, maxima and moments are taken over runs of equal labels along the array's fastest
    axis (:mod:`syngraph.steps.label_runs`), not over voxels.
    """
    import edt
    import fastremap

    renum, mapping = fastremap.renumber(labels, preserve_zero=True, in_place=False)
    n = max(mapping.values(), default=0) + 1
    vx, vy, vz = (float(v) for v in voxel_size_nm)
    dist = edt.edt(renum, anisotropy=(vx, vy, vz), black_border=False, parallel=1)
    lab, perm, cs_t = _memory_order(renum, core.local_slices(read))
    area, contact = _face_areas(lab, cs_t, (vx, vy, vz), n, perm)
    runs = label_runs(lab[cs_t])
    count = np.bincount(runs.label, weights=runs.length, minlength=n).astype(np.int64)
    d = np.ascontiguousarray(dist.transpose(perm)[cs_t])  # one float32 copy for sums and maxima (float64 sums)
    edt_sum = run_sums(runs, d, n)
    edt_max = run_max(runs, d, n)
    inv = np.zeros(n, np.uint64)
    for orig, new in mapping.items():
        inv[new] = orig
    keep = ((count > 0) | (area > 0)) & (inv != 0)  # area: a label met only at the core's +1 faces
    moments = _block_moments(runs, np.asarray(core.start), (vx, vy, vz), n, perm)
    offsets, vertices = _block_hull_vertices(runs, np.asarray(core.start), perm, np.flatnonzero(keep))
    return pa.table({
        "sv_id": inv[keep], "n_vx": count[keep], "area_nm2": area[keep],
        "contact_area_nm2": contact[keep], "edt_sum_nm": edt_sum[keep], "edt_max_nm": edt_max[keep],
        **{k: v[keep] for k, v in moments.items()},
        "hull_vx": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(vertices, pa.int64())),
    })


def _face_areas(lab: np.ndarray, cs: tuple[slice, ...], vs: tuple[float, float, float], n: int,
                perm: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per label (``n``): face area (nm2) between each core voxel and its +1 neighbour where the
    labels differ, for both sides, against anything (area) and against another label (contact).

    ``lab`` and ``cs`` (the core) are in memory order: array axis ``k`` is XYZ axis ``perm[k]``.
    """
    area = np.zeros(n)
    contact = np.zeros(n)
    face_area = (vs[1] * vs[2], vs[0] * vs[2], vs[0] * vs[1])
    for xyz in range(3):
        axis = perm.index(xyz)
        lo = [s.start for s in cs]
        hi = [s.stop for s in cs]
        if hi[axis] >= lab.shape[axis]:
            hi[axis] -= 1  # the volume's upper border: no neighbour
        a = lab[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        b_sl = [slice(lo[i], hi[i]) for i in range(3)]
        b_sl[axis] = slice(lo[axis] + 1, hi[axis] + 1)
        b = lab[tuple(b_sl)]
        m = a != b
        a, b = a[m], b[m]  # only the faces between different labels
        area += face_area[xyz] * (np.bincount(a, minlength=n) + np.bincount(b, minlength=n))
        m = (a != 0) & (b != 0)
        contact += face_area[xyz] * (np.bincount(a[m], minlength=n) + np.bincount(b[m], minlength=n))
    return area, contact


MOMENTS = ("m_x", "m_y", "m_z", "m_xx", "m_yy", "m_zz", "m_xy", "m_xz", "m_yz")
_MOMENT_AXES = ((0,), (1,), (2,), (0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))  # XYZ axes of MOMENTS


def _block_moments(runs: Runs, origin_vx: np.ndarray, vs: tuple[float, float, float], n: int,
                   perm: list[int]) -> dict[str, np.ndarray]:
    """Per label sums of x, y, z, xx, yy, zz, xy, xz, yz of voxel centres (nm, global) from the
    runs of the core transposed by ``perm`` (array axis ``k`` is XYZ axis ``perm[k]``)."""
    first, second = coordinate_moments(runs, np.asarray(origin_vx)[perm], np.asarray(vs)[perm], n)
    at = {xyz: k for k, xyz in enumerate(perm)}  # XYZ axis -> array axis
    return {name: first[:, at[ax[0]]] if len(ax) == 1 else second[:, at[ax[0]], at[ax[1]]]
            for name, ax in zip(MOMENTS, _MOMENT_AXES, strict=True)}


HULL_MIN_POINTS = 32  # candidate sets up to this size are kept as they are (no per-block hull)


def _block_hull_vertices(runs: Runs, origin_vx: np.ndarray, perm: list[int],
                         labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per label in ``labels`` (renumbered ids), points whose convex hull is the hull of its core
    voxels: ``(offsets, values)`` of a list column of flat xyz global voxel indices.

    Candidates are the vertices of the label's hull in each slice
    (:func:`~syngraph.steps.label_runs.slice_hull_points`); sets larger than
    :data:`HULL_MIN_POINTS` are cut to the vertices of their 3-D hull (flat or collinear sets
    keep every point).
    """
    from scipy.spatial import ConvexHull, QhullError

    lab, pts = slice_hull_points(runs)
    xyz = np.empty_like(pts)
    xyz[:, perm] = pts + np.asarray(origin_vx, np.int64)[perm]
    parts = []
    for a, b in zip(np.searchsorted(lab, labels, "left"), np.searchsorted(lab, labels, "right"), strict=True):
        p = xyz[a:b]
        if p.shape[0] > HULL_MIN_POINTS:
            try:
                p = p[np.sort(ConvexHull(p).vertices)]
            except QhullError:  # flat or collinear: keep every point
                pass
        parts.append(p.ravel())
    sizes = np.array([p.size for p in parts], np.int64)
    values = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return np.r_[0, np.cumsum(sizes)], values


_CORNERS = np.array([(i, j, k) for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)])


def hull_volume_nm3(vertices_vx: np.ndarray, voxel_size_nm: tuple[float, float, float]) -> float:
    """Volume of the convex hull of the voxel cubes centred at ``vertices_vx`` ((k, 3) indices).

    That hull is ``K + B``: the hull ``K`` of the centres (nm) grown by one voxel box ``B`` of
    sides ``s``, a sum of three orthogonal segments, so its volume is ``vol(K) + sum_i s_i A_i +
    sum_i<j s_i s_j W_k + s_x s_y s_z``, with ``A_i`` the area of K's shadow along axis ``i``
    (half the sum of its facets' projected areas, ``|(b - a) x (c - a)|_i / 2`` for a triangle
    ``abc``) and ``W_k`` K's extent along axis ``k``. Flat or tiny ``K`` (no 3-D hull): the hull of the cubes' corners. Per-block
    hull vertices give the exact hull of the whole label.

    >>> tetra = np.array([[0, 0, 0], [3, 0, 0], [0, 1, 0], [0, 0, 1]])  # 5 + 35 + 50 + 10 nm3:
    >>> round(hull_volume_nm3(tetra, (1.0, 2.0, 5.0)), 9)
    100.0
    """
    from scipy.spatial import ConvexHull, QhullError

    s = np.asarray(voxel_size_nm, np.float64)
    pts = np.asarray(vertices_vx, np.float64) * s
    try:
        hull = ConvexHull(pts)
    except QhullError:  # fewer than 4 points, or flat
        corners = pts[:, None, :] + _CORNERS[None] * s
        return float(ConvexHull(corners.reshape(-1, 3)).volume)
    tri = pts[hull.simplices]
    shadow = 0.25 * np.abs(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])).sum(0)
    width = np.ptp(pts, axis=0)
    return float(hull.volume + s @ shadow + s[1] * s[2] * width[0] + s[0] * s[2] * width[1]
                 + s[0] * s[1] * width[2] + s.prod())


def shape_features(moments: np.ndarray, n_vx: np.ndarray, hull_nm3: np.ndarray,
                   voxel_size_nm: tuple[float, float, float]) -> np.ndarray:
    """``(n, 3)``: solidity (volume / convex-hull volume), log10 elongation (sqrt of the first
    over the second eigenvalue of the voxel covariance) and log10 flatness (second over third).

    ``moments`` (n, 9) are the sums in :data:`MOMENTS` order.
    """
    vs = np.asarray(voxel_size_nm, np.float64)
    cnt = np.maximum(n_vx, 1)[:, None]
    mean = moments[:, :3] / cnt
    sq = moments[:, 3:6] / cnt - mean**2 + vs**2 / 12.0  # a voxel's own spread keeps it > 0
    xy, xz, yz = (moments[:, 6 + i] / cnt[:, 0] - mean[:, a] * mean[:, b]
                  for i, (a, b) in enumerate(((0, 1), (0, 2), (1, 2))))
    cov = np.zeros((moments.shape[0], 3, 3))
    cov[:, [0, 1, 2], [0, 1, 2]] = sq
    cov[:, 0, 1] = cov[:, 1, 0] = xy
    cov[:, 0, 2] = cov[:, 2, 0] = xz
    cov[:, 1, 2] = cov[:, 2, 1] = yz
    ev = np.clip(np.linalg.eigvalsh(cov)[:, ::-1], (vs**2).min() / 12.0, None)
    solidity = np.clip(np.maximum(n_vx, 1) * vs.prod() / np.maximum(hull_nm3, 1e-9), 0.0, 1.0)
    return np.stack([solidity, 0.5 * np.log10(ev[:, 0] / ev[:, 1]), 0.5 * np.log10(ev[:, 1] / ev[:, 2])], 1)


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
    t = morph.group_by("sv_id", use_threads=False).aggregate(
        [("n_vx", "sum"), ("area_nm2", "sum"), ("contact_area_nm2", "sum"), ("edt_sum_nm", "sum"),
         ("edt_max_nm", "max"), *((m, "sum") for m in MOMENTS)]
    )
    pos = sv.index(t.column("sv_id").to_numpy().astype(np.uint64), "sv layer labels")
    n = sv.ids.size
    nvx, area, carea, esum, emax = (np.zeros(n) for _ in range(5))
    nvx[pos] = t.column("n_vx_sum").to_numpy()
    area[pos] = t.column("area_nm2_sum").to_numpy()
    carea[pos] = t.column("contact_area_nm2_sum").to_numpy()
    esum[pos] = t.column("edt_sum_nm_sum").to_numpy()
    emax[pos] = t.column("edt_max_nm_max").to_numpy()
    moments = np.zeros((n, len(MOMENTS)))
    moments[pos] = np.stack([t.column(f"{m}_sum").to_numpy() for m in MOMENTS], 1)
    shape = shape_features(moments, nvx, _hull_volumes(sv, morph, voxel_size_nm), voxel_size_nm)
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
        *shape.T,
    ], axis=1)
    assert feats.shape[1] == len(FEATURES)
    return feats


def _hull_volumes(sv: SvData, morph: pa.Table, voxel_size_nm: tuple[float, float, float]) -> np.ndarray:
    """Convex-hull volume (nm3) per supervoxel in ``sv.ids`` order from the blocks' hull vertices."""
    out = np.zeros(sv.ids.size)
    if morph.num_rows == 0:
        return out
    ids = morph.column("sv_id").to_numpy().astype(np.uint64)
    hulls = morph.column("hull_vx").combine_chunks()
    offsets = hulls.offsets.to_numpy() - hulls.offsets[0].as_py()
    values = hulls.flatten().to_numpy()
    order = np.argsort(ids, kind="stable")
    starts = np.flatnonzero(np.r_[True, ids[order][1:] != ids[order][:-1]])
    for a, b in zip(starts, np.r_[starts[1:], ids.size], strict=True):
        rows = order[a:b]
        pts = np.concatenate([values[offsets[r]:offsets[r + 1]] for r in rows]).reshape(-1, 3)
        out[sv.index(ids[rows[:1]])[0]] = hull_volume_nm3(pts, voxel_size_nm)
    return out


def compute_features(
    project: Project, layer: Layer, contacts: pa.Table | None, *, config: ProjectConfig,
    compute: Compute | None = None, overwrite: bool = False, progress: bool | None = None,
) -> tuple[SvData, np.ndarray]:
    """Run the blockwise morphology pass over ``layer`` (the sv layer) and return ``(sv, features)``;
    writes sv_features. ``contacts``: the ``sv_contacts`` table (None where there is none)."""
    sv = SvData.from_table(project.objects("sv"))
    bs = tuple(config.compute.block_size_vx)
    blocks = block_grid(layer.bbox, bs, EDT_HALO_VX)
    step_dir = project.step_dir("astrocytes")
    run_tasks(
        functools.partial(morphology_task, workdir=str(project.workdir)), blocks, step_dir,
        params={"block_size_vx": list(bs), "halo": EDT_HALO_VX, "shape": list(layer.shape),
                "features": list(FEATURES), "morphology": MORPHOLOGY_VERSION},
        compute=compute, desc="astrocyte features", progress=progress, overwrite=overwrite,
    )
    morph = read_task_tables(step_dir)
    if morph is None:
        morph = pa.table({"sv_id": pa.array([], pa.uint64()), "n_vx": pa.array([], pa.int64()),
                          "area_nm2": pa.array([], pa.float64()),
                          "contact_area_nm2": pa.array([], pa.float64()), "edt_sum_nm": pa.array([], pa.float64()),
                          "edt_max_nm": pa.array([], pa.float64()),
                          **{m: pa.array([], pa.float64()) for m in MOMENTS},
                          "hull_vx": pa.array([], pa.list_(pa.int64()))})
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
    trust_model: bool = False,
) -> AstrocyteReport:
    """Features, probabilities and splitting; writes ``sv_features``, ``sv_class`` and
    ``steps/astrocytes/domain.json``.

    When the model file stores its training domain (:mod:`syngraph.models.domain`) and the
    features of the supervoxels kept by pruning lie outside it, the prediction is not used (every supervoxel stays neuron, nothing
    is split) and a :class:`DomainWarning` says how to train on this volume's labels;
    ``trust_model`` uses the prediction anyway. A ``classifier`` object may carry ``.domain``.
    """
    workdir = Path(workdir)
    cfg = config or load_config(workdir)
    compute = compute or Compute.from_config(cfg.compute)
    project = Project(workdir)
    for name, step in (("sv", "init"), ("sv_components", "rag"), ("rag_pruned", "rag")):
        if not project.table_path(name).exists():
            raise CellsError(f"{project.table_path(name)} is missing; run `syngraph run {step}` first")
    model = classifier or astrocyte_model(workdir, cfg)
    domain = getattr(classifier, "domain", None) if classifier is not None else astrocyte_domain(workdir, cfg)
    layer = project.layer("sv")
    sv_contacts = _sv_contacts(project)
    sv, feats = compute_features(project, layer, sv_contacts, config=cfg, compute=compute, overwrite=overwrite,
                                 progress=progress)
    edges = edge_array(project.objects("rag_pruned"))
    local = np.asarray(model.predict(feats), np.float64)
    prob = local
    if hasattr(model, "refine"):
        contacts, area = _contact_arrays(sv_contacts)
        prob = np.asarray(model.refine(feats, context_features(sv.ids, local, edges, contacts, area)), np.float64)
    comps = project.objects("sv_components")
    kept_ids = comps.column("sv_id").to_numpy()[comps.column("kept").to_numpy(zero_copy_only=False)].astype(np.uint64)
    kpos = sv.index(kept_ids)
    # measured on the supervoxels the prediction acts on: those kept by pruning (cells are made of them)
    inputs = model.inputs(feats) if hasattr(model, "inputs") else feats  # what the model sees (relative sizes)
    check = _domain_check(project, domain, inputs[kpos], cfg.cells.astrocyte_model, trust_model)
    held = held_back(check, trust_model)
    predicted = (prob >= cfg.cells.astrocyte_threshold) & (not held)
    vs = tuple(layer.info.voxel_size_nm)
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
        {"astrocyte_threshold": cfg.cells.astrocyte_threshold, "held_back": held},
    )
    notes = []
    if held and check is not None:
        notes.append(
            f"astrocytes: the model was not used, every supervoxel stays neuron (no split): {check.summary()}; "
            f"label a few dozen supervoxels of this volume and run `syngraph train astrocytes --labels TABLE`, "
            f"then set cells.astrocyte_model, or rerun with --trust-model to use it anyway "
            f"({DOMAIN_JSON} in steps/astrocytes)")
        warnings.warn(notes[-1], DomainWarning, stacklevel=2)
    n_final = int(final.sum())
    return AstrocyteReport(
        n_sv=int(sv.ids.size), n_predicted=int(predicted.sum()), n_astrocyte_sv=n_final,
        n_moved_to_neuron=int((predicted & ~final).sum()), n_moved_to_astrocyte=int((~predicted & final).sum()),
        domain_distance=None if check is None else check.distance,
        domain_threshold=None if check is None else check.threshold,
        held_back=held, warnings=notes,
        summary=(f"{n_final} of {sv.ids.size} supervoxels astrocyte, {sv.ids.size - n_final} neuron"
                 + (" (model held back: outside its training domain)" if held else "")
                 + ("" if check is None else f"; domain distance {check.distance:.2f} / {check.threshold:.2f}")),
    )


def _domain_check(project: Project, domain: Domain | None, feats: np.ndarray, model_path: str | None,
                  trust_model: bool) -> DomainReport | None:
    """Measure ``feats`` against the model's training domain; write ``steps/astrocytes/domain.json``."""
    report = domain.distance(feats) if domain is not None else None
    write_domain_json(project.step_dir("astrocytes"), report, str(model_path or DEFAULT_MODEL_PATH), trust_model)
    return report


MIN_BOOSTED_PER_CLASS = 50  # labelled rows per class below which `auto` trains logistic stages


def train_astrocytes(
    workdir: str | Path,
    labels_table_path: str | Path,
    *,
    out: str | Path | None = None,
    config: ProjectConfig | None = None,
    compute: Compute | None = None,
    progress: bool | None = None,
    folds: int = 5,
    learner: str = "auto",
    base: str | Path | None = None,
) -> tuple[Path, float]:
    """Fit the astrocyte model on labelled supervoxels and report k-fold CV accuracy.

    ``labels_table_path``: ``.parquet``/``.csv`` with ``sv_id`` and either ``is_astrocyte``
    (bool/0-1) or ``type`` (``astrocyte`` vs anything else; the demo's ``gt/sv_to_cell`` joined
    with ``gt/cells`` gives it). Features come from ``tables/sv_features.parquet`` (computed if
    missing). ``learner``: ``adapt`` (each stage of the two-stage model ``base``, default the
    shipped one, adapted to the labels: :func:`~syngraph.models.astrocyte.fit_adapter`),
    ``boosted`` (gradient-boosted trees), ``logistic``, or ``auto`` (adapt when ``base`` is
    given or a class has fewer than :data:`MIN_BOOSTED_PER_CLASS` labelled rows, else boosted).
    Writes ``out`` (default ``<wd>/models/astrocyte.npz``) with the domain of every supervoxel of
    the working directory (:mod:`syngraph.models.domain`); returns ``(path, cv_acc)``.
    """
    workdir = Path(workdir)
    cfg = config or load_config(workdir)
    compute = compute or Compute.from_config(cfg.compute)
    if learner not in LEARNERS + ("auto",):
        raise CellsError(f"--learner {learner!r}: use one of auto, {', '.join(LEARNERS)}")
    if base is not None and learner not in ("adapt", "auto"):
        raise CellsError(f"--base {base} with --learner {learner}: only adapt uses a base model; "
                         f"leave --base out to fit a fresh one, or use --learner adapt")
    ids, y = read_labels(labels_table_path)
    if learner == "auto":
        few = min(int((y > 0.5).sum()), int((y <= 0.5).sum())) < MIN_BOOSTED_PER_CLASS
        learner = "adapt" if few or base is not None else "boosted"
    prior = None
    if learner == "adapt":
        prior = load_model_file(load_model, base, "--base", error=CellsError, what="astrocyte model",
                                fix="give a two-stage astrocyte model file, or leave --base out to adapt the shipped one")
        if not isinstance(prior, ContextModel):
            raise CellsError(f"--base {base}: adapting needs a two-stage astrocyte model; this one has one stage")
        if isinstance(prior.local, AdaptedStage):
            raise CellsError(f"--base {base}: an adapted model; adapt the model it was adapted from instead")
    data = graph_data(workdir, ids, y, cfg, compute, progress, source=str(labels_table_path))
    model = fit_context_model([data], folds, learner, base=prior)
    acc = cross_validate_context([data], folds, learner=learner, base=prior)[0]
    model = dataclasses.replace(model, context=dataclasses.replace(model.context, cv_accuracy=acc))
    path = Path(out) if out is not None else Project(workdir).workdir / "models" / "astrocyte.npz"
    model.save(path, Domain.fit(data.features, FEATURES))  # the domain: every supervoxel of this volume
    return path, acc


def _sv_contacts(project: Project) -> pa.Table | None:
    """The ``sv_contacts`` table (step ``rag``), or None where there is none."""
    return project.objects("sv_contacts") if project.table_path("sv_contacts").exists() else None


def _contact_arrays(t: pa.Table | None) -> tuple[np.ndarray, np.ndarray]:
    """Contact pairs ``(m, 2)`` and their areas (um2) of an ``sv_contacts`` table."""
    if t is None:
        return np.zeros((0, 2), np.uint64), np.zeros(0)
    return edge_array(t), t.column("contact_area_um2").to_numpy().astype(np.float64)


def graph_data(
    workdir: str | Path, ids: np.ndarray, y: np.ndarray, cfg: ProjectConfig, compute: Compute | None,
    progress: bool | None = None, source: str = "labels",
) -> GraphData:
    """Features, pruned graph and contacts of a working directory, with labels ``y`` for the
    sorted supervoxel ``ids`` (training data for :func:`fit_context_model`)."""
    project = Project(workdir)
    if not project.table_path("rag_pruned").exists():
        raise CellsError(f"{project.table_path('rag_pruned')} is missing; run `syngraph run rag` first")
    table = _sv_contacts(project)
    x_ids, x = load_features(workdir, cfg, compute, progress, contacts=table)
    pos = np.minimum(np.searchsorted(x_ids, ids), max(x_ids.size - 1, 0))
    ok = x_ids[pos] == ids if x_ids.size else np.zeros(ids.size, bool)
    if not ok.all():
        raise CellsError(
            f"{source}: {int((~ok).sum())} labelled sv ids are not in tables/sv.parquet "
            f"(e.g. {ids[~ok][:5].tolist()}); label supervoxels of this working directory"
        )
    contacts, area = _contact_arrays(table)
    return GraphData(x_ids, x, edge_array(project.objects("rag_pruned")), contacts, area, pos, np.asarray(y, np.float64))


def astrocyte_model(workdir: str | Path, cfg: ProjectConfig) -> AstrocyteClassifier:
    """The classifier ``cells.astrocyte_model`` names (relative to the working directory), or the default."""
    from syngraph.config import project_path

    name = cfg.cells.astrocyte_model
    return load_model_file(load_model, project_path(workdir, name) if name else None, "cells.astrocyte_model")


def astrocyte_domain(workdir: str | Path, cfg: ProjectConfig):  # noqa: ANN201
    """The training-feature distribution stored with the model ``cells.astrocyte_model`` names."""
    from syngraph.config import project_path

    name = cfg.cells.astrocyte_model
    return load_domain(project_path(workdir, name) if name else None)


def load_features(workdir: str | Path, cfg: ProjectConfig, compute: Compute | None, progress: bool | None,
                  contacts: pa.Table | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(sv_ids, features)``, computed first if missing (``contacts``: the ``sv_contacts``
    table when the caller has read it already)."""
    project = Project(workdir)
    if not project.table_path("sv_features").exists():
        table = contacts if contacts is not None else _sv_contacts(project)
        compute_features(project, project.layer("sv"), table, config=cfg, compute=compute, progress=progress)
    t = project.objects("sv_features").sort_by("sv_id")
    return t.column("sv_id").to_numpy().astype(np.uint64), np.stack([t.column(f).to_numpy() for f in FEATURES], 1)


def read_labels(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(sv_ids sorted, is_astrocyte 0/1)`` from a labels table (see :func:`train_astrocytes`)."""
    from syngraph.io.tables import read_table_file

    p = Path(path)
    t = read_table_file(p, "--labels")
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


def demo_labels(workdir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(sv_ids sorted, is_astrocyte 0/1)`` from a demo tissue's ``gt/sv_to_cell`` + ``gt/cells``."""
    import pyarrow.parquet as pq

    gt = Path(workdir) / "gt"
    cells = pq.read_table(gt / "cells.parquet")
    astro_cells = np.asarray(cells.column("cell_id").to_numpy(), np.uint64)[
        np.asarray(cells.column("type").to_pylist(), dtype=object) == "astrocyte"
    ]
    s2c = pq.read_table(gt / "sv_to_cell.parquet").sort_by("sv_id")
    ids = s2c.column("sv_id").to_numpy().astype(np.uint64)
    y = np.isin(s2c.column("cell_id").to_numpy().astype(np.uint64), astro_cells).astype(float)
    return ids, y


def main(argv: list[str] | None = None) -> int:
    """Train the shipped default model on demo working directories (features from the pipeline).

    ``python -m syngraph.steps.astrocytes WD [WD ...] [--out PATH] [--learner boosted|logistic]
    [--domain-only]``: each WD is a demo tissue (``syngraph synth``) on which ``syngraph run init``
    and ``run rag`` have run; the astrocyte features are computed there if missing
    (``tables/sv_features.parquet``), labels come from ``gt/``. Prints the accuracy of the
    two-stage model on held-out working directories (five groups; context from out-of-fold
    first-stage probabilities) and writes it with the distribution of every supervoxel's features
    (the domain check's reference; default file: the shipped :data:`DEFAULT_MODEL_PATH`).
    ``--domain-only`` keeps the stages of the model in ``--out`` and re-saves it with the domain.
    """
    import argparse

    ap = argparse.ArgumentParser(prog="python -m syngraph.steps.astrocytes", description=main.__doc__)
    ap.add_argument("workdirs", nargs="+", type=Path, help="demo working directories")
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH, help="model file to write")
    ap.add_argument("--learner", choices=LEARNERS, default="boosted", help="model of both stages")
    ap.add_argument("--domain-only", action="store_true", help="keep the model's stages, store the domain")
    ap.add_argument("--relative", action="store_true",
                    help="sizes relative to each volume's median (models.astrocyte.tissue_relative)")
    args = ap.parse_args(argv)
    data = []
    for wd in args.workdirs:
        ids, y = demo_labels(wd)
        data.append(graph_data(wd, ids, y, load_config(wd), Compute(scheduler="serial"), False, f"{wd}/gt"))
        print(f"{wd}: {ids.size} supervoxels, {int(y.sum())} astrocyte")
    if args.domain_only:
        model = load_model(args.out)
        if not isinstance(model, ContextModel):
            raise SystemExit(f"{args.out}: --domain-only needs a two-stage model")
        domain = Domain.fit(np.concatenate([model.inputs(d.features) for d in data]), FEATURES)
        model.save(args.out, domain)
        print(f"wrote {args.out} (stages unchanged; domain of {domain.n_train} supervoxels)")
        return 0
    held = cross_validate_context(data, learner=args.learner, relative=args.relative) if len(data) > 1 else []
    cv = float(np.mean(held)) if held else cross_validate_context(data, learner=args.learner,
                                                                  relative=args.relative)[0]
    model = fit_context_model(data, learner=args.learner, relative=args.relative)
    model = dataclasses.replace(model, context=dataclasses.replace(model.context, cv_accuracy=cv))
    model.save(args.out, Domain.fit(np.concatenate([model.inputs(d.features) for d in data]), FEATURES))
    n = sum(d.y.size for d in data)
    print(f"{n} supervoxels ({int(sum(d.y.sum() for d in data))} astrocyte); held-out-workdir "
          f"accuracy {', '.join(f'{h:.3f}' for h in held)} (mean {cv:.4f})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
