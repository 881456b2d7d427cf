"""The demo tissue generator: ground truth consistent with the volumes, determinism, realism."""

from __future__ import annotations

import hashlib

import cc3d
import fastremap
import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from syngraph import compartments as cp
from syngraph.bbox import BBox
from syngraph.config import load_config
from syngraph.engine import Compute
from syngraph.io.volume import list_layers, open_layer
from syngraph.synth import SynthError, build_tissue, synthesize
from syngraph.synth.rasterize import Indexed, render

SERIAL = Compute(scheduler="serial")


class _Row:
    def __init__(self, d: dict):
        self.__dict__.update(d)


def _rows(table) -> list[_Row]:
    return [_Row(d) for d in table.to_pylist()]
SHAPE = (192, 160, 80)
SEED = 7
VS = (10.0, 10.0, 25.0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    wd = tmp_path_factory.mktemp("synth") / "demo"
    report = synthesize(wd, SHAPE, seed=SEED, chunks_xyz=(64, 64, 32), block_size_vx=(64, 64, 32),
                        compute=SERIAL, progress=False)
    vols = {name: open_layer(wd, name).read() for name in list_layers(wd)}
    gt = {p.stem: pq.read_table(p) for p in (wd / "gt").glob("*.parquet")}
    return wd, report, vols, gt


# ----------------------------------------------------------------------------- layout
def test_writes_layers_tables_and_config(demo):
    wd, report, vols, gt = demo
    assert set(vols) == {"sv", "mi", "vc", "sj", "syn_type", "myelin", "gt_cells", "gt_mi",
                         "gt_vc", "gt_sj", "gt_compartments", "gt_myelin"}
    for name in ("mi", "vc", "sj", "syn_type", "myelin"):
        info = open_layer(wd, name).info
        assert (info.dtype, info.kind, info.value_range) == ("uint8", "probability", 255)
    assert open_layer(wd, "sv").info.dtype == "uint64"
    cfg = load_config(wd)
    assert cfg.rag == "rag.parquet" and cfg.voxel_size_nm == VS
    assert set(cfg.layers) == {"sv", "mi", "vc", "sj", "syn_type", "myelin"}
    assert cfg.layers["sv"].kind == "labels"
    rag = pq.read_table(wd / "rag.parquet")
    assert rag.column_names == ["sv_a", "sv_b"]
    assert (rag["sv_a"].to_numpy() < rag["sv_b"].to_numpy()).all()
    assert {"cells", "sv_to_cell", "sv_edges", "synapses", "skeletons", "organelles"} <= set(gt)
    assert report.n_cells == gt["cells"].num_rows and report.n_sv == gt["sv_to_cell"].num_rows


# ----------------------------------------------------------------------------- cells and svs
def test_each_supervoxel_lies_in_exactly_one_cell(demo):
    _, _, vols, gt = demo
    sv, cells = vols["sv"], vols["gt_cells"]
    assert ((sv == 0) == (cells == 0)).all()
    pairs = np.unique(np.stack([sv[sv > 0], cells[sv > 0]], axis=1), axis=0)
    assert len(np.unique(pairs[:, 0])) == len(pairs)  # one cell per sv
    table = dict(zip(gt["sv_to_cell"]["sv_id"].to_pylist(), gt["sv_to_cell"]["cell_id"].to_pylist(), strict=True))
    assert {int(a): int(b) for a, b in pairs} == table


def test_cell_id_is_the_smallest_supervoxel_id(demo):
    _, _, _, gt = demo
    smallest: dict[int, int] = {}
    for r in gt["sv_to_cell"].to_pylist():
        smallest[r["cell_id"]] = min(smallest.get(r["cell_id"], 2**64), r["sv_id"])
    assert all(k == v for k, v in smallest.items())
    assert sorted(smallest) == sorted(gt["cells"]["cell_id"].to_pylist())


def _components_per_label(labels: np.ndarray, connectivity: int) -> dict[int, int]:
    cc = cc3d.connected_components(labels, connectivity=connectivity, out_dtype=np.uint64)
    pairs = np.unique(np.stack([labels[cc > 0], cc[cc > 0]], axis=1), axis=0)
    ids, counts = np.unique(pairs[:, 0], return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist(), strict=True))


