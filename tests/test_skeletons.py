"""Skeletons step: geometric oracles, exact joins across blocks, degenerate input, outputs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from syngraph.bbox import BBox
from syngraph.config import SkeletonParams, default_config, write_config
from syngraph.engine import Compute, block_grid, write_table_atomic
from syngraph.errors import StepOrderError
from syngraph.io.volume import create_layer
from syngraph.skeleton import Forest, stats
from syngraph.steps.skeletons.join import join_pieces
from syngraph.steps.skeletons.myelin import path_window_vote
from syngraph.steps.skeletons.postprocess import exit_tips, extend_exits, remove_ticks, thin
from syngraph.steps.skeletons.run import block_regions, finish_cell, teasar_params
from syngraph.steps.skeletons.teasar import skeletonize_block

ANISO = (20.0, 20.0, 25.0)  # skeleton resolution of 10x10x25 nm data at 2x2x1


def skeletonize_in_blocks(labels: np.ndarray, block_ds, params: SkeletonParams | None = None,
                          halo: int = 8) -> dict[int, Forest]:
    """The step's per-block + per-cell path on an in-memory array at skeleton resolution."""
    p = params or SkeletonParams()
    shape = labels.shape
    rows = []
    for b in block_grid(BBox.from_shape(shape), block_ds):
        trace, read, own = block_regions(b.core, shape, (1, 1, 1), (halo,) * 3)
        bs = skeletonize_block(labels[read.slices], trace.local_slices(read), anisotropy_nm=ANISO,
                               teasar=teasar_params(p), own_shape=own.shape)
        rows.append((b.id, np.asarray(trace.start), bs))
    out = {}
    cells = np.unique(np.concatenate([r[2].cell_id for r in rows]))
    for c in cells.tolist():
        v, par, rad, key, pvx, ridge = [], [], [], [], [], []
        off = 0
        for bid, start, bs in rows:
            m = bs.cell_id == c
            idx = np.flatnonzero(m)
            remap = np.full(len(bs), -1)
            remap[idx] = np.arange(len(idx)) + off
            v.append(bs.vertex_vx[m] + start)
            pp = bs.parent[m]
            par.append(np.where(pp >= 0, remap[np.maximum(pp, 0)], -1))
            rad.append(bs.radius_nm[m])
            key.append(bs.piece[m] + bid * 100000)
            pvx.append(bs.piece_vx[m])
            ridge.append(bs.face_ridge[m])
            off += len(idx)
        out[c] = finish_cell(np.concatenate(v), np.concatenate(par), np.concatenate(rad),
                             np.concatenate(key), np.concatenate(pvx), spacing_nm=ANISO, params=p,
                             volume_shape_vx=shape, face_ridge=np.concatenate(ridge))
    return out


