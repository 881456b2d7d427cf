"""Skeletons of real neurons with known skeletons (issue 19): navis' five fly projection neurons
(hemibrain, proofread, with radii) rasterized into a label volume at 16x16x40 nm, run through the
skeletons step, and compared with the source skeleton restricted to the volume."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from syngraph.evaluate.skeletons import short_terminal_branches

VOXEL_NM = np.array([16.0, 16.0, 40.0])
BOX_NM = 6000.0
TICK_NM = 500.0


def _clip(a: np.ndarray, b: np.ndarray, hi: np.ndarray) -> tuple[float, float] | None:
    """The parameter range of segment a-b inside the box [0, hi] (Liang-Barsky), or None."""
    t0, t1, d = 0.0, 1.0, b - a
    for k in range(3):
        if d[k] == 0:
            if not 0 <= a[k] <= hi[k]:
                return None
            continue
        u0, u1 = sorted(((0 - a[k]) / d[k], (hi[k] - a[k]) / d[k]))
        t0, t1 = max(t0, u0), min(t1, u1)
        if t0 > t1:
            return None
    return t0, t1


def rasterize(xyz: np.ndarray, parent: np.ndarray, radius: np.ndarray, shape: tuple[int, int, int],
              voxel_nm: np.ndarray = VOXEL_NM) -> np.ndarray:
    """Voxels (centres at ``i * voxel_nm``) within the cone-capsule of every edge."""
    vox = np.asarray(voxel_nm, float)
    lab = np.zeros(shape, bool)
    top = np.asarray(shape) - 1
    for c in np.flatnonzero(parent >= 0).tolist():
        a, b, ra, rb = xyz[c], xyz[parent[c]], radius[c], radius[parent[c]]
        r = max(ra, rb)
        lo = np.maximum(np.floor((np.minimum(a, b) - r) / vox).astype(int), 0)
        hi = np.minimum(np.ceil((np.maximum(a, b) + r) / vox).astype(int), top)
        if np.any(lo > hi):
            continue
        g = np.stack(np.meshgrid(*[np.arange(p, q + 1) for p, q in zip(lo, hi, strict=True)],
                                 indexing="ij"), -1) * vox
        d = b - a
        t = np.clip(((g - a) @ d) / max(float(d @ d), 1e-9), 0, 1)
        inside = np.linalg.norm(g - (a + t[..., None] * d), axis=-1) <= ra + (rb - ra) * t
        lab[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] |= inside
    return lab


def truth_in_box(xyz: np.ndarray, parent: np.ndarray, hi: np.ndarray) -> tuple[float, int]:
    """Cable (um) of the source skeleton inside the box [0, hi], and its branch points inside
    once terminal twigs shorter than the tick threshold (tip inside the box) are removed, as the
    step removes them by design."""
    cable, edges = 0.0, []
    for c in np.flatnonzero(parent >= 0).tolist():
        r = _clip(xyz[c], xyz[parent[c]], hi)
        if r is not None:
            cable += (r[1] - r[0]) * float(np.linalg.norm(xyz[parent[c]] - xyz[c]))
            edges.append((c, parent[c]))
    e = np.asarray(edges)
    used = np.unique(e)
    pos = np.full(len(xyz), -1)
    pos[used] = np.arange(len(used))
    par = np.full(len(used), -1)
    par[pos[e[:, 0]]] = pos[e[:, 1]]
    inside = np.all((xyz[used] >= 0) & (xyz[used] <= hi), 1)
    keep = ~short_terminal_branches(xyz[used], par, TICK_NM, ~inside)
    ok = (par >= 0) & keep & keep[np.maximum(par, 0)]
    deg = np.bincount(np.r_[par[ok], np.flatnonzero(ok)], minlength=len(used))
    return cable / 1000, int(((deg >= 3) & inside).sum())


def missed_cable_um(xyz: np.ndarray, parent: np.ndarray, radius: np.ndarray, hi: np.ndarray,
                    ours_nm: np.ndarray, ours_parent: np.ndarray) -> float:
    """True cable (um) in the box [0, hi] farther than max(24 nm, true radius) from our skeleton
    (both sampled every 5 nm, the scorer's tolerance)."""
    from scipy.spatial import cKDTree

    def sample(p: np.ndarray, par: np.ndarray, rad: np.ndarray | None, box: bool):
        pts, rs = ([], []) if box else ([p], [np.zeros(len(p))])  # our single-node trees count
        for c in np.flatnonzero(par >= 0).tolist():
            a, b = p[c], p[par[c]]
            t0, t1 = (_clip(a, b, hi) or (0.0, -1.0)) if box else (0.0, 1.0)
            n = int((t1 - t0) * np.linalg.norm(b - a) / 5)
            if n > 0:
                t = t0 + (np.arange(n) + 0.5) / n * (t1 - t0)
                pts.append(a + t[:, None] * (b - a))
                rs.append(np.zeros(n) if rad is None else rad[c] + t * (rad[par[c]] - rad[c]))
        return np.concatenate(pts), np.concatenate(rs)

    tp, tr = sample(xyz, parent, radius, True)
    inside = np.all((tp >= 0) & (tp <= hi), 1)
    dist = cKDTree(sample(ours_nm, ours_parent, None, False)[0]).query(tp[inside])[0]
    return float((dist > np.maximum(24.0, tr[inside])).sum() * 5e-3)


def dense_box(xyz: np.ndarray, parent: np.ndarray, rank: int = 0) -> np.ndarray:
    """The origin of the box centred on the branch point with the most branch points in it
    (``rank`` 1: the branch point with the most among those outside that box, and so on)."""
    deg = np.bincount(np.r_[parent[parent >= 0], np.flatnonzero(parent >= 0)], minlength=len(xyz))
    bps = xyz[deg >= 3]
    counts = np.array([(np.abs(bps - q).max(1) <= BOX_NM / 2).sum() for q in bps])
    for _ in range(rank):
        centre = bps[int(np.argmax(counts))]
        counts[np.abs(bps - centre).max(1) <= BOX_NM] = -1
    return bps[int(np.argmax(counts))] - BOX_NM / 2


def skeleton_of_real_neuron(tmp_path, neuron, voxel_nm: np.ndarray = VOXEL_NM, rank: int = 0,
                            shift_nm: np.ndarray | None = None,
                            params: dict | None = None) -> tuple[float, int, float, int, float]:
    """(true cable um, true branch points, our cable um, our branch points, true cable um we
    miss: :func:`missed_cable_um`) in the box (see
    :func:`dense_box` for ``rank``; ``shift_nm`` moves the box; ``params``: ``[skeletons]``)."""
    from syngraph.config import default_config, write_config
    from syngraph.engine import Compute, write_table_atomic
    from syngraph.io.volume import create_layer
    from syngraph.steps.skeletons import run_skeletons

    nodes = neuron.nodes
    scale = float(neuron.units.to("nm").magnitude)
    xyz = nodes[["x", "y", "z"]].to_numpy(float) * scale
    pos = {int(v): k for k, v in enumerate(nodes.node_id)}
    parent = np.array([pos.get(int(p), -1) for p in nodes.parent_id])
    voxel_nm = np.asarray(voxel_nm, float)
    radius = np.maximum(nodes.radius.to_numpy(float) * scale, 1.5 * voxel_nm[0])
    xyz = xyz - dense_box(xyz, parent, rank) - (0 if shift_nm is None else np.asarray(shift_nm, float))
    shape = tuple(int(v) for v in np.round(BOX_NM / voxel_nm))
    hi = (np.asarray(shape) - 1) * voxel_nm
    lab = rasterize(xyz, parent, radius, shape, voxel_nm)  # type: ignore[arg-type]
    cable_true, bp_true = truth_in_box(xyz, parent, hi)
    cfg = default_config(tuple(voxel_nm))  # type: ignore[arg-type]
    cfg.layers = {k: v for k, v in cfg.layers.items() if k == "sv"}
    for k, v in (params or {}).items():
        setattr(cfg.skeletons, k, v)
    write_config(tmp_path, cfg)
    create_layer(tmp_path, "sv", shape, "uint64", tuple(voxel_nm), chunks_xyz=(128, 128, 64)).write(
        lab.astype(np.uint64))
    one = np.array([1], np.uint64)
    write_table_atomic(pa.table({"sv_id": one, "cell_id": one}), tmp_path / "tables" / "sv_to_cell.parquet")
    run_skeletons(tmp_path, compute=Compute(scheduler="serial"), progress=False)
    st = pq.read_table(tmp_path / "tables" / "skeleton_stats.parquet").to_pylist()[0]
    sk = pq.read_table(tmp_path / "tables" / "skeletons.parquet").to_pandas()
    at = {int(v): k for k, v in enumerate(sk.node_id)}
    ours_parent = np.array([at.get(int(p), -1) for p in sk.parent_id])
    missed = missed_cable_um(xyz, parent, radius, hi, sk[["x", "y", "z"]].to_numpy(float), ours_parent)
    return cable_true, bp_true, st["cable_length_um"], st["n_branch_points"], missed


@pytest.mark.slow
def test_real_fly_neurons_cable_and_branch_points(tmp_path):
    """Five proofread fly projection neurons, each in the 6 um box around its densest branching
    (73-120 um of cable, 34-59 branch points in the box), without the sliver rule. Measured (docs/skeletons.md, skeleton
    voxels 32x32x40 nm since skeleton_voxel_nm = 32): cable ratios 1.04-1.12 (1.03-1.10 while
    stubs leaving the box under ``dust_threshold_vx`` voxels were dust), branch points
    0.98-1.32 of the truth. The issue's target (cable within 5 %, branch points within 10 %) is
    met for 1 of 5 cables and 2 of 5 branch counts: the excess cable is TEASAR paths in slivers
    of neurites cut by the box faces (peeled with ``peel_face_slivers``: the next test) and the
    voxel staircase at 40 nm in z."""
    navis = pytest.importorskip("navis")
    rows = []
    for i, neuron in enumerate(navis.example_neurons()):
        rows.append(skeleton_of_real_neuron(tmp_path / f"n{i}", neuron, params={"peel_face_slivers": False}))
    t_cable, t_bp, o_cable, o_bp, missed = (np.array(c, float) for c in zip(*rows, strict=True))
    assert (t_cable > 50).all() and (t_bp >= 30).all()  # the boxes hold real arbors
    cable_ratio, bp_ratio = o_cable / t_cable, o_bp / t_bp
    assert ((cable_ratio > 1.0) & (cable_ratio < 1.14)).all(), cable_ratio
    assert np.median(cable_ratio) < 1.08, cable_ratio
    assert ((bp_ratio > 0.9) & (bp_ratio < 1.4)).all(), bp_ratio
    assert abs(np.median(bp_ratio) - 1) < 0.12, bp_ratio


@pytest.mark.slow
def test_real_fly_neurons_with_the_sliver_rule(tmp_path):
    """The same five neurons with ``peel_face_slivers`` in three 6 um boxes each: around the
    densest branching (developed on), around the densest branching outside that box and the
    first box shifted 3 um in x (held out). Measured (docs/skeletons.md, seventh round): cable
    within 5 % for 9 of 15 (main 05a61a7: 10), all within 0.97-1.12; branch points within
    10 % for 8 of 15 (8), 0.72-1.21; true cable missed 20.1 um in all (32.3 while stubs that
    leave the box under ``dust_threshold_vx`` voxels were dust), at most 2.8 um per crop."""
    navis = pytest.importorskip("navis")
    rows = []
    for box, (rank, shift) in enumerate([(0, None), (1, None), (0, np.array([3000.0, 0, 0]))]):
        for i, neuron in enumerate(navis.example_neurons()):
            rows.append(skeleton_of_real_neuron(tmp_path / f"b{box}n{i}", neuron, VOXEL_NM, rank, shift,
                                                {"peel_face_slivers": True}))
    t_cable, t_bp, o_cable, o_bp, missed = (np.array(c, float) for c in zip(*rows, strict=True))
    assert (t_cable > 40).all() and (t_bp >= 15).all()  # the boxes hold real arbors
    cable_err, bp_ratio = np.abs(o_cable / t_cable - 1), o_bp / t_bp
    print("cable", np.round(o_cable / t_cable, 3), "branch points", np.round(bp_ratio, 2),
          "missed um", np.round(missed, 2))
    assert (cable_err <= 0.05).sum() >= 9 and np.median(cable_err) < 0.04 and cable_err.max() < 0.12, cable_err
    assert (np.abs(bp_ratio - 1) <= 0.1).sum() >= 7 and ((bp_ratio > 0.65) & (bp_ratio < 1.25)).all(), bp_ratio
    assert missed.sum() < 24 and missed.max() < 3, missed  # stubs leaving the box are no dust