def test_each_cell_is_one_26_connected_component(demo):
    _, _, vols, gt = demo
    per = _components_per_label(vols["gt_cells"], 26)
    assert len(per) == gt["cells"].num_rows
    assert {k: v for k, v in per.items() if v != 1} == {}


def test_each_supervoxel_is_one_connected_piece(demo):
    _, _, vols, _ = demo
    per = _components_per_label(vols["sv"], 26)
    assert {k: v for k, v in per.items() if v != 1} == {}


def test_sizes_and_counts_match_the_volume(demo):
    _, _, vols, gt = demo
    ids, counts = fastremap.unique(vols["gt_cells"], return_counts=True)
    expect = dict(zip(ids[1:].tolist(), counts[1:].tolist(), strict=True))
    cells = gt["cells"]
    assert dict(zip(cells["cell_id"].to_pylist(), cells["size_vx"].to_pylist(), strict=True)) == expect
    cid, n_sv = np.unique(gt["sv_to_cell"]["cell_id"].to_numpy(), return_counts=True)
    assert dict(zip(cells["cell_id"].to_pylist(), cells["n_sv"].to_pylist(), strict=True)) == dict(
        zip(cid.tolist(), n_sv.tolist(), strict=True))
    org = gt["organelles"].to_pylist()
    for layer in ("mi", "vc", "sj"):
        ids, counts = fastremap.unique(vols[f"gt_{layer}"], return_counts=True)
        sub = {r["id"]: r["size_vx"] for r in org if r["layer"] == layer}
        assert sub == dict(zip(ids[ids > 0].tolist(), counts[ids > 0].tolist(), strict=True))


# ----------------------------------------------------------------------------- the graph
def _touching_pairs(sv: np.ndarray) -> set[tuple[int, int]]:
    """Independent oracle: pairs of different non-zero labels sharing a voxel face."""
    out: set[tuple[int, int]] = set()
    for ax in range(3):
        a = np.moveaxis(sv, ax, 0)
        x, y = a[:-1].ravel(), a[1:].ravel()
        m = (x != y) & (x > 0) & (y > 0)
        lo, hi = np.minimum(x[m], y[m]), np.maximum(x[m], y[m])
        out |= set(zip(lo.tolist(), hi.tolist(), strict=True))
    return out


def test_edges_connect_touching_supervoxels_of_one_cell(demo):
    wd, _, vols, gt = demo
    touching = _touching_pairs(vols["sv"])
    cell_of = dict(zip(gt["sv_to_cell"]["sv_id"].to_pylist(), gt["sv_to_cell"]["cell_id"].to_pylist(), strict=True))
    true = set(zip(gt["sv_edges"]["sv_a"].to_pylist(), gt["sv_edges"]["sv_b"].to_pylist(), strict=True))
    assert true == {(a, b) for a, b in touching if cell_of[a] == cell_of[b]}
    rag = set(zip(*(pq.read_table(wd / "rag.parquet")[c].to_pylist() for c in ("sv_a", "sv_b")), strict=True))
    assert true <= rag <= touching
    contacts = gt["sv_contacts"]
    assert set(zip(contacts["sv_a"].to_pylist(), contacts["sv_b"].to_pylist(), strict=True)) == touching


