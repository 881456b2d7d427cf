"""Every export checked with its ecosystem's own validator, and `syngraph view` in headless
Chromium, on one small demo project."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from syngraph.engine import Compute

SERIAL = Compute(scheduler="serial")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A 160x160x64 demo tissue through every step."""
    from syngraph.config import load_config, write_config
    from syngraph.pipeline import run_step, step_names
    from syngraph.synth import synthesize

    wd = tmp_path_factory.mktemp("exports") / "wd"
    synthesize(wd, shape_xyz=(160, 160, 64), seed=11, compute=SERIAL)
    # the volume's one soma is a 230 nm slice of a soma centred 2.3 um outside it, which the
    # sliver rule peels (docs/skeletons.md); the SWC test needs a soma root
    cfg = load_config(wd)
    write_config(wd, cfg.model_copy(update={"skeletons": cfg.skeletons.model_copy(update={"peel_face_slivers": False})}))
    for step in step_names():
        run_step(wd, step, compute=SERIAL)
    assert pq.read_metadata(wd / "tables" / "synapses.parquet").num_rows > 0
    return wd


# --------------------------------------------------------------------------- CAVE


def test_cave_table_is_valid_synapse_schema(demo):
    ems = pytest.importorskip("emannotationschemas", reason="emannotationschemas is not installed: its metadata pins numpy<2, so install it without its dependencies (they are in the test extra): pip install --no-deps emannotationschemas==5.26.3 (.ci/run does)")
    from syngraph.io.volume import open_layer

    t = pq.read_table(demo / "export" / "cave_synapses.parquet")
    flat = ems.get_flat_schema("synapse")()
    assert set(flat.fields) <= set(t.column_names)
    rows = t.to_pylist()
    for row in rows:
        record = {k: row[k] for k in flat.fields}
        assert flat.validate(record) == {}, record
        assert isinstance(row["size"], float)
    meta = pq.read_schema(demo / "export" / "cave_synapses.parquet").metadata
    assert json.loads(meta[b"voxel_resolution_nm"]) == [10.0, 10.0, 25.0]
    # the pre (post) point is a voxel of the pre (post) supervoxel, next to the centre
    sv = open_layer(demo, "sv").read()
    for row in rows:
        for side in ("pre", "post"):
            x, y, z = row[f"{side}_pt_position"]
            assert sv[x, y, z] == row[f"{side}_pt_supervoxel_id"]
        d = np.subtract(row["pre_pt_position"], row["ctr_pt_position"]) * [10, 10, 25]
        assert np.linalg.norm(d) <= 200 * np.sqrt(3)
    assert any(r["pre_pt_position"] != r["post_pt_position"] for r in rows)


# --------------------------------------------------------------------------- neuPrint

# neo4j-admin import header grammar: name:type, :ID(space), :START_ID(space), :END_ID(space), :LABEL
HEADER = re.compile(
    r"^(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)?:(?P<key>ID|START_ID|END_ID)\((?P<space>[A-Za-z-]+)\)"
    r"|:LABEL|:TYPE"
    r"|(?P<prop>[A-Za-z_][A-Za-z0-9_]*):(?P<type>int|long|float|double|boolean|string|point\{srid:9157\}))$"
)
VALUE = {
    "int": re.compile(r"^-?\d+$"), "long": re.compile(r"^-?\d+$"),
    "float": re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$"), "string": re.compile(r".*"),
    "point{srid:9157}": re.compile(r"^\{x:-?\d+(\.\d+)?, y:-?\d+(\.\d+)?, z:-?\d+(\.\d+)?\}$"),
}


