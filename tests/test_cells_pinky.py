"""Steps rag, astrocytes and cells on the real pinky40 volume (slow; skips without ../shared)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_rag import SERIAL, pinky_sv_table

from syngraph.config import default_config, write_config
from syngraph.engine import write_table_atomic
from syngraph.io.volume import create_layer
from syngraph.models.astrocyte import FEATURES
from syngraph.project import Project
from syngraph.steps.astrocytes import run_astrocytes
from syngraph.steps.cells import run_cells
from syngraph.steps.rag import run_rag


def _project(tmp_path, lab, min_cc_size_nm, mesh):
    wd = tmp_path / f"wd{int(min_cc_size_nm)}"
    cfg = default_config((16.0, 16.0, 40.0))
    cfg.compute.block_size_vx = (256, 256, 256)
    cfg.cells.min_cc_size_nm = min_cc_size_nm
    cfg.cells.mesh = mesh
    write_config(wd, cfg)
    create_layer(wd, "sv", lab.shape, "uint64", (16, 16, 40), chunks_xyz=(128, 128, 128)).write(lab.astype(np.uint64))
    write_table_atomic(pinky_sv_table(lab), wd / "tables" / "sv.parquet")
    return wd


@pytest.mark.slow
@pytest.mark.pinky
@pytest.mark.parametrize("min_cc_size_nm", [0.0, 5000.0], ids=["no-pruning", "default-pruning"])
def test_pinky40_cells_without_graph(tmp_path, pinky40_labels, min_cc_size_nm):
    """No graph given: every label is its own cell (2,523 with pruning off; with the default
    pruning exactly the labels whose bbox diagonal exceeds 5000 nm), every label gets finite
    astrocyte features and a probability, and (default pruning) every cell a closed mesh."""
    lab = np.asarray(pinky40_labels)
    wd = _project(tmp_path, lab, min_cc_size_nm, mesh=min_cc_size_nm > 0)
    t0 = time.perf_counter()
    run_rag(wd, compute=SERIAL)
    t1 = time.perf_counter()
    run_astrocytes(wd, compute=SERIAL)
    t2 = time.perf_counter()
    run_cells(wd, compute=SERIAL)
    t3 = time.perf_counter()
    p = Project(wd)
    sv = p.objects("sv")
    feats = p.objects("sv_features")
    assert feats.num_rows == 2523
    x = np.stack([feats.column(f).to_numpy() for f in FEATURES], 1)
    assert np.isfinite(x).all()
    sol = feats.column("solidity").to_numpy()
    assert ((sol > 0) & (sol <= 1)).all()
    prob = p.objects("sv_class").column("astrocyte_prob").to_numpy()
    assert np.isfinite(prob).all() and ((prob >= 0) & (prob <= 1)).all()
    cells = p.objects("cells")
    s2c = p.objects("sv_to_cell")
    assert (s2c.column("sv_id").to_numpy() == s2c.column("cell_id").to_numpy()).all()  # one label, one cell
    bmin = np.stack([sv[f"bbox_min_{a}_vx"].to_numpy() for a in "xyz"], 1)
    bmax = np.stack([sv[f"bbox_max_{a}_vx"].to_numpy() for a in "xyz"], 1)
    diag = np.sqrt((((bmax - bmin) * np.array([16, 16, 40])) ** 2).sum(1))
    expected = set(sv["id"].to_numpy()[diag > min_cc_size_nm].tolist())
    assert set(cells.column("cell_id").to_pylist()) == expected
    if min_cc_size_nm == 0:
        assert cells.num_rows == 2523
    else:
        for cid in list(expected)[:: max(1, len(expected) // 25)]:
            mesh = p.cell(cid).mesh
            assert len(mesh.faces) > 0 and mesh.is_closed
    kinds = cells.column("kind").to_pylist()
    # issue 18: the step reports its domain measurement and either holds back (every label neuron;
    # measured: 92 % of all 2,523 labels and 99.6 % of the 736 kept ones have a contact fraction
    # beyond the training range; median KS 0.31 and 0.53) or labels the large glia fragment (the largest label, 27 % of
    # the volume) astrocyte; with no graph a label is never split
    import json

    domain = json.loads((wd / "steps" / "astrocytes" / "domain.json").read_text())
    assert domain["measured"] and 0 <= domain["distance"] <= 1 and len(domain["ks"]) == len(FEATURES)
    sv_class = p.objects("sv_class")
    kind_of = dict(zip(sv_class.column("sv_id").to_pylist(), sv_class.column("kind").to_pylist(), strict=True))
    glia = int(sv["id"].to_numpy()[np.argmax(sv["size_vx"].to_numpy())])
    assert domain["n_rows"] == (2523 if min_cc_size_nm == 0 else 736)
    if domain["in_domain"]:
        assert kind_of[glia] == "astrocyte"
    else:
        assert set(kind_of.values()) == {"neuron"}
    print(f"\npinky40 domain distance {domain['distance']:.2f} (threshold {domain['threshold']:.2f}), "
          f"max outside {domain['max_outside']:.2f} (limit {domain['outside_limit']:.2f}), glia label {glia}: {kind_of[glia]}")
    print(f"\npinky40 (min_cc_size_nm={min_cc_size_nm}): {cells.num_rows} cells "
          f"({kinds.count('astrocyte')} astrocyte), rag {t1 - t0:.1f} s, astrocytes {t2 - t1:.1f} s, "
          f"cells {t3 - t2:.1f} s")