def test_false_edges_join_a_neuron_and_an_astrocyte(demo):
    wd, report, _, gt = demo
    rag = pq.read_table(wd / "rag.parquet")
    rag_set = set(zip(rag["sv_a"].to_pylist(), rag["sv_b"].to_pylist(), strict=True))
    true = set(zip(gt["sv_edges"]["sv_a"].to_pylist(), gt["sv_edges"]["sv_b"].to_pylist(), strict=True))
    false = rag_set - true
    assert len(false) == report.n_false_edges > 0
    cell_of = dict(zip(gt["sv_to_cell"]["sv_id"].to_pylist(), gt["sv_to_cell"]["cell_id"].to_pylist(), strict=True))
    type_of = dict(zip(gt["cells"]["cell_id"].to_pylist(), gt["cells"]["type"].to_pylist(), strict=True))
    for a, b in sorted(false):
        kinds = sorted(type_of[cell_of[a]] == "astrocyte" for a in (a, b))
        assert kinds == [False, True]


def test_cells_are_the_components_of_the_true_edges(demo):
    _, _, _, gt = demo
    svs = gt["sv_to_cell"]["sv_id"].to_numpy()
    cells = gt["sv_to_cell"]["cell_id"].to_numpy()
    e = gt["sv_edges"]
    a = np.searchsorted(svs, e["sv_a"].to_numpy())
    b = np.searchsorted(svs, e["sv_b"].to_numpy())
    g = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(svs), len(svs)))
    n, lab = connected_components(g, directed=False)
    assert n == len(np.unique(cells))
    # same partition: each component maps to one cell and vice versa
    pairs = set(zip(lab.tolist(), cells.tolist(), strict=True))
    assert len(pairs) == n


# ----------------------------------------------------------------------------- synapses
def test_synapses_lie_on_contacts_of_their_partners(demo):
    _, _, vols, gt = demo
    cells, sj = vols["gt_cells"], vols["gt_sj"]
    syn = _rows(gt["synapses"])
    assert len(syn) > 0
    vs = np.array(VS)
    face_area = (vs[1] * vs[2], vs[0] * vs[2], vs[0] * vs[1])
    for row in syn:
        x, y, z = row.x_vx, row.y_vx, row.z_vx
        assert sj[x, y, z] == row.synapse_id
        assert (row.x_nm, row.y_nm, row.z_nm) == (x * VS[0], y * VS[1], z * VS[2])
        # pre and post voxels face-touch within 2 voxels of the synapse coordinate
        box = tuple(slice(max(c - 2, 0), c + 3) for c in (x, y, z))
        win = cells[box]
        touch = False
        for ax in range(3):
            a = np.moveaxis(win, ax, 0)
            p, q = a[:-1], a[1:]
            touch |= bool((((p == row.pre_cell_id) & (q == row.post_cell_id))
                           | ((q == row.pre_cell_id) & (p == row.post_cell_id))).any())
        assert touch, f"synapse {row.synapse_id}: partners do not touch near {x, y, z}"
        inst = sj == row.synapse_id
        owners = set(np.unique(cells[inst]).tolist())
        assert owners == {row.pre_cell_id, row.post_cell_id}
        assert inst.sum() == row.size_vx
        # area from voxel faces between the two partners inside the junction (oracle)
        area = 0.0
        for ax in range(3):
            s = np.moveaxis(inst, ax, 0)
            c = np.moveaxis(cells, ax, 0)
            area += float((s[:-1] & s[1:] & (c[:-1] != c[1:])).sum()) * face_area[ax]
        assert row.area_um2 == pytest.approx(area / 1e6)
        assert 0.005 < row.area_um2 < 1.0
        sv_pre = vols["sv"][inst & (cells == row.pre_cell_id)]
        assert row.pre_sv_id in set(sv_pre.tolist())
        assert row.sign in (-1, 1)
        assert row.post_compartment in ("spine_head", "shaft", "soma")
        assert row.pre_compartment in ("bouton", "terminal_bouton")