def _read_csv(path):
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_neuprint_bulk_import_set(demo):
    out = demo / "export" / "neuprint"
    files = sorted(out.glob("*.csv"))
    assert {f.name for f in files} >= {
        "Neuprint_Neurons.csv", "Neuprint_Neuron_Connections.csv", "Neuprint_Synapses.csv",
        "Neuprint_SynapseSet.csv", "Neuprint_Neuron_to_SynapseSet.csv",
        "Neuprint_SynapseSet_to_SynapseSet.csv", "Neuprint_SynapseSet_to_Synapses.csv",
        "Neuprint_Synapse_Connections.csv"}
    ids: dict[str, set[str]] = {}
    refs: list[tuple[str, str]] = []
    tables = {}
    for f in files:
        header, rows = _read_csv(f)
        tables[f.name] = (header, rows)
        for k, h in enumerate(header):
            m = HEADER.match(h)
            assert m, f"{f.name}: header {h!r} is not neo4j-admin import grammar"
            col = [r[k] for r in rows]
            if m["type"]:
                assert all(VALUE[m["type"]].match(v) for v in col), (f.name, h, col[:3])
            if m["key"] == "ID":
                assert len(set(col)) == len(col), f"{f.name}: duplicate ids"
                ids.setdefault(m["space"], set()).update(col)
            elif m["key"]:
                refs.extend((m["space"], v) for v in col)
    assert all(v in ids[space] for space, v in refs), "a relationship names an id no node file has"
    syn = pq.read_table(demo / "tables" / "synapses.parquet")
    header, rows = tables["Neuprint_Neuron_Connections.csv"]
    assert sum(int(r[1]) for r in rows) == syn.num_rows
    header, rows = tables["Neuprint_Neurons.csv"]
    assert sum(int(r[header.index("pre:int")]) for r in rows) == syn.num_rows
    header, rows = tables["Neuprint_Synapses.csv"]
    assert len(rows) == 2 * syn.num_rows
    assert {r[1] for r in rows} == {"pre", "post"}


# --------------------------------------------------------------------------- SyConn


def test_conn_mat_reads_as_syconn_writes_it(demo):
    from syngraph.export.syconn import COLUMNS

    path = demo / "export" / "conn_mat.csv"
    text = path.read_text()
    assert text.splitlines()[0] == "# " + "\t".join(COLUMNS)
    a = np.loadtxt(path, delimiter="\t", ndmin=2)
    rich = pq.read_table(demo / "export" / "conn_mat.parquet")
    assert a.shape == (rich.num_rows, 35)
    # SyConn's reader (pandas, tab-separated, header '# x'): 35 named columns
    import io

    import pandas as pd

    df = pd.read_csv(io.StringIO(text[2:]), sep="\t")
    assert list(df.columns) == COLUMNS and len(df) == rich.num_rows
    # byte-compatible: SyConn's own np.savetxt call on the same numbers writes the same file
    buf = io.StringIO()
    np.savetxt(buf, a, delimiter="\t", header="\t".join(COLUMNS))
    assert buf.getvalue() == text
    syn = pq.read_table(demo / "tables" / "synapses.parquet")
    sign = syn["sign"].to_numpy()
    area = syn["area_um2"].to_numpy()
    np.testing.assert_allclose(a[:, 5], np.where(sign < 0, -area, area))
    np.testing.assert_array_equal(a[:, 3], syn["pre_cell_id"].to_numpy().astype(float))


# --------------------------------------------------------------------------- skeletons


def _label_from_truth(wd):
    """Each of our skeleton nodes labelled with the compartment of the nearest true node (an
    oracle independent of syngraph), written where the compartment step writes its labels."""
    import pyarrow as pa
    from scipy.spatial import cKDTree

    ours = pq.read_table(wd / "tables" / "skeletons.parquet").to_pandas()
    gt = pq.read_table(wd / "gt" / "skeletons.parquet").to_pandas()
    tree = cKDTree(gt[["x_nm", "y_nm", "z_nm"]].to_numpy())
    _, k = tree.query(ours[["x", "y", "z"]].to_numpy())
    labels = gt["compartment"].to_numpy()[k].astype(np.uint8)
    t = pa.table({"cell_id": pa.array(ours["neuron"].to_numpy(), pa.uint64()),
                  "node_id": pa.array(ours["node_id"].to_numpy(), pa.int64()),
                  "label": pa.array(labels, pa.uint8())})
    pq.write_table(t, wd / "tables" / "compartments_nodes.parquet")
    return t


