"""Labels only (no mi/vc/sj): `run all` says up front what it will do without the organelle maps,
then gives cells, meshes, skeletons and the cell contact graph, whose areas equal a direct count
of the faces between cell labels. And the README's "Using it on your data" block, verbatim."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from syngraph.config import load_config, write_config
from syngraph.engine import Compute
from syngraph.io.volume import open_layer
from syngraph.synth import synthesize

README = Path(__file__).resolve().parents[1] / "README.md"


def syngraph(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "syngraph", *args], capture_output=True, text=True, cwd=cwd)


def face_areas_um2(cells: np.ndarray, voxel_size_nm) -> dict[tuple[int, int], float]:
    """The oracle: area of the faces between 6-adjacent voxels of two different cells (XYZ)."""
    vs = np.asarray(voxel_size_nm, float)
    out: dict[tuple[int, int], float] = {}
    for axis in range(3):
        a = np.moveaxis(cells, axis, 0)
        lo, hi = a[:-1].ravel(), a[1:].ravel()
        m = (lo != hi) & (lo > 0) & (hi > 0)
        pairs = np.stack([np.minimum(lo[m], hi[m]), np.maximum(lo[m], hi[m])], 1)
        keys, counts = np.unique(pairs, axis=0, return_counts=True)
        face_nm2 = float(np.prod(np.delete(vs, axis)))
        for (p, q), n in zip(keys.tolist(), counts.tolist(), strict=True):
            out[(p, q)] = out.get((p, q), 0.0) + n * face_nm2 / 1e6
    return out


def test_labels_only_run_all_gives_the_cell_contact_graph(tmp_path):
    wd = tmp_path / "demo"
    synthesize(wd, shape_xyz=(96, 96, 48), seed=3, compute=Compute(scheduler="serial"), progress=False)
    cfg = load_config(wd)
    cfg.layers = {"sv": cfg.layers["sv"]}  # a lab with a segmentation and nothing else
    cfg.cells.min_cc_size_nm = 0  # keep the fragments the small volume cuts off: more pairs
    write_config(wd, cfg)
    r = syngraph("run", "all", "--wd", str(wd), "--scheduler", "serial")
    assert r.returncode == 0, r.stderr
    plan = r.stderr[: r.stderr.index("init done")]  # printed before any step ran
    assert "'sj' not imported; it would add: synapses between cells" in plan
    assert "'vc' not imported; it would add: synapse direction" in plan
    assert "layer 'mi' is imported but not listed" in plan  # synth wrote it; the config does not use it
    assert not (wd / "tables" / "mi.parquet").exists() and not (wd / "tables" / "syn_ssv.parquet").exists()

    s2c = pq.read_table(wd / "tables" / "sv_to_cell.parquet")
    cells = pq.read_table(wd / "tables" / "cells.parquet")
    assert cells.num_rows >= 5
    assert pq.read_table(wd / "tables" / "skeletons.parquet").num_rows > 0
    assert any((wd / "meshes" / "cells").iterdir())
    # the oracle: relabel the volume by the run's sv -> cell map and count faces between cells
    sv = open_layer(wd, "sv").read()
    lut = dict(zip(s2c["sv_id"].to_pylist(), s2c["cell_id"].to_pylist(), strict=True))
    ids, inv = np.unique(sv, return_inverse=True)
    cell_vol = np.array([lut.get(int(i), 0) for i in ids], np.uint64)[inv].reshape(sv.shape)
    truth = face_areas_um2(cell_vol, cfg.voxel_size_nm)
    conns = pq.read_table(wd / "tables" / "connections.parquet")
    assert conns.column_names == ["cell_a", "cell_b", "contact_area_um2", "contact_size_vx", "n_sv_pairs"]
    got = {(a, b): x for a, b, x in zip(conns["cell_a"].to_pylist(), conns["cell_b"].to_pylist(),
                                        conns["contact_area_um2"].to_pylist(), strict=True) if x > 0}
    assert len(truth) >= 5 and got.keys() == truth.keys()
    np.testing.assert_allclose([got[k] for k in truth], list(truth.values()), rtol=1e-9)
    # pairs with no face touch across a background gap only: area 0, counted in voxels
    assert all(r["contact_size_vx"] > 0 for r in conns.to_pylist() if r["contact_area_um2"] == 0)
    r = syngraph("export", "synapses", "--wd", str(wd))
    assert r.returncode == 0 and "cell_contacts.csv" in r.stderr and "no sj layer" in r.stderr
    # the truth has organelles, the run has no maps: evaluate scores the cells and skips organelles
    r = syngraph("evaluate", "--wd", str(wd))
    assert r.returncode == 0, r.stderr
    scores = json.loads((wd / "evaluation.json").read_text())
    assert scores["init"]["metrics"] == {} and scores["matrix"]["metrics"] == {}
    assert scores["cells"]["metrics"]["n_true_neurons"] >= 1


def readme_blocks() -> tuple[list[str], str]:
    """The shell lines and the Python block of the README's "Using it on your data"."""
    text = README.read_text()
    part = text[text.index("## Using it on your data"):]
    shell = re.search(r"```bash\n(.*?)```", part, re.S).group(1)
    python = re.search(r"```python\n(.*?)```", part, re.S).group(1)
    return [ln for ln in shell.splitlines() if ln.strip()], python


