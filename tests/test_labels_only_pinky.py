"""`syngraph run all` on the real pinky40 segmentation (labels only) with the config `config init`
writes and the README's commands: the cell contact graph's areas equal a direct face count."""

from __future__ import annotations

import json
import subprocess
import sys

import fastremap
import numpy as np
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

VS = (16.0, 16.0, 40.0)


def syngraph(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "syngraph", *args], capture_output=True, text=True, cwd=cwd)


def face_areas_um2(cells: np.ndarray) -> dict[tuple[int, int], float]:
    """Area of the faces between 6-adjacent voxels of two different non-zero cells (XYZ)."""
    out: dict[tuple[int, int], float] = {}
    for axis in range(3):
        a = np.moveaxis(cells, axis, 0)
        lo, hi = a[:-1], a[1:]
        m = (lo != hi) & (lo > 0) & (hi > 0)
        lo, hi = lo[m], hi[m]
        pairs = np.stack([np.minimum(lo, hi), np.maximum(lo, hi)], 1)
        keys, counts = np.unique(pairs, axis=0, return_counts=True)
        face_nm2 = float(np.prod(np.delete(np.asarray(VS), axis)))
        for (p, q), n in zip(keys.tolist(), counts.tolist(), strict=True):
            out[(p, q)] = out.get((p, q), 0.0) + n * face_nm2 / 1e6
    return out


def test_pinky40_labels_only_run_all(pinky40_labels, tmp_path):
    np.save(tmp_path / "seg.npy", pinky40_labels)  # XYZ, as the README's convention says
    wd = "myproject"
    for args in (
        ("config", "init", "--wd", wd, "--voxel-size-nm", "16", "16", "40"),
        ("import", "sv", str(tmp_path / "seg.npy"), "--wd", wd, "--kind", "labels", "--axes", "xyz"),
        ("config", "check", "--wd", wd),
        ("run", "all", "--wd", wd),
    ):
        r = syngraph(*args, cwd=tmp_path)
        assert r.returncode == 0, (args, r.stderr[-3000:])
        print(r.stderr[-3000:])
    p = tmp_path / wd
    conns = pq.read_table(p / "tables" / "connections.parquet")
    assert conns.column_names == ["cell_a", "cell_b", "contact_area_um2", "contact_size_vx", "n_sv_pairs"]
    s2c = pq.read_table(p / "tables" / "sv_to_cell.parquet")
    lut = dict(zip(s2c["sv_id"].to_pylist(), s2c["cell_id"].to_pylist(), strict=True))
    table = {int(i): lut.get(int(i), 0) for i in fastremap.unique(pinky40_labels)}  # pruned: 0
    cells = fastremap.remap(pinky40_labels.astype(np.uint64), table, in_place=True)
    del s2c
    truth = face_areas_um2(cells)
    got = {(a, b): x for a, b, x in zip(conns["cell_a"].to_pylist(), conns["cell_b"].to_pylist(),
                                        conns["contact_area_um2"].to_pylist(), strict=True) if x > 0}
    assert got.keys() == truth.keys()
    np.testing.assert_allclose([got[k] for k in truth], list(truth.values()), rtol=1e-9)
    n_cells = pq.read_table(p / "tables" / "cells.parquet").num_rows
    steps = {s: json.loads((p / "steps" / s / "DONE").read_text())["seconds"]
             for s in ("init", "rag", "astrocytes", "cells", "skeletons", "synapses", "matrix")}
    print(f"pinky40 labels only: {n_cells} cells, {conns.num_rows} cell pairs in contact "
          f"({len(truth)} sharing faces), total contact area {sum(truth.values()):.1f} um^2; step seconds {steps}")
    from syngraph.report import write_report

    assert write_report(p).exists()