def test_swc_types_from_compartments_and_soma_root(demo):
    navis = pytest.importorskip("navis", reason="navis is in the test extra")
    from syngraph.compartments import SOMA, to_swc
    from syngraph.export.swc import export_swc
    from syngraph.skeleton_io import read_skeleton

    labels = _label_from_truth(demo)
    try:
        paths = export_swc(demo, demo / "export" / "swc")
    finally:
        (demo / "tables" / "compartments_nodes.parquet").unlink()
    kinds = dict(zip(*(pq.read_table(demo / "tables" / "cells.parquet")[c].to_pylist() for c in ("cell_id", "kind")),
                     strict=True))
    n_soma_roots = 0
    for p in paths:
        cid = int(p.stem)
        n = navis.read_swc(str(p))
        skel = read_skeleton(demo, cid)
        assert n.n_nodes == len(skel)
        assert n.cable_length == pytest.approx(skel.cable_length_um * 1000, rel=1e-3)
        mine = labels.filter(labels["cell_id"].to_numpy() == cid)["label"].to_numpy()
        # types per node, matched by position (the export renumbers nodes)
        order = np.lexsort(skel.nodes_nm.T)
        nodes = n.nodes.sort_values(["z", "y", "x"])
        want = np.full(len(skel), 7) if kinds[cid] == "astrocyte" else to_swc(mine[order])
        np.testing.assert_array_equal(nodes["label"].to_numpy().astype(int), want)
        root = n.nodes[n.nodes.parent_id < 0]
        if (mine == SOMA).any() and kinds[cid] != "astrocyte":
            assert (root["label"].astype(int) == 1).any(), f"cell {cid}: soma nodes but no soma root"
            n_soma_roots += 1
        # valid SWC order: parents listed before children, one root per tree, a soma root in
        # every tree that has soma nodes
        rows = np.loadtxt(p, ndmin=2)
        pos = {int(i): k for k, i in enumerate(rows[:, 0])}
        assert all(pos[int(par)] < k for k, par in enumerate(rows[:, 6]) if par >= 0)
        from syngraph.skeleton import components

        tree = components(len(skel), skel.edges)
        assert len(root) == len(np.unique(tree))
        if kinds[cid] != "astrocyte":
            soma_trees = np.unique(tree[mine == SOMA])
            assert int((root["label"].astype(int) == 1).sum()) == len(soma_trees)
        # osteoid reads the same file
        osteoid = pytest.importorskip("osteoid")
        o = osteoid.Skeleton.from_swc(p.read_text())
        assert len(o.vertices) == len(skel)
    assert n_soma_roots >= 1


def test_swc_roots_at_the_thickest_soma_node_else_the_root():
    from syngraph.export.swc import with_compartments
    from syngraph.skeleton_io import CellSkeleton

    # tree A: 0-1-2-3-4 rooted at 0, soma nodes 2 (r 5) and 3 (r 6); tree B: 5-6 rooted at 5, no soma
    skel = CellSkeleton(7, np.arange(7), np.array([-1, 0, 1, 2, 3, -1, 5]), np.arange(21, dtype=np.float32).reshape(7, 3),
                        np.array([9, 1, 5, 6, 1, 1, 8], np.float32))
    out = with_compartments(skel, np.array([0, 0, 1, 1, 0, 0, 0], np.uint8))
    old = np.round(out.nodes_nm[:, 0] / 3).astype(int)  # original node index of each output node
    assert old.tolist() == [3, 2, 4, 1, 0, 5, 6]
    assert out.parent_id.tolist() == [-1, 0, 0, 1, 3, -1, 5]
    assert out.attributes["compartment"].tolist() == [1, 1, 0, 0, 0, 0, 0]


def test_precomputed_skeletons_float32_attributes(demo):
    osteoid = pytest.importorskip("osteoid")
    from syngraph.skeleton_io import cell_ids, read_skeleton

    info = json.loads((demo / "skeletons" / "info").read_text())
    assert {a["data_type"] for a in info["vertex_attributes"]} == {"float32"}  # google/neuroglancer#572
    for cid in cell_ids(demo):
        data = (demo / "skeletons" / str(int(cid))).read_bytes()
        o = osteoid.Skeleton.from_precomputed(data, segid=int(cid), vertex_attributes=info["vertex_attributes"])
        skel = read_skeleton(demo, int(cid))
        np.testing.assert_allclose(o.vertices, skel.nodes_nm)
        np.testing.assert_allclose(o.radius, skel.radius_nm)
        assert len(o.edges) == len(skel) - int((skel.parent_id < 0).sum())
    navis = pytest.importorskip("navis")
    nl = navis.read_precomputed(str(demo / "skeletons"), datatype="skeleton", info=True)
    assert len(nl) == len(cell_ids(demo))


# --------------------------------------------------------------------------- OME-Zarr