def cylinder(length_vx=200, radius_nm=200.0, spans=True):
    ny, nz = 40, 32
    lab = np.zeros((length_vx, ny, nz), np.uint32)
    _, y, z = np.mgrid[:length_vx, :ny, :nz]
    lab[((y - ny // 2) * ANISO[1]) ** 2 + ((z - nz // 2) * ANISO[2]) ** 2 <= radius_nm**2] = 7
    if not spans:
        lab[:5] = 0
        lab[-5:] = 0
    return lab


@pytest.mark.parametrize("block_x", [1000, 64, 50, 37, 16])
def test_straight_cylinder_is_one_path_of_its_length(block_x):
    lab = cylinder()
    f = skeletonize_in_blocks(lab, (block_x, 64, 64))[7]
    s = stats(f)
    expected_um = (lab.shape[0] - 1) * ANISO[0] / 1000  # face centre to face centre
    assert s.n_trees == 1 and s.n_branch_points == 0 and s.n_tips == 2
    assert s.cable_length_um == pytest.approx(expected_um, rel=0.02)
    # on the axis, with the radius of the cylinder
    assert np.abs(f.nodes_nm[:, 1] - 20 * ANISO[1]).max() <= ANISO[1]
    assert np.median(f.radius_nm) == pytest.approx(200.0, abs=ANISO[2])


def capsules(shape_vx, segments_nm, radius_nm, label=1):
    """Union of capsules (cylinders with round end caps) of ``radius_nm`` around segments in nm.

    The true skeleton of a capsule ends at the centre of its cap, so its length is known exactly.
    """
    lab = np.zeros(shape_vx, np.uint32)
    grid = np.mgrid[: shape_vx[0], : shape_vx[1], : shape_vx[2]]
    p = np.stack([grid[i] * ANISO[i] for i in range(3)], -1)
    for a, b in segments_nm:
        a, b = np.asarray(a, float), np.asarray(b, float)
        length = np.linalg.norm(b - a)
        d = (b - a) / length if length > 0 else np.zeros(3)  # a sphere when a == b
        t = np.clip((p - a) @ d, 0, length)
        lab[np.linalg.norm(p - a - t[..., None] * d, axis=-1) <= radius_nm] = label
    return lab


def y_of_capsules():
    """Three 1 um arms of radius 150 nm from (1200, 1200, 500) nm, in the plane z = 500 nm."""
    c = np.array([60 * ANISO[0], 60 * ANISO[1], 20 * ANISO[2]])
    arms = [(c, c + 1000 * np.array([np.cos(np.radians(a)), np.sin(np.radians(a)), 0.0]))
            for a in (90.0, 210.0, 330.0)]
    return capsules((120, 120, 40), arms, 150.0, label=5)


def test_y_of_three_cylinders_has_one_branch_point():
    lab = y_of_capsules()
    whole = stats(skeletonize_in_blocks(lab, (1000, 1000, 1000))[5])
    assert (whole.n_trees, whole.n_branch_points, whole.n_tips) == (1, 1, 3)
    assert whole.cable_length_um == pytest.approx(3.0, rel=0.02)  # ends at the cap centres


# faces along an arm (x = 60 is an arm's axis plane, z = 20 the plane of the Y, z = 25 cuts a
# sliver off its top), across the branch point, and blocks of 1.6 to 3 arm diameters
@pytest.mark.parametrize("block, rel", [
    ((64, 64, 64), 0.02), ((60, 60, 20), 0.02), ((40, 100, 100), 0.02),
    # known weak cases: z faces 1 voxel under the top of the arms (measured -2.9 %), and
    # blocks of 2 arm diameters (measured -5.3 %)
    ((50, 45, 25), 0.03), ((32, 32, 32), 0.06),
])
def test_y_cut_by_block_faces_matches_whole_volume(block, rel):
    lab = y_of_capsules()
    whole = stats(skeletonize_in_blocks(lab, (1000, 1000, 1000))[5])
    s = stats(skeletonize_in_blocks(lab, block)[5])
    assert (s.n_trees, s.n_branch_points, s.n_tips) == (1, 1, 3)
    assert s.cable_length_um == pytest.approx(whole.cable_length_um, rel=rel)


@pytest.mark.parametrize("block", [(64, 64, 64), (50, 40, 30), (37, 23, 17)])
def test_oblique_cylinder_cut_by_block_faces_matches_whole_volume(block):
    d = np.ones(3) / np.sqrt(3)
    lab = capsules((160, 160, 128), [(1600 - 2400 * d, 1600 + 2400 * d)], 150.0, label=3)
    whole = stats(skeletonize_in_blocks(lab, (1000, 1000, 1000))[3])
    assert whole.cable_length_um == pytest.approx(4.8, rel=0.02)
    s = stats(skeletonize_in_blocks(lab, block)[3])
    assert (s.n_trees, s.n_branch_points, s.n_tips) == (1, 0, 2)
    assert s.cable_length_um == pytest.approx(whole.cable_length_um, rel=0.02)


@pytest.mark.parametrize("block, rel", [
    ((48, 48, 22), 0.02), ((70, 30, 40), 0.02), ((56, 56, 11), 0.02),
    ((37, 29, 17), 0.10),  # known weak case, measured -8.9 %: the bend sits at a block corner
])
def test_bent_capsule_cut_by_block_faces_matches_whole_volume(block, rel):
    """Geometry and block sizes not used while tuning the block join."""
    lab = capsules((140, 140, 40), [((300, 300, 500), (1400, 1400, 500)),
                                    ((1400, 1400, 500), (2500, 400, 600))], 120.0)
    whole = stats(skeletonize_in_blocks(lab, (1000, 1000, 1000))[1])
    s = stats(skeletonize_in_blocks(lab, block)[1])
    assert (whole.n_trees, whole.n_branch_points, whole.n_tips) == (1, 0, 2)
    assert (s.n_trees, s.n_branch_points, s.n_tips) == (1, 0, 2)
    assert s.cable_length_um == pytest.approx(whole.cable_length_um, rel=rel)


def kinked_capsules(turn_deg: float, radius_nm: float = 90.0, seg_nm: float = 300.0, n: int = 8):
    """A zigzag of ``n`` capsules of ``seg_nm``, turning by ``turn_deg`` at every joint (in the
    xy plane), as the demo's true trees do (segments of 250-350 nm, turns up to ~110 degrees).
    Returns the labels and the polyline's length."""
    pts = [np.array([250.0, 1000.0, 400.0])]
    half = np.radians(turn_deg / 2)
    for i in range(n):
        a = half if i % 2 == 0 else -half
        pts.append(pts[-1] + seg_nm * np.array([np.cos(a), np.sin(a), 0.0]))
    shape = (int((pts[-1][0] + 400) / ANISO[0]), int(2000 / ANISO[1]), 32)
    return capsules(shape, list(zip(pts[:-1], pts[1:], strict=False)), radius_nm), n * seg_nm


@pytest.mark.parametrize("turn, lo, hi", [
    (30, 0.97, 1.03), (60, 0.95, 1.0),
    (110, 0.82, 0.92),  # known limit (docs/skeletons.md, fifth round): the path cuts sharp kinks
])
def test_kinked_capsule_polyline_cable(turn, lo, hi):
    """Cable of a kinked tube against its polyline: the default kernel smoothing keeps it
    within 5 % up to 60-degree turns; the taut string, which cannot leave the voxels of a path
    that already cuts the kinks, is shorter still (measured 0.94 at 60 degrees)."""
    lab, true_nm = kinked_capsules(turn)
    kernel = stats(skeletonize_in_blocks(lab, (1000, 1000, 1000))[1]).cable_length_um * 1000 / true_nm
    taut = stats(skeletonize_in_blocks(lab, (1000, 1000, 1000), SkeletonParams(taut_iterations=200))[1])
    assert lo <= kernel <= hi
    assert taut.cable_length_um * 1000 / true_nm < kernel - 0.01


def _tips_nm(f: Forest) -> np.ndarray:
    deg = np.bincount(f.edges.reshape(-1), minlength=len(f))
    return f.nodes_nm[deg == 1]


@pytest.mark.parametrize("peel", [False, True])
def test_neurite_leaving_the_volume_ends_where_its_axis_crosses_the_border(peel):
    """An oblique capsule (r 120 nm) leaving through the x face ends there, on its axis (with
    ``peel_face_slivers`` too: the sliver beyond the crossing goes, the exit stays)."""
    shape = (100, 80, 40)
    a = np.array([800.0, 500.0, 500.0])
    d = np.array([1.0, 0.5, 0.2]) / np.linalg.norm([1.0, 0.5, 0.2])
    lab = capsules(shape, [(a, a + 2500 * d)], 120.0, label=3)
    f = skeletonize_in_blocks(lab, (1000, 1000, 1000), SkeletonParams(peel_face_slivers=peel))[3]
    x_face = (shape[0] - 1) * ANISO[0]
    exit_nm = a + d * (x_face - a[0]) / d[0]
    s = stats(f)
    assert (s.n_trees, s.n_branch_points, s.n_tips) == (1, 0, 2)
    tips = _tips_nm(f)
    end = tips[np.argmax(tips[:, 0])]
    assert end[0] == x_face
    assert np.linalg.norm(end - exit_nm) <= 1.5 * max(ANISO)
    assert s.cable_length_um == pytest.approx(np.linalg.norm(exit_nm - a) / 1000, rel=0.05)


@pytest.mark.parametrize("peel", [False, True])
@pytest.mark.parametrize("depth_nm, rel", [(20.0, 0.06), (40.0, 0.05), (100.0, 0.02), (120.0, 0.02)])
def test_neurite_grazing_the_volume_border_does_not_end_there(depth_nm, rel, peel):
    """A capsule (r 150 nm) running along the y = 0 face with its axis ``depth_nm`` inside pokes
    out of the volume without leaving it: no end and no spur on the border (the true tree has
    none there). Known limit, not tested: with the axis 80 nm inside, the distance to the
    boundary is flat from the axis to the face (voxel rounding) and the path zigzags. With
    ``peel_face_slivers`` too: an axis a voxel (20 nm) or more inside is no sliver."""
    lab = capsules((100, 80, 40), [((300, depth_nm, 500), (1700, depth_nm, 500))], 150.0, label=4)
    f = skeletonize_in_blocks(lab, (1000, 1000, 1000), SkeletonParams(peel_face_slivers=peel))[4]
    s = stats(f)
    assert (s.n_trees, s.n_branch_points, s.n_tips) == (1, 0, 2)
    assert s.cable_length_um == pytest.approx(1.4, rel=rel)
    if depth_nm >= 100:  # ends at the cap centres, not on the border
        assert sorted(_tips_nm(f)[:, 0].tolist()) == pytest.approx([300.0, 1700.0], abs=ANISO[0])
        assert (_tips_nm(f)[:, 1] > 0).all()


@pytest.mark.parametrize("outside_nm", [20.0, 40.0, 80.0])
def test_sliver_of_a_neurite_outside_the_volume_has_no_cable(outside_nm):
    """A capsule (r 150 nm) along the y = 0 face with its axis ``outside_nm`` outside the volume
    leaves a sliver 70-130 nm deep inside; its true tree lies outside. Without the sliver rule
    (``peel_face_slivers``, ``teasar.face_ridge``) its skeleton runs along the face, 1.26-1.38
    um; with a branch (r 150 nm) leaving it into the volume for 1 um, 2.26-2.48 um with a branch
    point on the face."""
    seg = ((300, -outside_nm, 500), (1700, -outside_nm, 500))
    p = SkeletonParams(peel_face_slivers=True)
    sliver = stats(skeletonize_in_blocks(capsules((100, 80, 40), [seg], 150.0, label=4),
                                         (1000, 1000, 1000), p)[4])
    assert stats(skeletonize_in_blocks(capsules((100, 80, 40), [seg], 150.0, label=4), (1000, 1000, 1000),
                                       SkeletonParams(peel_face_slivers=False))[4]).cable_length_um > 1.2
    assert sliver.n_trees == 1 and sliver.cable_length_um <= 0.05
    branch = ((1000, -outside_nm, 500), (1000, 1000, 500))
    f = skeletonize_in_blocks(capsules((100, 80, 40), [seg, branch], 150.0, label=4), (1000, 1000, 1000), p)[4]
    s = stats(f)
    # the branch, from the face to its cap centre (1 um), and at most a stub of two voxels on
    # each side of where it leaves the face (measured 1.08-1.12 um)
    assert s.n_trees == 1 and 0.95 <= s.cable_length_um <= 1.15
    assert (f.nodes_nm[:, 1] <= 0.5 * ANISO[1]).sum() <= 3


def test_bouton_bulging_out_of_the_volume_is_not_an_end():
    """A bouton (r 300 nm) on an axon parallel to the y = 0 face bulges out of the volume. Its
    contact with the border used to be an end traced first, whose invalidation ball (2 r +
    500 nm) then hid the other half of the axon (measured: cable 0.86 of 1.4 um)."""
    lab = capsules((100, 80, 40), [((300, 250, 500), (1700, 250, 500))], 70.0, label=5)
    lab |= capsules((100, 80, 40), [((1000, 150, 500), (1000, 150, 500))], 300.0, label=5)
    f = skeletonize_in_blocks(lab, (1000, 1000, 1000))[5]
    s = stats(f)
    assert (s.n_trees, s.n_branch_points, s.n_tips) == (1, 0, 2)
    assert sorted(_tips_nm(f)[:, 0].tolist()) == pytest.approx([300.0, 1700.0], abs=1.5 * ANISO[0])
    # the path bends into the bouton towards its centre (measured +5 %)
    assert s.cable_length_um == pytest.approx(1.4, rel=0.07)


@pytest.mark.parametrize("branch_nm", [550.0, 650.0])
def test_astrocyte_parameters_keep_short_branches(branch_nm):
    """A thin side branch (r 60 nm, longer than the tick threshold) off a 120 nm process lies
    inside TEASAR's invalidation ball with the reference const (2 r + 500 nm): the neuron
    parameters lose it, the astrocyte parameters (``astrocyte_teasar_const_nm``) keep it.
    (The reference's ``teasar_scale = 2``: the default 1 keeps a 650 nm branch for neurons too.)"""
    lab = capsules((100, 80, 40), [((200, 700, 500), (1800, 700, 500))], 120.0, label=9)
    lab |= capsules((100, 80, 40), [((1000, 700, 500), (1000, 700 + branch_nm, 500))], 60.0, label=9)
    p = SkeletonParams(teasar_scale=2.0)
    whole = tuple(slice(0, n) for n in lab.shape)
    got = {}
    for kind, by_label in (("neuron", None), ("astrocyte", {9: teasar_params(p, "astrocyte")})):
        bs = skeletonize_block(lab, whole, anisotropy_nm=ANISO, teasar=teasar_params(p),
                               teasar_by_label=by_label)
        got[kind] = stats(finish_cell(bs.vertex_vx, bs.parent, bs.radius_nm, bs.piece, bs.piece_vx,
                                      spacing_nm=ANISO, params=p, volume_shape_vx=lab.shape))
    assert (got["neuron"].n_tips, got["neuron"].n_branch_points) == (2, 0)
    assert (got["astrocyte"].n_tips, got["astrocyte"].n_branch_points) == (3, 1)
    assert got["astrocyte"].cable_length_um == pytest.approx(1.6 + branch_nm / 1000, rel=0.03)


def test_demo_cables_never_fold_back_into_themselves():
    """The demo truth the skeletons are scored against: a growing cable keeps clear of its own
    cell wherever that is farther along the tree than twice the summed radii (a straight
    continuation and a right-angle bend fit, a hairpin back along itself does not; the old
    rule, which exempted the last three hops, let it through)."""
    from syngraph.synth.geometry import Scene

    scene = Scene(np.array([[0.0, 0, 0], [5000, 5000, 5000]]))
    cell = scene.new_cell("excitatory")
    r = 60.0
    pts = [np.array([1000.0 + 250 * k, 2000, 2000]) for k in range(4)]
    node = scene.add_node(pts[0], r, -1, cell, 5, 0)
    for k in range(1, 4):
        child = scene.add_node(pts[k], r, node, cell, 5, 0)
        scene.add_prim(pts[k - 1], pts[k], r, r, cell.index, 0, 5, node, child)
        node = child
    p = pts[-1]

    def fits(q, frm=node, start=p):
        return scene.clear(start, np.asarray(q, float), r, r, cell.index, grow_from=frm)

    assert fits(p + [250, 0, 0]) and fits(p + [0, 250, 0])
    assert not fits(p + [-250, 20, 0])  # a hairpin into its own lumen
    assert scene.clear(p, p + [-250, 20, 0], r, r, cell.index, exempt=scene.exempt_prims(node, 3))
    side = scene.add_node(p + [0, 120, 0], r, node, cell, 5, 0)
    scene.add_prim(p, p + [0, 120, 0], r, r, cell.index, 0, 5, node, side)
    assert not fits(p + [-250, 120, 0], side, p + [0, 120, 0])  # back alongside, 120 nm apart
    assert fits(p + [0, 370, 0], side, p + [0, 120, 0])


def test_pieces_split_by_the_volume_border_stay_separate_trees():
    lab = cylinder(spans=True)
    lab[90:110] = 0  # two cylinders of the same cell, 20 voxels apart
    f = skeletonize_in_blocks(lab, (64, 64, 64))[7]
    s = stats(f)
    assert s.n_trees == 2  # never a bridge across the gap
    gap = (f.nodes_nm[:, 0] > 89 * ANISO[0]) & (f.nodes_nm[:, 0] < 110 * ANISO[0])
    assert not gap.any()


def test_degenerate_cells():
    lab = np.zeros((40, 40, 40), np.uint32)
    lab[5, 5, 5] = 1  # one voxel
    lab[30:, 30:, 30:] = 2  # cube larger than the blocks in every axis? no: cut by all faces
    big = np.ones((48, 48, 48), np.uint32)  # one label larger than a block in every axis
    p = SkeletonParams(dust_threshold_vx=0)
    out = skeletonize_in_blocks(lab, (16, 16, 16), p)
    assert len(out[1]) == 1 and stats(out[1]).n_trees == 1
    assert stats(out[2]).n_trees == 1
    full = skeletonize_in_blocks(big, (20, 20, 20), p)
    assert stats(full[1]).n_trees == 1
    assert skeletonize_in_blocks(np.zeros((8, 8, 8), np.uint32), (4, 4, 4)) == {}


def test_join_is_exact_identity_of_coordinates():
    v = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [2, 0, 0], [3, 0, 0], [9, 9, 9]])
    f, cvx = join_pieces(v, np.array([-1, 0, 1, -1, 3, -1]), np.ones(6, np.float32),
                         np.array([0, 0, 0, 1, 1, 2]), np.array([3, 3, 3, 2, 2, 1]), (1.0, 1.0, 1.0))
    assert f.edges.tolist() == [[0, 1], [1, 2], [2, 3]]
    assert cvx.tolist() == [5, 5, 5, 5, 1]


def test_thin_keeps_tips_and_branch_points_and_cable():
    nodes = np.c_[np.arange(101.0) * 20, np.zeros(101), np.zeros(101)]
    nodes = np.r_[nodes, [[1000.0, 20.0 * k, 0.0] for k in range(1, 31)]]
    edges = np.r_[np.c_[np.arange(100), np.arange(1, 101)], [[50, 101]], np.c_[np.arange(101, 130), np.arange(102, 131)]]
    f = Forest(nodes, edges, np.ones(len(nodes), np.float32), {})
    t = thin(f, 100.0)
    assert stats(t).n_branch_points == 1 and stats(t).n_tips == 3
    assert stats(t).cable_length_um == pytest.approx(stats(f).cable_length_um)
    assert len(t) == 21 + 6  # every 5th node (100 nm) of the 2 um line incl. both ends, of the branch
    # the 600 nm side branch survives a 500 nm tick threshold, a 400 nm one does not
    assert stats(remove_ticks(t, 500.0)).n_tips == 3
    assert stats(remove_ticks(t, 700.0)).n_tips == 2


def test_path_window_vote_matches_brute_force():
    rng = np.random.default_rng(0)
    n = 60
    parent = np.r_[-1, [rng.integers(0, i) for i in range(1, n)]]
    nodes = rng.uniform(0, 300, (n, 3))
    edges = np.c_[np.arange(1, n), parent[1:]]
    vals = rng.integers(0, 3, n)
    got = path_window_vote(nodes, edges, vals, 400.0)
    # oracle: Floyd-Warshall on the tree
    d = np.full((n, n), np.inf)
    np.fill_diagonal(d, 0)
    for a, b in edges:
        d[a, b] = d[b, a] = np.linalg.norm(nodes[a] - nodes[b])
    for k in range(n):
        d = np.minimum(d, d[:, k:k + 1] + d[k:k + 1, :])
    want = [np.bincount(vals[d[i] <= 400.0], minlength=3).argmax() for i in range(n)]
    assert got.tolist() == want


def test_score_reports_recall_without_short_terminal_branches():
    """The score's ``recall_kept`` leaves out the true nodes of terminal branches shorter than
    the tick threshold (removed by design), except those ending on the volume border."""
    from syngraph.evaluate.skeletons import score_cell, short_terminal_branches

    # a 2 um line along x with a 300 nm side branch at x = 1000 and a 300 nm one at x = 1500
    # whose tip is on the volume border
    nodes = np.array([[100.0 * k, 0, 0] for k in range(21)]
                     + [[1000.0, 150, 0], [1000, 300, 0], [1500, -150, 0], [1500, -300, 0]])
    parent = np.r_[-1, np.arange(20), 10, 21, 15, 23]
    border = np.zeros(len(nodes), bool)
    border[24] = True
    short = short_terminal_branches(nodes, parent, 500.0, border)
    assert np.flatnonzero(short).tolist() == [21, 22]
    gt = {"nodes": nodes, "parent": parent, "radius": np.full(len(nodes), 10.0)}
    ours = {"nodes": nodes[:21], "parent": parent[:21], "radius": np.full(21, 10.0)}  # no branches
    s = score_cell(gt, ours, 20.0, short)
    assert (s["recalled"], s["n_true"]) == (21, 25)
    assert (s["recalled_kept"], s["n_true_kept"]) == (21, 23)


def _project(tmp_path, labels_xyz, myelin=None, block=(64, 64, 32)):
    cfg = default_config((10.0, 10.0, 25.0))
    cfg.skeletons.block_size_vx = block
    write_config(tmp_path, cfg)
    sv = create_layer(tmp_path, "sv", labels_xyz.shape, "uint64", (10.0, 10.0, 25.0), chunks_xyz=(64, 64, 32))
    sv.write(labels_xyz.astype(np.uint64))
    if myelin is not None:
        m = create_layer(tmp_path, "myelin", labels_xyz.shape, "uint8", (10.0, 10.0, 25.0),
                         chunks_xyz=(64, 64, 32), kind="probability", value_range=255)
        m.write(myelin)
    return cfg


def test_run_skeletons_needs_cells(tmp_path):
    _project(tmp_path, np.zeros((16, 16, 16), np.uint64))
    with pytest.raises(StepOrderError, match="syngraph run cells"):
        from syngraph.steps.skeletons import run_skeletons

        run_skeletons(tmp_path, compute=Compute(scheduler="serial"))


def test_run_skeletons_end_to_end(tmp_path):
    from syngraph import skeleton_io
    from syngraph.steps.skeletons import run_skeletons

    # two supervoxels of one cell make an x-running cylinder; a third sv is not in any cell
    nx, ny, nz = 400, 80, 32
    lab = np.zeros((nx, ny, nz), np.uint64)
    x, y, z = np.mgrid[:nx, :ny, :nz]
    tube = ((y - 40) * 10.0) ** 2 + ((z - 16) * 25.0) ** 2 <= 200.0**2
    lab[tube & (x < 150)] = 11
    lab[tube & (x >= 150)] = 12
    lab[:20, :10, :5] = 99
    myelin = np.zeros((nx, ny, nz), np.uint8)
    myelin[:300] = 255  # the first 3 of 4 um are myelinated
    _project(tmp_path, lab, myelin)
    write_table_atomic(pa.table({"sv_id": pa.array([11, 12], pa.uint64()),
                                 "cell_id": pa.array([5, 5], pa.uint64())}),
                       tmp_path / "tables" / "sv_to_cell.parquet")
    res = run_skeletons(tmp_path, compute=Compute(scheduler="serial"), progress=False)
    assert res["cells"] == 1
    sk = skeleton_io.read_skeleton(tmp_path, 5)
    assert sk.cable_length_um == pytest.approx((nx - 2) * 10 / 1000, rel=0.02)
    assert (sk.parent_id < sk.node_id).all()
    assert int((sk.parent_id < 0).sum()) == 1
    raw, m = sk.attributes["myelin_raw"], sk.attributes["myelin"]
    xs = sk.nodes_nm[:, 0]
    assert raw[xs < 2700].all() and not raw[xs > 3300].any()
    assert m.all()  # the 10 um window covers the whole 4 um cell: 3/4 of its nodes vote yes
    st = pa.parquet.read_table(tmp_path / "tables" / "skeleton_stats.parquet")
    assert st.column("n_tips").to_pylist() == [2]
    # SWC round trip, in nm
    from syngraph.export.swc import export_swc

    p = export_swc(tmp_path, tmp_path / "swc")[0]
    xyz, radius, parent, _ = skeleton_io.read_swc(p)
    assert '"units": "nm"' in p.read_text()
    np.testing.assert_allclose(xyz, sk.nodes_nm, atol=0.06)
    # precomputed round trip
    v, e, attrs = skeleton_io.read_precomputed(tmp_path / "skeletons", 5)
    np.testing.assert_array_equal(v, sk.nodes_nm)
    assert len(e) == len(sk) - 1
    np.testing.assert_array_equal(attrs["myelin"].astype(bool), m)




@pytest.fixture
def pinky40(pinky40_labels):
    return pinky40_labels


def demo_with_true_cells(wd, shape, seed):
    """A demo tissue with the true agglomeration and cell kinds in tables/ (what the cells step
    would write), so that a skeleton score measures skeletons, not cells."""
    import shutil

    from syngraph.synth.generate import synthesize

    synthesize(wd, shape, seed, compute=Compute(scheduler="serial"), progress=False)
    (wd / "tables").mkdir(exist_ok=True)
    shutil.copy(wd / "gt" / "sv_to_cell.parquet", wd / "tables" / "sv_to_cell.parquet")
    cells = pa.parquet.read_table(wd / "gt" / "cells.parquet", columns=["cell_id", "type"])
    kind = ["astrocyte" if t == "astrocyte" else "neuron" for t in cells.column("type").to_pylist()]
    write_table_atomic(pa.table({"cell_id": cells.column("cell_id"), "kind": pa.array(kind)}),
                       wd / "tables" / "cells.parquet")


def test_within_spheres_matches_brute_force():
    from syngraph.evaluate.skeletons import within_spheres

    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1000, (400, 3))
    centres = rng.uniform(0, 1000, (30, 3))
    radius = rng.uniform(0, 200, 30) ** 2 / 100  # a few large spheres among small ones
    want = [any(np.linalg.norm(p - c) - r <= 100.0 for c, r in zip(centres, radius, strict=True)) for p in pts]
    got = within_spheres(pts, centres, radius, 100.0)
    assert got.tolist() == want and 0 < got.sum() < len(pts)


