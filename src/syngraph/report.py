"""``report.html``: one self-contained page (inline SVG, no scripts, opens offline).

Shows the connectivity matrix as a heatmap, synapse area and per-connection count distributions,
the CAVE-style table stats (synapses, autapses, no-root), the accuracy table when ground truth
exists, and per step the wall time, peak memory and throughput (MVx/s).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from syngraph import __version__

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}.bad{color:#b00;font-weight:bold}.ok{color:#070}
.row{display:flex;gap:24px;flex-wrap:wrap}.note{color:#666;font-size:12px}
"""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def heatmap_svg(pre: np.ndarray, post: np.ndarray, weight: np.ndarray, sign: np.ndarray, size: int = 520) -> str:
    """Cells (sorted by id) on both axes; colour = synapse count, red excitatory, blue inhibitory."""
    cells = np.unique(np.concatenate([pre, post]))
    n = len(cells)
    if n == 0:
        return "<p>no synapses</p>"
    idx = {int(c): i for i, c in enumerate(cells)}
    cell = size / n
    vmax = max(float(weight.max()), 1.0)
    rects = []
    for p, q, w, s in zip(pre, post, weight, sign, strict=True):
        a = 0.25 + 0.75 * float(w) / vmax
        colour = "200,30,30" if s > 0 else ("30,60,200" if s < 0 else "90,90,90")
        rects.append(
            f'<rect x="{idx[int(q)] * cell:.2f}" y="{idx[int(p)] * cell:.2f}" width="{max(cell, 1):.2f}" '
            f'height="{max(cell, 1):.2f}" fill="rgba({colour},{a:.2f})"><title>{int(p)} → {int(q)}: '
            f"{int(w)} synapses</title></rect>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size + 40}" height="{size + 40}" '
        f'viewBox="-30 -10 {size + 40} {size + 40}"><rect x="0" y="0" width="{size}" height="{size}" '
        f'fill="#fafafa" stroke="#999"/>{"".join(rects)}'
        f'<text x="{size / 2}" y="{size + 20}" font-size="12" text-anchor="middle">postsynaptic cell</text>'
        f'<text x="-12" y="{size / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 -12 {size / 2})">presynaptic cell</text></svg>'
    )


def histogram_svg(values: np.ndarray, label: str, bins: int = 30, w: int = 340, h: int = 200) -> str:
    if len(values) == 0:
        return f"<p>no data for {html.escape(label)}</p>"
    counts, edges = np.histogram(values, bins=bins)
    top = max(int(counts.max()), 1)
    bw = w / bins
    bars = "".join(
        f'<rect x="{i * bw:.1f}" y="{h - c / top * h:.1f}" width="{bw - 1:.1f}" height="{c / top * h:.1f}" '
        f'fill="#4a7"><title>{edges[i]:.3g}–{edges[i + 1]:.3g}: {c}</title></rect>'
        for i, c in enumerate(counts)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w + 10}" height="{h + 40}">{bars}'
        f'<line x1="0" y1="{h}" x2="{w}" y2="{h}" stroke="#333"/>'
        f'<text x="0" y="{h + 15}" font-size="11">{edges[0]:.3g}</text>'
        f'<text x="{w}" y="{h + 15}" font-size="11" text-anchor="end">{edges[-1]:.3g}</text>'
        f'<text x="{w / 2}" y="{h + 32}" font-size="12" text-anchor="middle">{html.escape(label)} '
        f"(max bin {top})</text></svg>"
    )


def step_stats(wd: Path, n_voxels: int) -> list[list[Any]]:
    rows = []
    for marker in sorted((wd / "steps").glob("*/DONE"), key=lambda p: p.stat().st_mtime):
        info = json.loads(marker.read_text())
        peaks = [info.get("peak_rss_mb_main", 0.0)]
        for st in marker.parent.rglob("stats.json"):
            peaks.append(json.loads(st.read_text()).get("peak_rss_mb", 0.0))
        sec = float(info["seconds"])
        rows.append([info["step"], f"{sec:.1f}", f"{max(peaks):.0f}", f"{n_voxels / max(sec, 1e-9) / 1e6:.2f}"])
    return rows