def test_junction_compartments_and_sign_maps(demo):
    _, _, vols, gt = demo
    syn = _rows(gt["synapses"])
    comp = vols["gt_compartments"]
    for row in syn:
        inst = vols["gt_sj"] == row.synapse_id
        post = inst & (vols["gt_cells"] == row.post_cell_id)
        pre = inst & (vols["gt_cells"] == row.pre_cell_id)
        post_codes = np.bincount(comp[post], minlength=9)
        assert np.argmax(post_codes) == cp.code(row.post_compartment) or row.post_compartment == "shaft"
        assert np.argmax(np.bincount(comp[pre], minlength=9)) == cp.code(row.pre_compartment)
        sym = (vols["syn_type"][inst] >= 128).mean()
        assert (sym > 0.5) == (row.sign == -1)


def test_types_and_signs_at_demo_size():
    t = build_tissue((256, 256, 128), VS, 0)
    types = set(np.unique(t.cells["type"]).tolist())
    assert {0, 1, 2} <= types  # excitatory, inhibitory, modulatory
    assert set(np.unique(t.synapses["sign"]).tolist()) == {-1, 1}
    post = set(np.unique(t.synapses["post_comp"]).tolist())
    assert cp.SPINE_HEAD in post and cp.SHAFT in post


# ----------------------------------------------------------------------------- organelles
def test_organelles_lie_inside_their_cells(demo):
    _, _, vols, gt = demo
    cells, comp = vols["gt_cells"], vols["gt_compartments"]
    host = {(r.layer, r.id): r.cell_id for r in _rows(gt["organelles"])}
    for layer in ("mi", "vc"):
        lab = vols[f"gt_{layer}"]
        m = lab > 0
        hosts = np.array([host[(layer, int(i))] for i in lab[m]], np.uint64)
        assert (cells[m] == hosts).all()
    # mitochondria stay off the membrane: every 6-neighbour of a mi voxel is the same cell
    mi = vols["gt_mi"] > 0
    for ax in range(3):
        a, c = np.moveaxis(mi, ax, 0), np.moveaxis(cells, ax, 0)
        assert (c[:-1][a[:-1]] == c[1:][a[:-1]]).all() and (c[1:][a[1:]] == c[:-1][a[1:]]).all()
    allowed = {cp.SHAFT, cp.SOMA, cp.AXON, cp.BOUTON, cp.TERMINAL_BOUTON}
    assert set(np.unique(comp[mi]).tolist()) <= allowed
    vc = vols["gt_vc"] > 0
    if vc.any():
        in_bouton = np.isin(comp[vc], [cp.BOUTON, cp.TERMINAL_BOUTON]).mean()
        assert in_bouton > 0.9


def test_probability_maps_recover_the_objects(demo):
    _, _, vols, _ = demo
    for layer, thr in (("mi", 110), ("vc", 73)):
        gt = vols[f"gt_{layer}"]
        pred = cc3d.connected_components(vols[layer] > thr, connectivity=6)
        pred = cc3d.dust(pred, threshold=100, connectivity=6)
        ids = [i for i in np.unique(gt) if i]
        found = 0
        for i in ids:
            m = gt == i
            labs, counts = np.unique(pred[m], return_counts=True)
            best = labs[np.argmax(counts)]
            if best == 0:
                continue
            inter = counts.max()
            union = m.sum() + (pred == best).sum() - inter
            found += inter / union >= 0.5
        assert found >= 0.8 * len(ids), (layer, found, len(ids))
        # few false objects: components of >= 100 voxels that miss every true object
        hit = np.unique(pred[gt > 0])
        false = np.setdiff1d(np.unique(pred), np.concatenate([[0], hit]))
        assert len(false) <= max(2, 0.2 * len(ids)), (layer, len(false), len(ids))


def test_myelin_only_around_myelinated_axons(demo):
    _, _, vols, gt = demo
    my = vols["gt_myelin"] > 0
    assert (vols["gt_cells"][my] == 0).all()
    if my.any():
        assert gt["skeletons"]["myelin"].to_numpy().any()
        assert (vols["myelin"][my] > 127).mean() > 0.8
    assert (vols["myelin"][~my] > 127).mean() < 0.01