def test_every_volume_validates_as_ome_zarr(demo):
    pytest.importorskip("ome_zarr_models")
    import zarr
    from ome_zarr_models.v05 import Image, ImageLabel, Labels

    from syngraph.io.volume import list_layers, open_layer, store_path

    root = zarr.open_group(str(store_path(demo)), mode="r", zarr_format=3)
    labels = Labels.from_zarr(root)
    names = list_layers(demo)
    want = [n for n in names if open_layer(demo, n).info.kind in ("labels", "mask")]
    assert sorted(labels.attributes.ome.labels) == sorted(want) and "sv" in want
    for name in names:
        group = root[name]
        model = (ImageLabel if name in want else Image).from_zarr(group)
        assert ("image-label" in group.attrs["ome"]) == (name in want), name
        ms = model.attributes.ome.multiscales[0]
        assert [a.name for a in ms.axes] == ["z", "y", "x"]
        scale = ms.datasets[0].coordinateTransformations[0].scale
        assert list(scale) == [25.0, 10.0, 10.0]


# --------------------------------------------------------------------------- syngraph view

LAYER_STATUS_JS = """
const v = window.viewer;
if (!v) return null;
return v.layerManager.managedLayers.map(l => [l.name, l.layer ? l.layer.dataSources.map(ds => {
  const s = ds.loadState;
  return s === undefined ? 'loading' : (s.error ? 'ERROR ' + s.error.message : 'ok');
}) : ['loading']]);
"""
SHADER_ERRORS_JS = """
return window.viewer.layerManager.managedLayers.flatMap(l => [l.layer.shaderError,
    l.layer.displayState && l.layer.displayState.shaderError]
  .filter(w => w && w.value).map(w => [l.name, String(w.value.message || w.value)]));
"""


