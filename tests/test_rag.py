"""Step rag: blockwise contact graph, graph input validation, pruning."""

from __future__ import annotations

import warnings
from pathlib import Path

import cc3d
import numpy as np
import pyarrow as pa
import pytest

from syngraph.config import default_config, write_config
from syngraph.engine import Compute, write_table_atomic
from syngraph.graph import bbox_diagonal_nm, connected_components, min_cut, normalize_edges
from syngraph.io.graph_input import GraphInputError, GraphInputWarning, read_graph
from syngraph.io.volume import create_layer
from syngraph.project import Project
from syngraph.steps.rag import RagError, face_contacts, run_rag

SERIAL = Compute(scheduler="serial")


# --------------------------------------------------------------------------- helpers (used by the other test files)


def sv_table(labels: np.ndarray) -> pa.Table:
    """The init step's sv table computed directly with numpy (an oracle independent of init)."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    cols: dict[str, list] = {k: [] for k in ("id", "size_vx")}
    for k in ("bbox_min", "bbox_max", "rep", "com"):
        for a in "xyz":
            cols[f"{k}_{a}_vx"] = []
    for i in ids:
        pts = np.argwhere(labels == i)
        cols["id"].append(int(i))
        cols["size_vx"].append(len(pts))
        mn, mx = pts.min(0), pts.max(0) + 1
        com = pts.mean(0)
        rep = pts[np.argmin(((pts - com) ** 2).sum(1))]
        for j, a in enumerate("xyz"):
            cols[f"bbox_min_{a}_vx"].append(int(mn[j]))
            cols[f"bbox_max_{a}_vx"].append(int(mx[j]))
            cols[f"rep_{a}_vx"].append(int(rep[j]))
            cols[f"com_{a}_vx"].append(float(com[j]))
    t = pa.table({k: v for k, v in cols.items()})
    t = t.set_column(0, "id", pa.array(cols["id"], pa.uint64()))
    return t.append_column("mesh_area_um2", pa.array(np.zeros(len(ids))))


def make_project(
    tmp_path: Path,
    labels: np.ndarray,
    voxel_size_nm=(10.0, 10.0, 20.0),
    chunks=(8, 8, 8),
    block=(8, 8, 8),
    **cells,
) -> Path:
    wd = tmp_path / "wd"
    cfg = default_config(voxel_size_nm)
    cfg.compute.block_size_vx = block
    for k, v in {"mesh": False, **cells}.items():
        setattr(cfg.cells, k, v)
    write_config(wd, cfg)
    lay = create_layer(wd, "sv", labels.shape, "uint64", voxel_size_nm, chunks_xyz=chunks)
    lay.write(labels.astype(np.uint64))
    write_table_atomic(sv_table(labels), wd / "tables" / "sv.parquet")
    return wd


def stripes() -> np.ndarray:
    """A 20x12x10 volume: labels 1..4 as x-slabs, label 9 a small cube inside 2, 0 background row."""
    lab = np.zeros((20, 12, 10), np.uint64)
    lab[0:5], lab[5:10], lab[10:15], lab[15:20] = 1, 2, 3, 4
    lab[6:8, 2:4, 2:4] = 9
    lab[:, 11, :] = 0
    return lab


def oracle_contacts(labels: np.ndarray) -> dict[tuple[int, int], int]:
    c = cc3d.contacts(labels, connectivity=6, surface_area=False)
    return {(min(a, b), max(a, b)): int(v) for (a, b), v in c.items()}


def table_contacts(t: pa.Table) -> dict[tuple[int, int], int]:
    pairs = zip(t["sv_a"].to_pylist(), t["sv_b"].to_pylist(), strict=True)
    return dict(zip(pairs, t["contact_faces"].to_pylist(), strict=True))


# --------------------------------------------------------------------------- graph helpers


def test_components_hand_graph():
    ids, comp = connected_components(
        np.array([[2**63 + 5, 7], [7, 9], [20, 21]], np.uint64), np.array([1, 20], np.uint64)
    )
    assert ids.tolist() == [1, 7, 9, 20, 21, 2**63 + 5]
    assert comp.tolist() == [1, 7, 7, 20, 20, 7]
    assert comp.dtype == np.uint64


def test_components_match_union_find_random():
    rng = np.random.default_rng(0)
    edges = rng.integers(0, 2**40, size=(300, 2), dtype=np.uint64) % np.uint64(400) * np.uint64(2**33)
    ids, comp = connected_components(edges)
    parent = {int(i): int(i) for i in ids}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges.tolist():
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    expected = {}
    for i in ids.tolist():
        expected.setdefault(find(i), []).append(i)
    mins = {r: min(m) for r, m in expected.items()}
    assert comp.tolist() == [mins[find(i)] for i in ids.tolist()]


def test_normalize_and_diagonal():
    e = normalize_edges(np.array([[3, 1], [1, 3], [2, 2]], np.uint64))
    assert e.tolist() == [[1, 3]]
    assert bbox_diagonal_nm(np.array([[0, 0, 0]]), np.array([[30, 40, 0]]), (100, 100, 40)).tolist() == [5000.0]


def test_min_cut_prefers_weak_edge():
    # 1-2-3-4 chain with a strong 2-3 contact: cutting 1..4 should cut the weakest edge (3, 4)
    edges = np.array([[1, 2], [2, 3], [3, 4]], np.uint64)
    cut = min_cut(edges, 1, 4, capacity=np.array([5, 9, 2]))
    assert cut.tolist() == [[3, 4]]
    assert min_cut(edges, 1, 9).size == 0


# --------------------------------------------------------------------------- contacts


def test_face_contacts_hand():
    lab = np.array([[[1, 2]], [[1, 3]]], np.uint64)
    t = face_contacts(lab, voxel_size_nm=(2, 3, 5))
    assert t.to_pydict() == {
        "sv_a": [1, 1, 2], "sv_b": [2, 3, 3], "contact_faces": [1, 1, 1],
        "contact_area_um2": [6e-06, 6e-06, 15e-06],
    }


@pytest.mark.parametrize("block", [(4, 4, 4), (5, 3, 7), (32, 32, 32)])
def test_contacts_blockwise_equal_oracle(tmp_path, block):
    rng = np.random.default_rng(1)
    lab = rng.integers(0, 6, size=(17, 13, 11)).astype(np.uint64) * np.uint64(2**40)
    wd = make_project(tmp_path, lab, block=block)
    run_rag(wd, compute=SERIAL)
    t = Project(wd).objects("sv_contacts")
    assert table_contacts(t) == oracle_contacts(lab)
    assert t.schema.field("sv_a").type == pa.uint64()


# --------------------------------------------------------------------------- graph input and pruning


def test_no_graph_every_sv_own_cell_and_pruning(tmp_path):
    # diagonals: slabs 1..4 = sqrt(50^2 + 110^2 + 200^2) nm ~ 233.6; cube 9 = sqrt(20^2+20^2+40^2) ~ 49
    wd = make_project(tmp_path, stripes(), min_cc_size_nm=100.0)
    rep = run_rag(wd, compute=SERIAL)
    comps = Project(wd).objects("sv_components").to_pydict()
    assert comps["sv_id"] == [1, 2, 3, 4, 9]
    assert comps["component_id"] == [1, 2, 3, 4, 9]
    assert comps["kept"] == [True, True, True, True, False]
    assert comps["component_diag_nm"][4] == pytest.approx(np.sqrt(20**2 + 20**2 + 40**2))
    assert rep.n_components == 5 and rep.n_components_kept == 4 and rep.n_edges == 0


def test_edge_list_formats_give_same_graph(tmp_path):
    lab = stripes()
    edges = np.array([[2, 1], [2, 9], [3, 4]], np.uint64)
    (tmp_path / "in").mkdir()
    csv = tmp_path / "in" / "e.csv"
    csv.write_text("sv_a,sv_b\n2,1\n2,9\n3,4\n")
    headerless = tmp_path / "in" / "e.txt"
    headerless.write_text("2 1\n2 9\n3 4\n")
    npy = tmp_path / "in" / "e.npy"
    np.save(npy, edges)
    pq_path = tmp_path / "in" / "e.parquet"
    write_table_atomic(pa.table({"sv_a": edges[:, 0], "sv_b": edges[:, 1]}), pq_path)
    agglo = tmp_path / "in" / "agglo.csv"
    agglo.write_text("sv_id,cell_id\n1,1\n2,1\n9,1\n3,3\n4,3\n")
    for p in (csv, headerless, npy, pq_path):
        g = read_graph(p)
        assert g.kind == "edges" and g.edges.tolist() == [[1, 2], [2, 9], [3, 4]]
    wd = make_project(tmp_path, lab, min_cc_size_nm=100.0)
    run_rag(wd, compute=SERIAL, rag=agglo)
    comps = Project(wd).objects("sv_components").to_pydict()
    assert comps["component_id"] == [1, 1, 3, 3, 1]
    assert all(comps["kept"])
    assert Project(wd).objects("rag").to_pydict()["contact_faces"] == [110, 24, 110]


def test_rag_contact_faces_and_not_touching_warning(tmp_path):
    lab = stripes()
    wd = make_project(tmp_path, lab)
    p = tmp_path / "e.csv"
    p.write_text("sv_a,sv_b\n1,2\n1,3\n2,9\n")
    with pytest.warns(GraphInputWarning, match=r"1 of 3 edges join supervoxels that never touch.*\(1, 3\)"):
        run_rag(wd, compute=SERIAL, rag=p)
    rag = Project(wd).objects("rag").to_pydict()
    # 1|2 share an 11x10 face; 9 is a 2x2x2 cube inside 2: 6 faces of 4
    assert rag == {"sv_a": [1, 1, 2], "sv_b": [2, 3, 9], "contact_faces": [110, 0, 24]}


def test_bad_inputs_name_file_and_rows(tmp_path):
    wd = make_project(tmp_path, stripes())
    p = tmp_path / "bad.csv"
    p.write_text("sv_a,sv_b\n1,2\n2,2\n2,1\n1,77\n")
    with pytest.warns(GraphInputWarning) as rec:
        with pytest.raises(GraphInputError, match=r"bad.csv: 1 supervoxel ids are not in the sv layer \(e.g. 77\).*--drop-unknown"):
            run_rag(wd, compute=SERIAL, rag=p)
    msgs = [str(w.message) for w in rec]
    assert any("dropped 1 self edges (rows 1)" in m for m in msgs)
    assert any("dropped 1 duplicate edges (rows 2)" in m for m in msgs)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        rep = run_rag(wd, compute=SERIAL, rag=p, drop_unknown=True)
    assert rep.n_edges == 1
    wrong = tmp_path / "wrong.parquet"
    write_table_atomic(pa.table({"a": [1], "b": [2]}), wrong)
    with pytest.raises(GraphInputError, match=r"wrong.parquet: columns \['a', 'b'\] are neither an edge list"):
        read_graph(wrong)
    floats = tmp_path / "f.csv"
    floats.write_text("sv_a,sv_b\n1,2.5\n")
    with pytest.raises(GraphInputError, match=r"f.csv: column sv_b has non-integer values in rows 0"):
        read_graph(floats)
    neg = tmp_path / "neg.npy"
    np.save(neg, np.array([[1, -2]]))
    with pytest.raises(GraphInputError, match="negative ids in rows 0"):
        read_graph(neg)
    conflict = tmp_path / "agg.csv"
    conflict.write_text("sv_id,cell_id\n1,1\n1,2\n")
    with pytest.raises(GraphInputError, match=r"more than one cell in rows 1"):
        read_graph(conflict)
    big = tmp_path / "big.csv"
    big.write_text("sv_a,sv_b\n1,2\n2,3\n")
    wd2 = make_project(tmp_path / "x", stripes(), max_component_sv=2)
    with pytest.raises(RagError, match=r"more than cells.max_component_sv=2 .*component 1 with 3"):
        run_rag(wd2, compute=SERIAL, rag=big)


# --------------------------------------------------------------------------- pinky40


@pytest.fixture(scope="module")
def pinky(pinky40_labels):
    return np.asarray(pinky40_labels)


def pinky_sv_table(lab: np.ndarray) -> pa.Table:
    import fastremap

    ren, mapping = fastremap.renumber(lab, in_place=False)
    stats = cc3d.statistics(ren)
    inv = {v: k for k, v in mapping.items()}
    n = len(stats["voxel_counts"])
    idx = np.array([i for i in range(1, n) if stats["voxel_counts"][i] > 0])
    boxes = [stats["bounding_boxes"][i] for i in idx]
    cols = {"id": pa.array([inv[i] for i in idx], pa.uint64()), "size_vx": stats["voxel_counts"][idx]}
    for j, a in enumerate("xyz"):
        cols[f"bbox_min_{a}_vx"] = np.array([b[j].start for b in boxes])
    for j, a in enumerate("xyz"):
        cols[f"bbox_max_{a}_vx"] = np.array([b[j].stop for b in boxes])
    cen = stats["centroids"][idx]
    for j, a in enumerate("xyz"):
        cols[f"rep_{a}_vx"] = np.round(cen[:, j]).astype(np.int64)
    return pa.table(cols)


@pytest.mark.slow
def test_pinky40_contacts_and_pruning(tmp_path, pinky):
    lab = pinky
    wd = tmp_path / "wd"
    cfg = default_config((16.0, 16.0, 40.0))
    cfg.compute.block_size_vx = (256, 256, 256)
    cfg.cells.mesh = False
    write_config(wd, cfg)
    create_layer(wd, "sv", lab.shape, "uint64", (16, 16, 40), chunks_xyz=(128, 128, 128)).write(lab.astype(np.uint64))
    sv = pinky_sv_table(lab)
    write_table_atomic(sv, wd / "tables" / "sv.parquet")
    rep = run_rag(wd, compute=SERIAL)
    contacts = Project(wd).objects("sv_contacts")
    assert contacts.num_rows == 39_062
    assert table_contacts(contacts) == oracle_contacts(lab)
    assert rep.n_sv == 2523 and rep.n_components == 2523
    bmin = np.stack([sv[f"bbox_min_{a}_vx"].to_numpy() for a in "xyz"], 1)
    bmax = np.stack([sv[f"bbox_max_{a}_vx"].to_numpy() for a in "xyz"], 1)
    diag = np.sqrt((((bmax - bmin) * np.array([16, 16, 40])) ** 2).sum(1))
    expected = set(sv["id"].to_numpy()[diag > 5000].tolist())
    comps = Project(wd).objects("sv_components")
    kept = set(np.asarray(comps["sv_id"])[np.asarray(comps["kept"])].tolist())
    assert kept == expected
    print(f"pinky40: {len(expected)} of 2523 labels have a bbox diagonal > 5000 nm")
