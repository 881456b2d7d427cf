"""Steps celltypes and embeddings on the real pinky40 volume: labels only, no organelle maps
(slow; skips without ../shared). A 256^3 corner (4.1 x 4.1 x 10.2 um) keeps the skeletons step,
which dominates, to minutes; the whole volume took 37 min on the shared 2-core machine."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from test_cells_pinky import _project
from test_rag import SERIAL

from syngraph.models.celltypes import ORGANELLE_FEATURES


@pytest.mark.slow
@pytest.mark.pinky
def test_pinky40_celltypes_and_embeddings_without_organelles(tmp_path, pinky40_labels):
    """rag -> astrocytes -> cells -> skeletons -> compartments -> celltypes -> embeddings: the
    labels-only model variants run, the step names the organelle features it lacked, every cell
    over the minimum gets a type with probabilities summing to 1, the rest ``unknown``; every
    skeleton node gets a unit 10-d vector and every cell one too."""
    from syngraph.steps.astrocytes import run_astrocytes
    from syngraph.steps.cells import run_cells
    from syngraph.steps.celltypes import run_celltypes
    from syngraph.steps.compartments import run_compartments
    from syngraph.steps.embeddings import run_embeddings
    from syngraph.steps.rag import run_rag
    from syngraph.steps.skeletons import run_skeletons

    wd = _project(tmp_path, np.ascontiguousarray(np.asarray(pinky40_labels)[:256, :256, :256]), 5000.0, mesh=False)
    for run in (run_rag, run_astrocytes, run_cells, run_skeletons, run_compartments):
        run(wd, compute=SERIAL, progress=False)
    t0 = time.perf_counter()
    res = run_celltypes(wd)
    t1 = time.perf_counter()
    emb = run_embeddings(wd)
    t2 = time.perf_counter()
    assert res["model_variant"] == "shape" and res["features_lacking"] == list(ORGANELLE_FEATURES)
    assert emb["model_variant"] == "shape" and emb["features_lacking"]
    t = pd.read_parquet(wd / "tables" / "celltypes.parquet")
    cells = pd.read_parquet(wd / "tables" / "cells.parquet")
    assert set(t["cell_id"]) <= set(cells["cell_id"]) and len(t) == res["cells"] > 0
    p = t[[c for c in t.columns if c.startswith("p_")]].to_numpy()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    typed = t["cable_um"] >= res["min_cable_um"]
    assert (t.loc[~typed, "celltype"] == "unknown").all() and (t.loc[typed, "celltype"] != "unknown").all()
    assert typed.sum() > 0
    ast = set(cells.loc[cells["kind"] == "astrocyte", "cell_id"])
    typed_ast = t[typed & t["cell_id"].isin(ast)]
    if len(typed_ast):  # cells the astrocyte step called glia are typed astrocyte
        assert (typed_ast["celltype"] == "astrocyte").mean() >= 0.9
    nodes = pd.read_parquet(wd / "tables" / "embeddings_nodes.parquet")
    z = nodes[[f"e{i}" for i in range(10)]].to_numpy()
    assert np.isfinite(z).all()
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-4)
    assert emb["cells"] == len(pd.read_parquet(wd / "tables" / "embeddings_cells.parquet")) == res["cells"]
    print(f"\npinky40: {res['cells']} cells, {int(typed.sum())} typed (cable >= {res['min_cable_um']} um): "
          f"{t.loc[typed, 'celltype'].value_counts().to_dict()}; lacking {res['features_lacking']}; "
          f"celltypes {t1 - t0:.1f} s, embeddings {t2 - t1:.1f} s ({len(nodes)} nodes)")