def test_cover_score_of_a_slab():
    """A 2 x 0.2 x 0.2 um slab with one node of radius 100 nm at one end: voxels within
    coverage + radius of that node are covered (counted per voxel), nodes outside the slab are
    not inside, and each tree counts."""
    from syngraph.evaluate.skeletons import score_cover

    vox = np.argwhere(np.ones((100, 10, 10), bool))
    ours = {"nodes": np.array([[0.0, 50, 50], [0, 50, 500]]), "radius": np.array([100.0, 10.0]),
            "parent": np.array([-1, -1])}

    def inside(ijk):
        return np.all((ijk >= 0) & (ijk < [100, 10, 10]), axis=1)

    s = score_cover(vox, ours, (20.0, 20.0, 20.0), inside, 400.0)
    d = np.linalg.norm(vox * 20.0 - [0, 50, 50], axis=1)
    assert s["voxels_sampled"] == 10_000 and s["voxels_covered"] == int((d <= 500.0).sum()) > 0
    assert s["n_ours"] == 2 and s["nodes_inside"] == 1 and s["n_trees"] == 2


def test_evaluate_writes_the_issue_metric_names(tmp_path):
    """`syngraph evaluate` on a small demo (true cells) writes the issue's names under skeletons,
    with neurons and astrocytes never pooled."""
    import json

    from syngraph.evaluate import evaluate
    from syngraph.steps.skeletons import run_skeletons

    demo_with_true_cells(tmp_path, (128, 128, 64), 7)  # true cells, without the cells step's DONE
    run_skeletons(tmp_path, compute=Compute(scheduler="serial"), progress=False)
    (tmp_path / "steps" / "skeletons" / "DONE").write_text('{"step": "skeletons"}')  # evaluate scores done steps
    evaluate(tmp_path)
    m = json.loads((tmp_path / "evaluation.json").read_text())["skeletons"]["metrics"]
    names = ("neuron_node_precision", "neuron_node_recall", "neuron_cable_rel_error_median",
             "neuron_cells_cable_within_5pct", "astrocyte_coverage", "astrocyte_nodes_inside", "myelin_accuracy")
    for k in names:
        assert 0.0 <= m[k] <= 1.0, k
    assert not {"node_precision", "node_recall", "cells_cable_within_5pct"} & set(m)  # no pooled totals
    assert m["neuron_node_precision"] >= 0.9 and m["astrocyte_nodes_inside"] >= 0.95

    # voxels the step's cell holds but the true cell does not (a merge by the cells step): the
    # astrocyte's supervoxel split in two at mid-x, the new part another true cell; its nodes are
    # inside the segment the step skeletonized, outside the true cell
    from syngraph.evaluate.skeletons import score_skeletons
    from syngraph.io.volume import open_layer

    before = score_skeletons(tmp_path)
    layer = open_layer(tmp_path, "sv")
    sv = np.asarray(layer.read())
    astro = int(pa.parquet.read_table(tmp_path / "tables" / "cells.parquet").to_pandas()
                .query("kind == 'astrocyte'").cell_id.iloc[0])
    step = pa.parquet.read_table(tmp_path / "tables" / "sv_to_cell.parquet").to_pandas()
    gt = pa.parquet.read_table(tmp_path / "gt" / "sv_to_cell.parquet").to_pandas()
    half = np.isin(sv, gt.sv_id[gt.cell_id == astro].to_numpy())
    half[sv.shape[0] // 2:] = False
    new_sv = np.uint64(sv.max() + 1)
    sv[half] = new_sv
    layer.write(sv)
    for t, cell, path in ((step, astro, "tables"), (gt, 10**6, "gt")):
        t = pa.concat_tables([pa.Table.from_pandas(t, preserve_index=False),
                              pa.table({"sv_id": pa.array([new_sv], pa.uint64()), "cell_id": pa.array([cell], pa.uint64())})
                              .select(t.columns.tolist())])
        write_table_atomic(t, tmp_path / path / "sv_to_cell.parquet")
    after = score_skeletons(tmp_path)
    sk = pa.parquet.read_table(tmp_path / "tables" / "skeletons.parquet").to_pandas().query("neuron == @astro")
    ijk = np.rint(sk[["x", "y", "z"]].to_numpy() / np.asarray(layer.info.voxel_size_nm)).astype(np.int64)
    moved = half[tuple(ijk.T)].sum()
    assert moved > 0 and after["astrocyte_nodes_inside"] == before["astrocyte_nodes_inside"]
    assert after["astrocyte_nodes_inside_true"] == pytest.approx(before["astrocyte_nodes_inside_true"] - moved / len(sk))


@pytest.fixture(scope="module")
def demo_scores(tmp_path_factory):
    """Skeletons of the demo tissue (seed 2026, never used in development) scored against the
    true trees, with the true agglomeration and cell kinds (so the numbers measure skeletons,
    not cells)."""
    from syngraph.evaluate.skeletons import score_skeletons
    from syngraph.steps.skeletons import run_skeletons

    wd = tmp_path_factory.mktemp("demo2026")
    demo_with_true_cells(wd, (256, 256, 128), 2026)
    run_skeletons(wd, compute=Compute(scheduler="serial"), progress=False)
    return score_skeletons(wd)


@pytest.mark.slow
def test_demo_tissue_against_true_skeletons(demo_scores):
    """Measured levels on seed 2026 (regression guard; the issue's targets are in the next test).

    Measured: neurons precision 0.991, recall 0.946, median cable error 2.3 %, cable within 5 %
    for 82 % and within 10 % for 95 % of them; the astrocyte: coverage 1.0, nodes inside 1.0, one
    tree per piece; myelin 1.0."""
    s = demo_scores
    assert s["cells_missing"] == []
    assert s["myelin_accuracy"] >= 0.95
    assert s["neuron_node_precision"] >= 0.97
    assert s["neuron_node_recall"] >= 0.93
    assert s["neuron_node_recall_kept"] >= s["neuron_node_recall"] - 1e-9
    neurons = [v for k, v in s["per_type"].items() if k != "astrocyte"]
    n_true = sum(v["nodes_true"] for v in neurons)
    assert s["neuron_node_recall"] == pytest.approx(
        sum(v["node_recall"] * v["nodes_true"] for v in neurons) / n_true)
    assert s["neuron_cells_cable_within_10pct"] >= 0.85
    assert s["astrocyte_coverage"] >= 0.95 and s["astrocyte_nodes_inside"] >= 0.99


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 19 targets not met on seed 2026: recall 0.946 (>= 0.95; "
                   "0.953 with teasar_scale = 1) and cable within 5 % for 82 % of neurons (>= 90 %); "
                   "precision 0.991, median cable error 2.3 %, astrocyte coverage 1.0 and nodes inside "
                   "1.0 are met; see docs/skeletons.md, Known limits")
def test_demo_tissue_meets_issue_targets(demo_scores):
    """Done-when (issue 19) on seed 2026, never used in development."""
    s = demo_scores
    assert s["neuron_node_precision"] >= 0.97 and s["neuron_node_recall"] >= 0.95
    assert s["neuron_cable_rel_error_median"] <= 0.03
    assert s["neuron_cells_cable_within_5pct"] >= 0.9
    assert s["myelin_accuracy"] >= 0.95
    assert s["astrocyte_coverage"] >= 0.95 and s["astrocyte_nodes_inside"] >= 0.99
    assert s["astrocyte_cells_one_tree_per_piece"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("peel", [False, True])
def test_pinky40_one_tree_per_piece(tmp_path, pinky40, peel):
    """Done-when: on the whole pinky40 volume (512^3, default config and blocks), every label
    above 10,000 voxels gets a skeleton, with one tree per 26-connected piece of the label;
    peak memory printed. Pieces are counted at skeleton resolution (2x2x1 striding, what the
    skeletonizer sees; it can split a thin piece or join two across a one-voxel gap), and only
    pieces of at least the dust threshold (the reference drops smaller ones) or reaching the
    volume border (the stub of a neurite that leaves the volume is no dust). Every node lies in
    its label or within one (full-resolution) voxel of it (measured at 2x2x1: all 249,341 with
    the sliver rule, 256,838 without; 502 and 508 of 509 small border pieces have a tree).
    ``peel``: with ``peel_face_slivers`` (it removes tips only)."""
    import cc3d
    import fastremap

    from syngraph import skeleton_io
    from syngraph.steps.skeletons import run_skeletons

    arr = pinky40
    cfg = default_config((16.0, 16.0, 40.0))
    cfg.skeletons.peel_face_slivers = peel
    write_config(tmp_path, cfg)
    lay = create_layer(tmp_path, "sv", arr.shape, "uint64", (16.0, 16.0, 40.0))
    lay.write(np.asfortranarray(arr).astype(np.uint64))
    ids, counts = fastremap.unique(arr, return_counts=True)
    keep = ids != 0
    ids, counts = ids[keep].astype(np.uint64), counts[keep]
    write_table_atomic(pa.table({"sv_id": ids, "cell_id": ids}), tmp_path / "tables" / "sv_to_cell.parquet")
    res = run_skeletons(tmp_path, compute=Compute(scheduler="serial"), progress=False)
    print(f"pinky40 skeletons: {res['cells']} cells, {res['blocks']} blocks, "
          f"{res['block_seconds']:.0f} s, peak memory {res['block_peak_rss_mb']:.0f} MB")
    stats_t = pa.parquet.read_table(tmp_path / "tables" / "skeleton_stats.parquet")
    have = dict(zip(stats_t.column("cell_id").to_pylist(), stats_t.column("n_trees").to_pylist(), strict=True))
    big = set(ids[counts > 10_000].tolist())
    assert big <= set(have), sorted(big - set(have))[:20]
    sx, sy, sz = cfg.skeletons.downsample_for(cfg.voxel_size_nm)  # 2x2x1 at 16 nm
    ds = np.ascontiguousarray(arr[::sx, ::sy, ::sz])
    cc, n = cc3d.connected_components(ds, connectivity=26, return_N=True)
    piece_vx = np.bincount(cc.reshape(-1), minlength=n + 1)
    owner = np.zeros(n + 1, np.uint64)
    owner[cc.reshape(-1)] = ds.reshape(-1)
    border = np.zeros(n + 1, bool)
    for face in (cc[0], cc[-1], cc[:, 0], cc[:, -1], cc[:, :, 0], cc[:, :, -1]):
        border[face.reshape(-1)] = True
    big_p = np.isin(owner, np.fromiter(big, np.uint64)) & (np.arange(n + 1) > 0)
    large = big_p & (piece_vx >= cfg.skeletons.dust_threshold_vx)
    small = big_p & ~large & border  # kept when its skeleton reaches the border plane
    lo = np.bincount(np.searchsorted(ids, owner[large]), minlength=len(ids))
    hi = lo + np.bincount(np.searchsorted(ids, owner[small]), minlength=len(ids))
    trees = np.array([have.get(int(c), 0) for c in ids.tolist()])
    is_big = np.isin(ids, np.fromiter(big, np.uint64))
    wrong = np.flatnonzero(is_big & ((trees < lo) | (trees > hi)))
    print(f"small border pieces {small.sum()} ({piece_vx[small].min(initial=n)}-"
          f"{piece_vx[small].max(initial=0)} voxels), with a tree: {(trees - lo)[is_big].sum()}")
    assert len(wrong) == 0, f"{len(wrong)} labels: (trees, pieces) {list(zip(trees[wrong], lo[wrong], strict=True))[:20]}"
    sk = skeleton_io.read_skeleton(tmp_path, int(max(big)))
    assert len(sk) > 0
    # every node lies inside its label, or within one voxel of it
    nodes = pa.parquet.read_table(tmp_path / "tables" / "skeletons.parquet", columns=["x", "y", "z", "neuron"])
    ijk = np.rint(np.stack([nodes.column(c).to_numpy() for c in "xyz"], 1) / np.array([16.0, 16.0, 40.0]))
    ijk = ijk.astype(np.int64)
    cell = nodes.column("neuron").to_numpy()
    near = np.zeros(len(ijk), bool)
    for off in np.argwhere(np.ones((3, 3, 3), bool)) - 1:
        q = np.clip(ijk + off, 0, np.asarray(arr.shape) - 1)
        near |= arr[q[:, 0], q[:, 1], q[:, 2]] == cell
    print(f"nodes inside their label (within one voxel): {near.mean():.5f} of {len(near)}")
    assert near.all(), f"{(~near).sum()} nodes more than one voxel outside their label"


def test_recentre_moves_vertices_to_the_ball_that_contains_theirs():
    """In a bouton (a ball on a thin tube) vertices climb to the ball's centre; on the tube's
    axis, where no neighbour's ball contains a vertex's, they stay."""
    from syngraph.steps.skeletons.recentre import recentre

    lab = capsules((80, 40, 32), [((100, 400, 400), (1500, 400, 400)), ((800, 400, 400), (800, 400, 400))],
                   80.0)
    lab |= capsules((80, 40, 32), [((800, 400, 400), (800, 400, 400))], 250.0)
    import edt

    dbf = edt.edt(lab, anisotropy=ANISO, black_border=False).astype(np.float32)
    verts = np.array([[40, 24, 14], [36, 22, 17], [10, 20, 16], [70, 20, 16]])  # 2 in the bouton, 2 on the axis
    out = recentre(verts, dbf, np.zeros(4, bool), ANISO, 0.25 * ANISO[0])
    assert np.abs(out[:2] - [40, 20, 16]).max() <= 2  # within the grid's rounding of the centre
    moved = np.linalg.norm((out[:2] - verts[:2]) * ANISO, axis=1)
    assert np.all(moved + dbf[tuple(verts[:2].T)] <= dbf[tuple(out[:2].T)] + 0.25 * ANISO[0])  # contains theirs
    assert np.all(moved >= 40.0)
    assert out[2:].tolist() == verts[2:].tolist()



def test_exits_end_where_the_axis_meets_the_volume_face():
    """A path leaving through the x = 2550 nm face at 45 degrees in xy, whose last node is on the
    skeleton grid's last plane (x = 2540 nm, 2x2x1 striding): the tip moves 10 nm in x along
    its axis (14 nm of cable); a path parallel to the face does not move; a path that ends on a
    low face already on its plane stays."""
    x = np.arange(0.0, 2541.0, 20.0)[-10:]
    nodes = np.c_[x, x - x[0] + 500, np.full(len(x), 1000.0)]
    edges = np.c_[np.arange(len(x) - 1), np.arange(1, len(x))]
    f = Forest(nodes, edges, np.full(len(x), 100, np.float32), {})
    hi = np.array([2550.0, 2550.0, 3175.0])
    border = np.zeros(len(x), bool)
    border[-1] = True
    got = extend_exits(f, border, hi, 40.0, np.array([20.0, 20.0, 25.0])).nodes_nm
    assert got[-1].tolist() == pytest.approx([2550.0, nodes[-1, 1] + 10.0, 1000.0])
    assert np.array_equal(got[:-1], nodes[:-1])
    along = Forest(np.c_[np.full(len(x), 2540.0), x - 1000.0, np.full(len(x), 1000.0)], edges, f.radius_nm, {})
    assert np.array_equal(extend_exits(along, border, hi, 40.0, np.full(3, 20.0)).nodes_nm, along.nodes_nm)
    low = Forest(np.c_[x - x[0], np.full(len(x), 500.0), np.full(len(x), 1000.0)][::-1].copy(), edges, f.radius_nm, {})
    assert np.array_equal(extend_exits(low, border, hi, 40.0, np.full(3, 20.0)).nodes_nm, low.nodes_nm)


def test_a_path_along_a_cut_face_to_its_rim_is_no_exit():
    """Where the border cuts a 300 nm-radius neurite, the axis's border tip keeps its radius (an
    exit); a TEASAR path from the axis along the cut face to the rim ends in a 20 nm ball (no
    exit: it is retracted and removed like any tip)."""
    axis = np.c_[np.arange(0.0, 1001.0, 20.0), np.zeros(51), np.zeros(51)]  # ends on x = 1000
    rim = np.c_[np.full(14, 1000.0), np.arange(20.0, 281.0, 20.0), np.zeros(14)]
    nodes = np.r_[axis, rim]
    edges = np.r_[np.c_[np.arange(50), np.arange(1, 51)], [[50, 51]], np.c_[np.arange(51, 64), np.arange(52, 65)]]
    radius = np.r_[np.full(51, 300.0), 300.0 - rim[:, 1]].astype(np.float32)
    border = nodes[:, 0] >= 1000.0
    f = Forest(nodes, edges, radius, {})
    ex = exit_tips(f, border, 20.0)
    assert not ex.any()
    tip_axis = Forest(axis, np.c_[np.arange(50), np.arange(1, 51)], np.full(51, 300, np.float32), {})
    assert exit_tips(tip_axis, axis[:, 0] >= 1000.0, 20.0)[50]


def _digital_path(curve: np.ndarray, spacing: np.ndarray) -> Forest:
    """The voxel centres a densely sampled curve (nm) passes through, as one path."""
    vx = np.round(curve / spacing).astype(np.int64)
    keep = np.r_[True, np.any(vx[1:] != vx[:-1], axis=1)]
    vx = vx[keep]
    assert np.abs(np.diff(vx, axis=0)).max() <= 1  # 26-connected, as a TEASAR path
    n = len(vx)
    return Forest(vx * spacing, np.c_[np.arange(n - 1), np.arange(1, n)], np.ones(n, np.float32), {})


@pytest.mark.parametrize("shape", ["line", "arc"])
def test_straighten_measures_digital_curves(shape: str) -> None:
    from syngraph.steps.skeletons.postprocess import straighten

    spacing = np.array([20.0, 20.0, 40.0])
    t = np.linspace(0.0, 1.0, 20001)[:, None]
    if shape == "line":  # oblique to every grid axis: the raw staircase is long
        curve = 1000.0 + t * np.array([1800.0, 900.0, 700.0])
    else:  # a half circle of radius 600 nm in an oblique plane: bends everywhere
        ang = np.pi * t[:, 0]
        curve = np.c_[1000 + 600 * np.cos(ang), 1000 + 600 * np.sin(ang) * 0.8, 1000 + 600 * np.sin(ang) * 0.6]
    true_nm = float(np.linalg.norm(np.diff(curve, axis=0), axis=1).sum())
    raw = _digital_path(curve, spacing)
    ends_nm = float(np.linalg.norm(raw.nodes_nm[[0, -1]] - curve[[0, -1]], axis=1).sum())  # rounding at the ends
    raw_nm = 1000 * stats(raw).cable_length_um
    taut = straighten(raw, 0.5 * spacing)
    taut_nm = 1000 * stats(taut).cable_length_um
    assert raw_nm > 1.04 * true_nm  # the staircase
    assert abs(taut_nm - true_nm) <= 0.015 * true_nm + ends_nm
    # no node leaves its voxel, so no bend is cut by more than half a voxel
    assert np.all(np.abs(taut.nodes_nm - raw.nodes_nm) <= 0.5 * spacing + 1e-9)


@pytest.mark.parametrize("block", [(1000, 1000, 1000), (60, 50, 20), (37, 23, 17)])
def test_dust_counts_each_voxel_once_across_block_faces(block):
    """A piece's voxels are summed over the blocks it crosses; the plane two blocks share is
    counted once, so a piece of n voxels is dust at a threshold of n + 1 however it is cut (a
    pinky40 piece of 947 voxels survived the threshold of 1000 counted twice on a face)."""
    import cc3d

    lab = y_of_capsules()
    lab[2:10, 104:114, 12:26] = 5  # a second piece of the cell, across the faces z = 17 and 20
    assert cc3d.connected_components(lab == 5, connectivity=26, return_N=True)[1] == 2
    n = 8 * 10 * 14
    kept = skeletonize_in_blocks(lab, block, SkeletonParams(dust_threshold_vx=n))[5]
    assert stats(kept).n_trees == 2
    dropped = skeletonize_in_blocks(lab, block, SkeletonParams(dust_threshold_vx=n + 1))[5]
    assert stats(dropped).n_trees == 1


def test_stub_of_a_neurite_leaving_the_volume_is_not_dust():
    """A neurite (r 100 nm) whose axis enters the volume through x = 0 for 200 nm and ends there
    in a cap: about 800 voxels inside, under ``dust_threshold_vx`` (1000), but it reaches the
    volume border, so it is the stub of a neurite leaving the volume, kept as its own tree with
    its 200 nm of cable (measured: 3.18 um with the Y; main dropped it as dust: 2.98 um); the
    same stub without its first two voxel planes is dust."""
    lab = y_of_capsules()
    lab |= capsules(lab.shape, [((-600.0, 200.0, 500.0), (200.0, 200.0, 500.0))], 100.0, label=5)
    assert 500 < (lab[:20, :20] == 5).sum() < SkeletonParams().dust_threshold_vx
    s = stats(skeletonize_in_blocks(lab, (1000, 1000, 1000))[5])
    assert s.n_trees == 2
    assert s.cable_length_um == pytest.approx(3.2, abs=0.04)
    lab[:2] = 0  # the stub's first two voxel planes gone: it no longer reaches the border
    s = stats(skeletonize_in_blocks(lab, (1000, 1000, 1000))[5])
    assert s.n_trees == 1