def rods(tmp_path: Path) -> tuple[np.ndarray, dict[tuple[int, int], float]]:
    """Six cells as rods along x (3 x 2 grid in y, z) at 16 x 16 x 40 nm, and their exact
    contact areas: y neighbours share 320 x 8 faces of 16 x 40 nm^2, z neighbours 320 x 16 of 16 x 16."""
    seg = np.zeros((320, 48, 16), np.uint64)  # XYZ; 5.1 um long, over the 5 um cell-size cut
    ids = {}
    for j in range(3):
        for k in range(2):
            ids[j, k] = 2**40 + 10 * j + k
            seg[:, 16 * j:16 * (j + 1), 8 * k:8 * (k + 1)] = ids[j, k]
    truth = {}
    for k in range(2):
        for j in range(2):
            truth[tuple(sorted((ids[j, k], ids[j + 1, k])))] = 320 * 8 * 16 * 40 / 1e6
    for j in range(3):
        truth[tuple(sorted((ids[j, 0], ids[j, 1])))] = 320 * 16 * 16 * 16 / 1e6
    return seg, truth


@pytest.mark.parametrize("scheduler", [
    pytest.param("serial", id="serial"),
    pytest.param(None, id="verbatim", marks=pytest.mark.slow),  # a local Dask cluster per command
])
def test_readme_on_your_data_block_runs_verbatim(tmp_path, monkeypatch, scheduler):
    """Every line of the README block as written (the fast variant appends `--scheduler serial`
    to the import and run lines, whose local Dask cluster takes most of a minute on 2 cores)."""
    import h5py

    shell, python = readme_blocks()
    data = tmp_path / "data"
    data.mkdir()
    seg, truth = rods(tmp_path)
    np.save(data / "seg.npy", seg)  # XYZ, as the README says
    mito = np.zeros((16, 48, 320), np.uint8)  # ZYX, as most tools write HDF5
    for x in (40, 150, 260):
        mito[:, 2:22, x:x + 30] = 230  # thick enough for the watershed seeds (4 erosions)
    with h5py.File(data / "mito_prob.h5", "w") as f:
        f["prob"] = mito
    for line in shell:
        assert line.startswith("syngraph "), line
        cmd = f"{sys.executable} -m {line.replace('/data/', f'{data}/')}"
        if scheduler and line.split()[1] in ("import", "run"):
            cmd = cmd.split("#")[0] + f" --scheduler {scheduler}"
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, (line, r.stderr)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(python, ns)  # noqa: S102 - the README's lines, as a user would paste them
    p = ns["p"]
    np.testing.assert_array_equal(p.layer("sv").read(), seg)  # the .npy came in XYZ, not transposed
    assert p.objects("mi").to_pandas().shape[0] == 3
    df = p.sql("select cell_a, cell_b, contact_area_um2 from cs_ssv order by contact_area_um2 desc").df()
    got = {(int(a), int(b)): x for a, b, x in df.itertuples(index=False)}
    assert got.keys() == truth.keys()
    np.testing.assert_allclose([got[k] for k in truth], list(truth.values()))
    assert p.sql("select count(*) from connections", output="pandas").iloc[0, 0] == 7
    assert len(p.cell(ns["cell_id"]).mesh.vertices) > 0


def test_plan_names_every_missing_input_before_any_step(tmp_path):
    from syngraph.checks import check_project
    from syngraph.config import ConfigError, LayerSource, default_config, write_config
    from syngraph.io.volume import create_layer
    from syngraph.pipeline import plan_run

    create_layer(tmp_path, "sv", (8, 8, 4), "uint64", (16, 16, 40))
    create_layer(tmp_path, "syn_type", (8, 8, 4), "uint8", (16, 16, 40), kind="probability")
    cfg = default_config((16, 16, 40))  # lists mi, vc, sj: none imported
    write_config(tmp_path, cfg)
    with pytest.raises(ConfigError, match=r"3 problems\n  layer 'mi' is named in \[layers\] but unusable: layer 'mi' "
                                          r"not found .*syngraph import mi SOURCE.*\n  layer 'vc'.*\n  layer 'sj'"):
        check_project(tmp_path)
    cfg.layers = {"sv": LayerSource(path="sv", kind="labels")}
    cfg.rag = "graph.csv"
    write_config(tmp_path, cfg)
    with pytest.raises(ConfigError, match=r'rag = "graph.csv": .*graph.csv does not exist'):
        check_project(tmp_path)
    cfg.layers = {}
    write_config(tmp_path, cfg)
    with pytest.raises(ConfigError, match=r"no \[layers.sv\]; every step needs the cell supervoxels"):
        check_project(tmp_path)
    cfg.layers = {"sv": LayerSource(path="sv", kind="labels")}
    plan = plan_run(tmp_path, ["cells", "skeletons", "synapses", "matrix"], cfg)  # rag not in this run
    assert [(u.layer, u.step) for u in plan.missing] == [
        ("myelin", "skeletons"), ("sj", "synapses"), ("vc", "synapses"), ("syn_type", "synapses"),
        ("mi", "synapses"), ("sj", "matrix")]
    assert plan.unused == ("syn_type",)
    text = "\n".join(plan.lines())
    assert "cells: runs (all its inputs present)" in text and "init" not in text
    assert "layer 'syn_type' is imported but not listed" in text
