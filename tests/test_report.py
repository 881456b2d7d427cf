"""report.html from hand-made tables: labels-only contact graph, type-to-type matrix, step runs, warnings."""

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from syngraph.report import cluster_order, write_report


def _two_communities(rng):
    """Cells 1..8 touch each other, cells 101..108 touch each other, one weak link between."""
    pairs = []
    for group in (np.arange(1, 9), np.arange(101, 109)):
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if rng.random() < 0.8:
                    pairs.append((a, b, rng.uniform(1.0, 5.0)))
    pairs.append((1, 101, 0.01))
    rng.shuffle(pairs)
    a, b, area = map(np.array, zip(*pairs, strict=True))
    return a.astype(np.uint64), b.astype(np.uint64), area


def _svg_texts(page: str, fig_id: str) -> list[str]:
    fig = re.search(rf'<figure id="{fig_id}">(.*?)</figure>', page, re.S)
    assert fig, fig_id
    return [t.strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", fig.group(1)) if t.strip()]


def test_cluster_order_keeps_communities_together():
    rng = np.random.default_rng(5)
    n = 30
    group = rng.permutation(np.repeat([0, 1, 2], 10))
    w = np.where(group[:, None] == group[None, :], rng.poisson(4, (n, n)), 0).astype(float)
    order = cluster_order(w)
    assert sorted(order) == list(range(n))
    runs = np.count_nonzero(np.diff(group[order]))  # boundaries between groups along the order
    assert runs == 2, group[order]


def test_labels_only_report_shows_the_contact_graph_types_steps_and_warnings(tmp_path):
    wd = tmp_path
    (wd / "tables").mkdir()
    a, b, area = _two_communities(np.random.default_rng(0))
    pq.write_table(pa.table({"cell_a": a, "cell_b": b, "contact_area_um2": area,
                             "contact_size_vx": (area * 100).astype(np.int64)}), wd / "tables" / "connections.parquet")
    pq.write_table(pa.table({"pre_celltype": ["pyramidal", "pyramidal", "interneuron"],
                             "post_celltype": ["interneuron", "pyramidal", "pyramidal"],
                             "n_synapses": [7, 12, 3], "area_um2_sum": [1.0, 2.0, 0.5]}),
                   wd / "tables" / "celltype_matrix.parquet")
    rag = wd / "steps" / "rag"
    rag.mkdir(parents=True)
    runs = [{"kind": "full", "status": "ok", "seconds": 143.2, "peak_rss_mb": 1800.0, "peak_rss_mb_main": 600.0},
            {"kind": "resume", "status": "ok", "seconds": 0.7, "peak_rss_mb": 300.0, "peak_rss_mb_main": 300.0}]
    (rag / "DONE").write_text(json.dumps({"step": "rag", "seconds": 0.7, "runs": runs,
                                          "result": {"warnings": ["pruned 60% of the voxels"]}}))
    (rag / "runs.json").write_text(json.dumps(runs))
    init = wd / "steps" / "init"
    init.mkdir()
    (init / "runs.json").write_text(json.dumps([{"kind": "full", "status": "failed", "seconds": 5.0,
                                                 "started_utc": "2026-01-01T00:00:00+00:00"}]))

    page = write_report(wd).read_text()
    assert "Cell contact graph" in page and "Synapse table" not in page
    texts = _svg_texts(page, "matrix")
    assert texts.count("cell (id)") == 2 and "contact area (µm²)" in texts
    ids = {str(int(i)) for i in np.concatenate([a, b])}
    assert ids <= set(texts)  # 16 cells: every id labels a tick
    # ticks follow the clustering: the two communities each sit together
    ticks = [t for t in texts if t in ids]
    first = [int(t) > 100 for t in ticks[:16]]
    assert np.count_nonzero(np.diff(first)) == 1, ticks
    assert f"<td>cell pairs in contact</td><td>{len(a)}</td>" in page

    types = _svg_texts(page, "celltype-matrix")
    assert {"interneuron", "pyramidal", "presynaptic cell type", "postsynaptic cell type", "12", "7", "3"} <= set(types)

    assert "<td>rag</td><td>143.2</td><td>0.7</td><td>1800</td>" in page
    assert "step &#x27;rag&#x27;: pruned 60% of the voxels" in page
    assert "step &#x27;init&#x27; has not finished (last attempt: failed)" in page
    assert "an attempt started 2026-01-01T00:00:00+00:00 failed after 5.0 s" in page
    assert "wall time (s)" in _svg_texts(page, "steps")