def write_report(workdir: str | Path) -> Path:
    """Write ``<wd>/report.html`` from the tables and run stats that exist; returns its path."""
    from syngraph.io.volume import open_layer

    wd = Path(workdir)
    parts = [f"<h1>syngraph report: {html.escape(str(wd.resolve().name))}</h1>",
             f'<p class="note">syngraph {__version__}</p>']
    try:
        sv = open_layer(wd, "sv")
        n_vx = int(np.prod(sv.shape))
        parts.append(f"<p>volume {sv.shape[0]}×{sv.shape[1]}×{sv.shape[2]} voxels at "
                     f"{'×'.join(f'{v:g}' for v in sv.info.voxel_size_nm)} nm ({n_vx / 1e6:.1f} MVx)</p>")
    except Exception:
        n_vx = 0
    syn_path = wd / "tables" / "synapses.parquet"
    if syn_path.exists():
        syn = pq.read_table(syn_path)
        conns = pq.read_table(wd / "tables" / "connections.parquet")
        pre, post = syn["pre_cell_id"].to_numpy(), syn["post_cell_id"].to_numpy()
        stats = [["synapses", syn.num_rows], ["connections", conns.num_rows],
                 ["autapses", int((pre == post).sum())], ["no root", int(((pre == 0) | (post == 0)).sum())],
                 ["asymmetric (+1)", int((syn["sign"].to_numpy() == 1).sum())],
                 ["symmetric (-1)", int((syn["sign"].to_numpy() == -1).sum())]]
        parts.append("<h2>Synapse table</h2>" + _table(["", "count"], stats))
        c_sign = np.sign(conns["n_asymmetric"].to_numpy() - conns["n_symmetric"].to_numpy())
        parts.append("<h2>Connectivity matrix</h2>" + heatmap_svg(
            conns["pre_cell_id"].to_numpy(), conns["post_cell_id"].to_numpy(),
            conns["n_synapses"].to_numpy(), c_sign))
        parts.append('<h2>Distributions</h2><div class="row">'
                     + histogram_svg(syn["area_um2"].to_numpy(), "synapse area (µm²)")
                     + histogram_svg(conns["n_synapses"].to_numpy().astype(float), "synapses per connection", bins=10)
                     + "</div>")
    ctm = wd / "tables" / "celltype_matrix.parquet"
    if ctm.exists():
        t = pq.read_table(ctm).to_pylist()
        cols = ["pre_celltype", "post_celltype", "n_synapses", "area_um2_sum", "n_asymmetric", "n_symmetric"]
        parts.append("<h2>Cell-type matrix</h2>" + _table(["pre type", "post type", "synapses", "area µm²",
                                                           "asymmetric", "symmetric"],
                                                          [[_fmt(r[c]) for c in cols] for r in t]))
    ev = wd / "evaluation.json"
    if ev.exists():
        res = json.loads(ev.read_text())
        rows = []
        for step, r in res.items():
            for k, v in r["metrics"].items():
                goal = r["targets"].get(k)
                ok = "" if not goal or goal["pass"] is None else (
                    '<span class="ok">yes</span>' if goal["pass"] else '<span class="bad">NO</span>')
                rows.append([step, k, _fmt(v), f"{goal['cmp']} {goal['target']:g}" if goal else "", ok])
        parts.append("<h2>Accuracy against ground truth</h2>"
                     + _table(["step", "metric", "value", "target", "ok"], rows))
    rows = step_stats(wd, n_vx)
    if rows:
        parts.append("<h2>Steps</h2>" + _table(["step", "wall s", "peak MB", "MVx/s"], rows)
                     + '<p class="note">peak MB: the largest resident set of the main process or of any '
                       "worker task; MVx/s: volume voxels / wall time.</p>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>syngraph report</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    out = wd / "report.html"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(out)
    return out
