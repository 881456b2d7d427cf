"""Step edit: merges and splits recompute only the touched cells and equal a full recompute."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pyarrow as pa
import pytest
from test_rag import SERIAL, make_project

from syngraph.project import Project
from syngraph.steps.cells import run_cells
from syngraph.steps.edit import EditError, edit_cells
from syngraph.steps.rag import run_rag

BIG = 2**40  # ids above 32 bits


def cubes() -> np.ndarray:
    """24x24x12 volume of 4x4x4 cubes; sv id = BIG + 1 + (i + 6 j + 36 k)."""
    i, j, k = np.meshgrid(np.arange(24) // 4, np.arange(24) // 4, np.arange(12) // 4, indexing="ij")
    return (BIG + 1 + i + 6 * j + 36 * k).astype(np.uint64)


def sv(i, j, k):
    return BIG + 1 + i + 6 * j + 36 * k


@pytest.fixture
def wd(tmp_path):
    w = make_project(tmp_path, cubes(), min_cc_size_nm=0.0, mesh=True, chunks=(12, 12, 12), block=(12, 12, 12))
    rows = ["sv_a,sv_b"]
    for j in range(6):
        for k in range(3):
            rows += [f"{sv(i, j, k)},{sv(i + 1, j, k)}" for i in range(5)]  # one cell per x-row
    (tmp_path / "e.csv").write_text("\n".join(rows) + "\n")
    run_rag(w, compute=SERIAL, rag=tmp_path / "e.csv")
    run_cells(w, compute=SERIAL)
    return w


def per_cell_state(w) -> dict[int, str]:
    """A content hash per cell: its cells row, sv_to_cell rows, organelle rows and mesh bytes."""
    pr = Project(w)
    cells = pr.objects("cells").to_pylist()
    s2c = pr.objects("sv_to_cell").to_pydict()
    out = {}
    for row in cells:
        c = row["cell_id"]
        h = hashlib.sha256(repr(row).encode())
        h.update(repr([s for s, cc in zip(s2c["sv_id"], s2c["cell_id"], strict=True) if cc == c]).encode())
        for f in sorted((w / "meshes" / "cells").glob(f"{c}:*")):
            h.update(f.name.encode() + f.read_bytes() + str(f.stat().st_mtime_ns).encode())
        out[c] = h.hexdigest()
    return out


def full_state(w) -> str:
    pr = Project(w)
    h = hashlib.sha256()
    for name in ("cells", "sv_to_cell", "cell_organelles", "cell_graph"):
        h.update(pr.objects(name).to_string(show_metadata=False).encode())
    for f in sorted((w / "meshes" / "cells").iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_merge_touches_only_its_cells_and_equals_full_recompute(wd, tmp_path):
    before = per_cell_state(wd)
    assert len(before) == 18
    a, b = sv(5, 0, 0), sv(5, 1, 0)  # ends of the rows j=0 and j=1
    rep = edit_cells(wd, merges=[(a, b)], compute=SERIAL)
    assert rep.cells_removed == [sv(0, 0, 0), sv(0, 1, 0)] and rep.cells_created == [sv(0, 0, 0)]
    after = per_cell_state(wd)
    untouched = set(before) - {sv(0, 0, 0), sv(0, 1, 0)}
    assert all(after[c] == before[c] for c in untouched)
    assert Project(wd).cell(sv(0, 0, 0)).sv_ids.size == 12
    assert Project(wd).cell(sv(0, 0, 0)).mesh.is_closed
    incremental = full_state(wd)
    copy = tmp_path / "copy"
    shutil.copytree(wd, copy)
    run_cells(copy, compute=SERIAL)  # full recompute replays tables/edits.parquet
    assert full_state(copy) == incremental


def test_split_cuts_weakest_contact_and_is_logged(wd, tmp_path):
    # a false merge of rows j=0 and j=2 (the two svs never touch: capacity 1), then a split:
    # the min cut removes that edge, not a row edge (16 contact faces each)
    cells0 = Project(wd).objects("cells").to_pylist()
    edit_cells(wd, merges=[(sv(5, 0, 0), sv(5, 2, 0))], compute=SERIAL)
    assert Project(wd).cell(sv(0, 0, 0)).sv_ids.size == 12
    rep = edit_cells(wd, splits=[(sv(0, 0, 0), sv(1, 2, 0))], compute=SERIAL)
    assert rep.edges_removed == 1
    assert Project(wd).objects("cells").to_pylist() == cells0
    log = Project(wd).objects("edits").to_pydict()
    assert log["op"] == ["merge", "split"] and log["action"] == ["add", "remove"]
    assert log["edit_id"] == [0, 1]
    assert log["edge_a"] == [sv(5, 0, 0)] * 2 and log["edge_b"] == [sv(5, 2, 0)] * 2
    state = full_state(wd)
    copy = tmp_path / "copy"
    shutil.copytree(wd, copy)
    run_cells(copy, compute=SERIAL)
    assert full_state(copy) == state


def test_edit_table_and_errors(wd, tmp_path):
    t = tmp_path / "edits.csv"
    t.write_text(f"op,sv_a,sv_b\nmerge,{sv(0, 2, 0)},{sv(0, 3, 0)}\n")
    rep = edit_cells(wd, table=t, compute=SERIAL)
    assert rep.cells_created == [sv(0, 2, 0)]
    with pytest.raises(EditError, match=r"merge 1 2: supervoxel ids \[1, 2\] are not in tables/sv.parquet"):
        edit_cells(wd, merges=[(1, 2)])
    with pytest.raises(EditError, match="no edits given"):
        edit_cells(wd)
    bad = tmp_path / "bad.csv"
    bad.write_text("op,a,b\nmerge,1,2\n")
    with pytest.raises(EditError, match=r"bad.csv: missing columns \['sv_a', 'sv_b'\]"):
        edit_cells(wd, table=bad)
    with pytest.warns(UserWarning, match="already in different cells"):
        edit_cells(wd, splits=[(sv(0, 4, 0), sv(0, 5, 0))], compute=SERIAL)
    _ = pa