def test_skeletons_lie_in_their_cells(demo):
    _, _, vols, gt = demo
    sk = gt["skeletons"]
    cells = vols["gt_cells"]
    cell_id = sk["cell_id"].to_numpy()
    assert set(cell_id.tolist()) <= set(gt["cells"]["cell_id"].to_pylist())
    hi = (np.array(SHAPE) - 1) * np.array(VS)
    xyz = np.stack([sk[c].to_numpy() for c in ("x_nm", "y_nm", "z_nm")], axis=1)
    assert (xyz >= -1e-6).all() and (xyz <= hi + 1e-6).all()
    vx = np.rint(xyz / np.array(VS)).astype(int)
    on = cells[vx[:, 0], vx[:, 1], vx[:, 2]] == cell_id
    assert on.mean() > 0.9
    node, parent = sk["node_id"].to_numpy(), sk["parent_id"].to_numpy()
    assert (parent < node).all()
    for c in np.unique(cell_id):
        m = cell_id == c
        assert (parent[m] == -1).sum() >= 1
        assert np.array_equal(node[m], np.arange(m.sum()))


# ----------------------------------------------------------------------------- determinism
def test_blockwise_equals_whole_volume_render(demo):
    wd, _, vols, _ = demo
    with np.load(wd / "steps" / "synth" / "tissue.npz") as z:
        from syngraph.synth.tissue import Tissue

        tissue = Tissue.from_npz_dict({k: z[k] for k in z.files})
    whole = render(Indexed(tissue), BBox.from_shape(SHAPE))
    for name in ("sv", "gt_cells", "gt_sj", "mi", "vc", "sj", "syn_type", "myelin"):
        assert np.array_equal(whole[name], vols[name]), name


def test_geodesic_lamellae_exact_blockwise_connected_and_touching(tmp_path, demo):
    """astrocyte_fill="geodesic": lamellae fill the free space near astrocytes up to the neurites
    (they touch many more of them), the bytes do not depend on the block size, and every cell
    and supervoxel is still one 26-connected piece."""
    from syngraph.synth import SynthParams

    _, _, vols, gt = demo
    params = SynthParams(astrocyte_fill="geodesic")
    out = {}
    for name, bs in (("small", (64, 64, 32)), ("whole", (192, 160, 80))):
        wd = tmp_path / name
        synthesize(wd, SHAPE, seed=SEED, params=params, chunks_xyz=(64, 64, 32), block_size_vx=bs,
                   compute=SERIAL, progress=False)
        out[name] = {k: open_layer(wd, k).read() for k in ("sv", "gt_cells", "gt_compartments")}
    for k in out["small"]:
        assert np.array_equal(out["small"][k], out["whole"][k]), k
    sv, cells = out["small"]["sv"], out["small"]["gt_cells"]
    assert {k: v for k, v in _components_per_label(cells, 26).items() if v != 1} == {}
    assert {k: v for k, v in _components_per_label(sv, 26).items() if v != 1} == {}
    types = dict(zip(gt["cells"]["cell_id"].to_pylist(), gt["cells"]["type"].to_pylist(), strict=True))
    astro = [c for c, t in types.items() if t == "astrocyte"]
    # neurons are unchanged; the astrocytes grow into the free space and touch more neurites
    neuron = (vols["gt_cells"] > 0) & ~np.isin(vols["gt_cells"], astro)
    assert np.array_equal(np.where(neuron, vols["gt_cells"], 0), np.where(neuron, cells, 0))
    assert (cells > 0).mean() > (vols["gt_cells"] > 0).mean() + 0.03

    def astro_faces(lab):
        n = 0
        for axis in range(3):
            a, b = np.moveaxis(lab, axis, 0)[:-1], np.moveaxis(lab, axis, 0)[1:]
            m = (a != b) & (a > 0) & (b > 0)
            n += int((m & (np.isin(a, astro) ^ np.isin(b, astro))).sum())
        return n

    assert astro_faces(cells) > 1.5 * astro_faces(vols["gt_cells"])