def test_view_state_only_prints_json(demo):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "syngraph", "view", "--wd", str(demo), "--state-only"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    state = json.loads(r.stdout)
    assert state["dimensions"] == {"x": [1e-08, "m"], "y": [1e-08, "m"], "z": [2.5e-08, "m"]}
    assert state["position"] == [80.0, 80.0, 32.0]
    names = [layer["name"] for layer in state["layers"]]
    assert {"cells", "synapses", "mi", "vc", "sj"} <= set(names)
    cells = state["layers"][names.index("cells")]
    assert any(s.endswith("/meshes/cells") for s in cells["source"])
    assert any(s.endswith("/skeletons") for s in cells["source"])
    assert any(s.endswith("/segment_properties") for s in cells["source"])
    s2c = pq.read_table(demo / "tables" / "sv_to_cell.parquet")
    multi = sum(len(g) for g in cells["equivalences"])
    assert multi == sum(n for n in np.unique(s2c["cell_id"].to_numpy(), return_counts=True)[1] if n > 1)
    r = subprocess.run([sys.executable, "-m", "syngraph", "view", "--wd", str(demo / "nope"), "--state-only"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no sv layer" in (r.stdout + r.stderr)


def test_view_loads_every_layer_in_headless_chromium(demo, tmp_path):
    import shutil
    import time

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("headless browser test needs chromium and chromedriver "
                    "(apt-get install chromium chromium-driver; .ci/run installs them)")
    pytest.importorskip("neuroglancer")
    selenium = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    from syngraph.export.neuroglancer import viewer_state, write_neuroglancer
    from syngraph.export.viewer import open_viewer, serve_directory

    _label_from_truth(demo)  # compartments: skeletons coloured by them
    try:
        write_neuroglancer(demo)
    finally:
        (demo / "tables" / "compartments_nodes.parquet").unlink()
    server = serve_directory(demo)
    state = viewer_state(demo, f"http://127.0.0.1:{server.server_address[1]}")
    cells = next(layer for layer in state["layers"] if layer["name"] == "cells")
    assert any(s.endswith("/export/neuroglancer/skeletons") for s in cells["source"])
    viewer = open_viewer(state)
    opts = selenium.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800",
              "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = selenium.Chrome(service=Service(driver), options=opts)
    try:
        d.get(viewer.get_viewer_url())
        status = None
        for _ in range(120):
            status = d.execute_script(LAYER_STATUS_JS)
            if status and all(s != "loading" for _, ss in status for s in ss):
                break
            time.sleep(0.5)
        time.sleep(3)  # let chunks, meshes and skeletons draw
        shader_errors = d.execute_script(SHADER_ERRORS_JS)  # image, skeleton and annotation shaders
        shot = tmp_path / "view.png"
        d.save_screenshot(str(shot))
        logs = d.get_log("browser")
    finally:
        d.quit()
        server.shutdown()
    status = dict(status or [])
    assert set(status) == {layer["name"] for layer in state["layers"]}
    errors = {name: s for name, ss in status.items() for s in ss if s != "ok"}
    assert not errors, errors
    assert not shader_errors, shader_errors
    assert len(cells["source"]) == 4  # sv, meshes, skeletons, segment properties
    assert len(status["cells"]) >= 4 and status["synapses"] == ["ok"]
    severe = [e["message"] for e in logs if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not severe, severe
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[1] == 1200 and img.shape[0] > 500 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50


# --------------------------------------------------------------------------- cell meshes


def test_cell_meshes_closed_and_true_to_voxel_volume(demo):
    """Every cell mesh is closed; cells above 10,000 voxels enclose their voxel volume within 5 %
    (trimesh's volume); and the volume fit brings the surface closer to the full-resolution surface
    (an independent check of shape, not of volume)."""
    trimesh = pytest.importorskip("trimesh")
    from scipy.spatial import cKDTree

    from syngraph.config import load_config
    from syngraph.io.volume import open_layer
    from syngraph.meshes import read_mesh
    from syngraph.steps.cell_meshes import mesh_pooled, pool_any

    cfg = load_config(demo)
    ds = tuple(cfg.meshes.sv_downsample)
    vs = np.asarray(cfg.voxel_size_nm)
    cells = pq.read_table(demo / "tables" / "cells.parquet").to_pydict()
    s2c = pq.read_table(demo / "tables" / "sv_to_cell.parquet").to_pydict()
    sv = open_layer(demo, "sv").read()
    ratios, closer = [], 0
    for cid, n in zip(cells["cell_id"], cells["size_vx"], strict=True):
        v, f = read_mesh(demo / "meshes" / "cells", cid)
        m = trimesh.Trimesh(v, f, process=False)
        assert m.is_watertight and m.is_winding_consistent, cid
        if n > 10_000:
            ratios.append(abs(m.volume) / (n * vs.prod()))
        mask = np.isin(sv, [s for s, c in zip(s2c["sv_id"], s2c["cell_id"], strict=True) if c == cid])
        fine_v, _ = mesh_pooled(mask, (0, 0, 0), tuple(vs))  # full resolution: the reference surface
        raw_v, _ = mesh_pooled(pool_any(mask, ds), (0, 0, 0), tuple(vs), ds)  # pooled, not fitted
        tree = cKDTree(fine_v)
        closer += tree.query(v)[0].mean() < tree.query(raw_v)[0].mean()
    assert len(ratios) >= 5
    assert max(abs(r - 1) for r in ratios) < 0.05, ratios
    assert closer == len(cells["cell_id"])


# --------------------------------------------------------------------------- tables


def test_every_table_carries_the_same_provenance(demo):
    """Every Parquet table and export holds voxel size, version, config hash and its step."""
    import hashlib

    from syngraph import __version__
    from syngraph.pipeline import step_names

    sha = hashlib.sha256((demo / "syngraph.toml").read_bytes()).hexdigest()
    paths = sorted((demo / "tables").glob("*.parquet")) + sorted((demo / "export").glob("*.parquet"))
    assert len(paths) > 15
    for p in paths:
        meta = {k.decode(): v.decode() for k, v in (pq.read_schema(p).metadata or {}).items()}
        assert json.loads(meta.get("voxel_size_nm", "null")) == [10.0, 10.0, 25.0], p.name
        assert meta.get("syngraph_version") == __version__ and meta.get("config_sha256") == sha, p.name
        assert meta.get("step") in step_names(), (p.name, meta.get("step"))


# Column units (docs/formats.md, "Tables: columns and units"): a numeric column names its unit as
# one of these underscore-separated tokens; areas are um2 and volumes um3 in every table (never nm2/nm3).
UNIT_TOKENS = {"vx", "nm", "um", "um2", "um3", "deg"}
# Numeric columns that hold no physical quantity, by kind. Any other numeric column must name a unit.
UNITLESS = {
    "ids": {"id", "sv_a", "sv_b", "cell_a", "cell_b"},  # and every name ending in "_id"
    "counts": {"contact_faces", "faces"},  # and every name starting with "n_"
    "probabilities and confidences": {"astrocyte_prob", "astrocyte_prob_local", "celltype_certainty",
                                      "syn_prob", "sj_mean", "sj_max", "direction_conf"},  # and "p_*"
    "ratios and fractions": {"ratio", "sym_ratio", "contact_fraction", "solidity", "mi_density",
                             "vc_density", "radius_cv", "sj_per_vc"},  # and "frac_*", "*_frac"
    "codes": {"sign", "compartment", "astrocyte_kind"},
    # the astrocyte model's feature names, stored in and checked against its model file
    "model features": {"log_surface_to_volume", "log_branchiness", "log_elongation", "log_flatness"},
    "learned embeddings": {"pre_embedding", "post_embedding"},  # and "e0", "e1", ...
}
# Tables in an external format keep that format's column names.
EXTERNAL = {
    "cave_synapses.parquet": "CAVE synapse schema (positions in voxels at voxel_resolution_nm)",
    "conn_mat.parquet": "SyConn2 conn_mat columns (x, y, z in voxels; size in um2)",
    "skeletons.parquet": "navis Parquet skeletons (x, y, z, radius in nm, stated in the metadata)",
}
SYCONN_EXTRA = {"sign", "synapse_id", "area_um2"}  # ours, after SyConn's columns


def unitless(name: str) -> bool:
    return (any(name in names for names in UNITLESS.values()) or name.endswith("_id") or name.startswith(("n_", "p_", "frac_"))
            or name.endswith("_frac") or re.fullmatch(r"e\d+", name) is not None)


def unit_problems(path) -> list[str]:
    """Numeric columns of one Parquet table that neither name a unit nor are allowed without one."""
    import pyarrow as pa

    out = []
    for field in pq.read_schema(path):
        name, t = field.name, field.type
        while pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
            t = t.value_type
        tokens, where = set(name.split("_")), f"{path.parent.name}/{path.name}:{name}"
        if tokens & {"nm2", "nm3"}:
            out.append(f"{where} (areas in um2, volumes in um3)")
            continue
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)) or tokens & UNIT_TOKENS or unitless(name):
            continue
        if path.name in EXTERNAL and (path.name != "conn_mat.parquet" or name not in SYCONN_EXTRA):
            continue
        out.append(where)
    return out


def test_unit_check_flags_what_it_must(tmp_path):
    import pyarrow as pa

    p = tmp_path / "tables" / "t.parquet"
    p.parent.mkdir()
    pq.write_table(pa.table({"cell_id": [1], "size": [2], "area_nm2": [3.0], "rep_x": [4], "x_vx": [5],
                             "n_sv": [6], "p_soma": [0.5], "kind": ["a"], "e3": [0.1]}), p)
    assert unit_problems(p) == ["tables/t.parquet:size", "tables/t.parquet:area_nm2 (areas in um2, volumes in um3)",
                                "tables/t.parquet:rep_x"]


def test_every_numeric_column_names_its_unit(demo):
    """Every table the pipeline and the demo write: a unit in every physical column's name."""
    paths = [p for d in ("tables", "export", "gt") for p in sorted((demo / d).glob("*.parquet"))]
    assert {"sv.parquet", "cells.parquet", "cs.parquet", "sv_contacts.parquet", "synapses.parquet"} <= {p.name for p in paths}
    problems = [s for p in paths for s in unit_problems(p)]
    assert not problems, problems


def test_partner_points_match_a_brute_force_search(tmp_path):
    """Tile-grouped reads give each synapse the partner voxel nearest in nm within its window,
    as a search over every voxel of the volume does (ties broken by XYZ order in both)."""
    from syngraph.export.points import partner_points_vx
    from syngraph.io.volume import create_layer

    rng = np.random.default_rng(3)
    labels = rng.integers(1, 6, (40, 36, 12)).astype(np.uint64)
    labels[rng.random(labels.shape) < 0.6] = 0
    vs = np.array([8.0, 8.0, 40.0])
    sv = create_layer(tmp_path, "sv", labels.shape, "uint64", tuple(vs), chunks_xyz=(16, 16, 8))
    sv.write(labels)
    centre = np.stack([rng.integers(0, s, 60) for s in labels.shape], 1)
    centre[0] = (0, 0, 0)  # windows clipped by the volume
    pre_sv, post_sv = rng.integers(1, 7, 60), rng.integers(1, 7, 60)  # label 6 never occurs
    pre, post = partner_points_vx(sv, centre, pre_sv, post_sv, radius_nm=40.0, tile_vx=(16, 8, 4))
    r = np.ceil(40.0 / vs).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in labels.shape], indexing="ij"), -1)
    for i, c in enumerate(centre):
        for got, label in ((pre[i], pre_sv[i]), (post[i], post_sv[i])):
            inside = (labels == label) & np.all(np.abs(grid - c) <= r, -1)
            if not inside.any():
                assert got.tolist() == c.tolist()
                continue
            cand = grid[inside]
            d = (((cand - c) * vs) ** 2).sum(1)
            assert got.tolist() == cand[np.argmin(d)].tolist()