def test_same_seed_same_geometry_other_seed_differs():
    a = build_tissue((128, 128, 64), VS, 3).to_npz_dict()
    b = build_tissue((128, 128, 64), VS, 3).to_npz_dict()
    c = build_tissue((128, 128, 64), VS, 4).to_npz_dict()
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a if a[k].shape == c[k].shape)


def test_default_bytes_are_those_before_bend_substeps(demo):
    """SynthParams.bend_substeps = 1 keeps the code path and random stream of the demo as it was:
    sha256 of the fixture's layers as rendered by main before the field existed (95a0d22)."""
    _, _, vols, _ = demo
    want = {"sv": "c90e285ebed8ab5e2ed2c3618f8bf42e355d81ba4d12261356a3fc3fc4986137",
            "gt_cells": "d32ef93118f3203d248aa91da625de7ba2be05e454e06e47b279d27a05e21b4d"}
    for name, digest in want.items():
        assert hashlib.sha256(np.ascontiguousarray(vols[name]).tobytes()).hexdigest() == digest, name


def _neurite_turns_deg(tissue) -> np.ndarray:
    """The turn (degrees) at every unbranched node inside a dendritic shaft or axon of the truth."""
    pos, par, comp = tissue.nodes["pos"], tissue.nodes["parent"], tissue.nodes["comp"]
    n_children = np.bincount(par[par >= 0], minlength=len(pos))
    ch = np.flatnonzero(par >= 0)
    pa = par[ch]
    ch, pa = ch[(par[pa] >= 0) & (n_children[pa] == 1)], pa[(par[pa] >= 0) & (n_children[pa] == 1)]
    gp = par[pa]
    keep = np.isin(comp[ch], (cp.SHAFT, cp.AXON)) & (comp[ch] == comp[pa]) & (comp[pa] == comp[gp])
    a, b = (pos[pa] - pos[gp])[keep], (pos[ch] - pos[pa])[keep]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def test_smooth_bends_turn_gradually():
    """With bend_substeps = 4 a step's turn is spread over 4 pieces (at most 180 / 4 = 45 degrees
    each); what still turns more is a branch whose sibling could not grow. The demo (1 piece)
    kinks by up to ~110 degrees."""
    from syngraph.synth.presets import PRESETS

    kinked = _neurite_turns_deg(build_tissue((192, 192, 96), VS, 4))
    smooth = _neurite_turns_deg(build_tissue((192, 192, 96), VS, 4, PRESETS["smooth-bends"].params()))
    assert len(kinked) > 100 and len(smooth) > 50
    assert np.median(kinked) > 20.0 and np.mean(kinked > 45.0) > 0.2 and kinked.max() > 100.0
    assert np.median(smooth) < 12.0 and np.mean(smooth > 45.0) < 0.02 and smooth.max() < 60.0


@pytest.mark.parametrize("turn_deg", [0.0, 30.0, 110.0, 180.0])
def test_arc_pieces_turn_in_equal_angles(turn_deg):
    from syngraph.synth.params import SynthParams
    from syngraph.synth.tissue import _Builder

    b = _Builder((64, 64, 32), VS, 0, SynthParams(bend_substeps=4))
    d, t = np.array([1.0, 0, 0]), np.radians(turn_deg)
    nd = np.array([np.cos(t), np.sin(t), 0.0]) if turn_deg < 180 else -d
    p = np.array([100.0, 200, 300])
    pts = np.array(b.arc(p, d, nd, 250.0))
    steps = np.diff(np.vstack([p, pts]), axis=0)
    np.testing.assert_allclose(np.linalg.norm(steps, axis=1), 250.0)
    dirs = np.vstack([d, steps / 250.0])
    turns = np.degrees(np.arccos(np.clip((dirs[1:] * dirs[:-1]).sum(1), -1, 1)))
    np.testing.assert_allclose(turns, turn_deg / 4, atol=1e-6)
    np.testing.assert_allclose(dirs[-1], nd, atol=1e-9)
    with pytest.raises(ValueError, match="bend_substeps"):
        SynthParams(bend_substeps=0)


def test_block_size_and_workers_do_not_change_the_bytes(tmp_path, demo):
    _, _, vols, gt = demo
    wd = tmp_path / "other"
    synthesize(wd, SHAPE, seed=SEED, chunks_xyz=(64, 64, 32), block_size_vx=(128, 128, 64),
               compute=SERIAL, progress=False)
    for name in vols:
        assert np.array_equal(open_layer(wd, name).read(), vols[name]), name
    for name in ("cells", "synapses", "sv_edges", "organelles", "skeletons"):
        assert pq.read_table(wd / "gt" / f"{name}.parquet").equals(gt[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_invariants_hold_for_other_seeds(tmp_path, seed):
    wd = tmp_path / f"s{seed}"
    r = synthesize(wd, SHAPE, seed=seed, compute=SERIAL, progress=False)
    sv, cells = open_layer(wd, "sv").read(), open_layer(wd, "gt_cells").read()
    assert {k: v for k, v in _components_per_label(cells, 26).items() if v != 1} == {}
    assert {k: v for k, v in _components_per_label(sv, 26).items() if v != 1} == {}
    assert r.n_false_edges > 0 and r.cells_by_type["astrocyte"] >= 1


@pytest.mark.slow
def test_two_workers_give_the_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    synthesize(a, (128, 128, 64), seed=1, chunks_xyz=(64, 64, 32), block_size_vx=(64, 64, 32),
               compute=SERIAL, progress=False)
    synthesize(b, (128, 128, 64), seed=1, chunks_xyz=(64, 64, 32), block_size_vx=(64, 64, 32),
               compute=Compute(workers=2), progress=False)
    for name in list_layers(a):
        assert np.array_equal(open_layer(a, name).read(), open_layer(b, name).read()), name


def test_big_ids_offset_every_supervoxel_and_cell(tmp_path):
    wd = tmp_path / "big"
    synthesize(wd, (64, 64, 32), seed=2, big_ids=True, compute=SERIAL, progress=False)
    sv = open_layer(wd, "sv").read()
    ids = np.unique(sv[sv > 0])
    assert len(ids) and ids.min() > 2**40
    cells = pq.read_table(wd / "gt" / "cells.parquet")["cell_id"].to_numpy()
    assert cells.dtype == np.uint64 and (cells > 2**40).all()


# ----------------------------------------------------------------------------- errors
def test_refuses_to_overwrite_a_project(demo, tmp_path):
    wd, _, _, _ = demo
    with pytest.raises(SynthError, match="overwrite=True"):
        synthesize(wd, SHAPE, seed=SEED, compute=SERIAL, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"shape_xyz": (8, 64, 64)}, "too small"), ({"voxel_size_nm": (10, 0, 25)}, "voxel_size_nm"),
     ({"seed": -1}, "seed")],
)
def test_bad_arguments_name_the_fix(tmp_path, kwargs, match):
    args = {"shape_xyz": (64, 64, 32), "seed": 0, "voxel_size_nm": VS} | kwargs
    with pytest.raises(SynthError, match=match):
        synthesize(tmp_path / "x", compute=SERIAL, progress=False, **args)


def test_compartment_codes():
    assert cp.code("spine_head") == cp.SPINE_HEAD == 4
    assert cp.name(cp.TERMINAL_BOUTON) == "terminal_bouton"
    assert cp.to_swc(np.arange(9, dtype=np.uint8)).tolist() == [0, 1, 3, 3, 3, 2, 2, 2, 7]
    with pytest.raises(KeyError, match="valid names"):
        cp.code("dendrite_x")
