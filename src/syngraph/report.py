"""``report.html``: one self-contained page (figures inline as SVG, no scripts, opens offline).

Figures are drawn with matplotlib (text kept as text, so the labels are searchable): the
connectivity matrix with cells on both axes in the order of a hierarchical clustering of their
connection profiles, coloured by synapse count and sign, next to the summed synapse area; for a
labels-only run the cell contact graph (contact area between cells); the type-to-type matrix when
``tables/celltype_matrix.parquet`` exists; distributions with axes and units; per step the wall time
of the full run and of every resume and the peak memory of all its processes; and warnings
(failed or unfinished attempts, steps not run, warnings the steps recorded).
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from syngraph import __version__

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}.bad{color:#b00;font-weight:bold}.ok{color:#070}
.row{display:flex;gap:24px;flex-wrap:wrap}.note{color:#666;font-size:12px}
figure{margin:0}svg{max-width:100%;height:auto}
"""
MAX_MATRIX_CELLS = 300  # cells shown in a matrix: the most connected ones beyond this


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


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10})
    return plt


def _svg(fig: Any, css_id: str) -> str:
    """The figure as inline SVG (text as <text>), wrapped in a <figure id=...>."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    _plt().close(fig)
    svg = buf.getvalue()
    return f'<figure id="{css_id}">{svg[svg.index("<svg"):]}</figure>'


def cluster_order(weights: np.ndarray) -> np.ndarray:
    """Order of the rows/columns of a square matrix: leaves of an average-linkage clustering of
    each cell's log connection profile (outgoing and incoming), so cells that connect alike sit
    together."""
    n = weights.shape[0]
    if n < 3:
        return np.arange(n)
    from scipy.cluster.hierarchy import leaves_list, linkage

    profile = np.log1p(np.hstack([weights, weights.T]))
    return leaves_list(linkage(profile, method="average", metric="euclidean", optimal_ordering=n <= 400))


def _dense(a: np.ndarray, b: np.ndarray, values: list[np.ndarray], symmetric: bool
           ) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Cells and dense matrices of ``values`` (the most connected cells, at most MAX_MATRIX_CELLS)."""
    cells, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    ia, ib = inv[: len(a)], inv[len(a):]
    degree = np.bincount(ia, minlength=len(cells)) + np.bincount(ib, minlength=len(cells))
    n_all = len(cells)
    keep = np.sort(np.argsort(-degree, kind="stable")[:MAX_MATRIX_CELLS])
    pos = np.full(len(cells), -1)
    pos[keep] = np.arange(len(keep))
    sel = (pos[ia] >= 0) & (pos[ib] >= 0)
    mats = []
    for v in values:
        m = np.zeros((len(keep), len(keep)))
        np.add.at(m, (pos[ia[sel]], pos[ib[sel]]), v[sel])
        if symmetric:
            m = m + m.T - np.diag(np.diag(m))
        mats.append(m)
    return cells[keep], mats, n_all


def _ticks(ax: Any, cells: np.ndarray, order: np.ndarray) -> None:
    n = len(order)
    step = max(1, int(np.ceil(n / 40)))
    idx = np.arange(0, n, step)
    ax.set_xticks(idx, [str(int(cells[order[i]])) for i in idx], rotation=90, fontsize=6)
    ax.set_yticks(idx, [str(int(cells[order[i]])) for i in idx], fontsize=6)


def _heat(ax: Any, fig: Any, m: np.ndarray, cmap: str, norm: Any, title: str, bar: str,
          xlabel: str, ylabel: str, cells: np.ndarray, order: np.ndarray, integer: bool = False) -> None:
    shown = np.ma.masked_equal(m[np.ix_(order, order)], 0)
    im = ax.imshow(shown, cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_facecolor("#f4f4f4")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _ticks(ax, cells, order)
    cbar = fig.colorbar(im, ax=ax, shrink=0.8, label=bar)
    if integer:
        from matplotlib.ticker import MaxNLocator

        cbar.locator = MaxNLocator(integer=True)
        cbar.update_ticks()


def synapse_matrix_svg(conns: pa.Table) -> str:
    """Two panels, cells clustered: signed synapse count (red asymmetric, blue symmetric) and the
    summed synapse area (um^2) of each connection."""
    from matplotlib.colors import TwoSlopeNorm

    plt = _plt()
    pre, post = conns["pre_cell_id"].to_numpy(), conns["post_cell_id"].to_numpy()
    n_syn = conns["n_synapses"].to_numpy().astype(float)
    sign = np.sign(conns["n_asymmetric"].to_numpy() - conns["n_symmetric"].to_numpy())
    signed = np.where(sign == 0, 1, sign) * n_syn
    cells, (w, area), n_all = _dense(pre, post, [signed, conns["area_um2_sum"].to_numpy()], False)
    order = cluster_order(np.abs(w))
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.8), layout="constrained")
    vmax = max(float(np.abs(w).max()), 1.0)
    _heat(axes[0], fig, w, "RdBu_r", TwoSlopeNorm(0, -vmax, vmax), "synapses per connection, signed",
          "synapses (red: asymmetric / excitatory, blue: symmetric / inhibitory)",
          "postsynaptic cell (id)", "presynaptic cell (id)", cells, order, integer=True)
    _heat(axes[1], fig, area, "viridis", _area_norm(area), "summed synapse area per connection",
          "area (µm²)", "postsynaptic cell (id)", "presynaptic cell (id)", cells, order)
    fig.suptitle(_shown(len(cells), n_all))
    return _svg(fig, "matrix")


def _contact_ends(conns: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The two cells of each contact row (``cell_a``/``cell_b``, or ``pre_cell_id``/``post_cell_id``)."""
    a, b = ("cell_a", "cell_b") if "cell_a" in conns.column_names else ("pre_cell_id", "post_cell_id")
    return conns[a].to_numpy(), conns[b].to_numpy()


def contact_matrix_svg(conns: pa.Table) -> str:
    """Labels-only runs: the symmetric cell contact graph, contact area (um^2) between cells."""
    plt = _plt()
    a, b = _contact_ends(conns)
    cells, (area,), n_all = _dense(a, b, [conns["contact_area_um2"].to_numpy().astype(float)], True)
    order = cluster_order(area)
    fig, ax = plt.subplots(figsize=(7, 6), layout="constrained")
    _heat(ax, fig, area, "viridis", _area_norm(area), "contact area between cells (no synapse map: contacts only)",
          "contact area (µm²)", "cell (id)", "cell (id)", cells, order)
    fig.suptitle(_shown(len(cells), n_all))
    return _svg(fig, "matrix")


def _area_norm(area: np.ndarray) -> Any:
    """A log colour scale for areas spanning more than a decade, else linear."""
    from matplotlib.colors import LogNorm, Normalize

    pos = area[area > 0]
    if len(pos) == 0:
        return None
    lo, hi = float(pos.min()), float(pos.max())
    return LogNorm(lo, hi) if hi > 10 * lo else Normalize(0, hi)


def _shown(n: int, n_all: int) -> str:
    what = f"{n} cells" if n == n_all else f"the {n} most connected of {n_all} cells"
    return f"{what}, ordered by hierarchical clustering of their connections"


def celltype_matrix_svg(table: pa.Table) -> str:
    """Pre type x post type: synapse count per type pair (long table: two type columns and a count)."""
    plt = _plt()
    names = table.column_names
    types = [c for c in names if pa.types.is_string(table.schema.field(c).type)
             or pa.types.is_large_string(table.schema.field(c).type)]
    value = next((c for c in ("n_synapses", "n", "count") if c in names), None) or next(
        c for c in names if c not in types and pa.types.is_integer(table.schema.field(c).type))
    pre, post = table[types[0]].to_pylist(), table[types[1]].to_pylist()
    labels = sorted({str(t) for t in pre + post})
    idx = {t: i for i, t in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)))
    np.add.at(m, ([idx[str(t)] for t in pre], [idx[str(t)] for t in post]), table[value].to_numpy())
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * len(labels), 1.2 + 0.5 * len(labels)), layout="constrained")
    im = ax.imshow(m, cmap="magma_r")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=7,
                color="white" if v > m.max() / 2 else "black")
    ax.set_xlabel("postsynaptic cell type")
    ax.set_ylabel("presynaptic cell type")
    fig.colorbar(im, ax=ax, label=value.replace("_", " "))
    return _svg(fig, "celltype-matrix")


def histograms_svg(panels: list[tuple[np.ndarray, str, str, bool]]) -> str:
    """One histogram per (values, x label with unit, y label, log x) panel."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), layout="constrained",
                             squeeze=False)
    for ax, (values, xlabel, ylabel, logx) in zip(axes[0], panels, strict=True):
        values = np.asarray(values, float)
        values = values[np.isfinite(values) & ((values > 0) if logx else True)]
        logx = logx and len(values) > 0 and values.max() > 10 * values.min()  # log axes for wide ranges
        if len(values) == 0:
            ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
        elif logx:
            ax.hist(values, bins=np.geomspace(values.min(), max(values.max(), values.min() * 1.01), 30),
                    color="#4a7")
            ax.set_xscale("log")
        elif np.all(values == np.round(values)) and values.max() - values.min() <= 60:  # counts
            ax.hist(values, bins=np.arange(values.min() - 0.5, values.max() + 1.5), color="#4a7", rwidth=0.9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            ax.hist(values, bins=30, color="#4a7")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    return _svg(fig, "distributions")


def _runs(info: dict[str, Any]) -> list[dict[str, Any]]:
    """A DONE record's attempts (records written before run lists existed: one full run)."""
    return info.get("runs") or [{"kind": "full", "status": "ok", "seconds": info.get("seconds", 0.0),
                                 "peak_rss_mb": info.get("peak_rss_mb_main", 0.0)}]


def step_stats(wd: Path, n_voxels: int) -> list[dict[str, Any]]:
    """Per finished step: the full run's wall time, the resumes', peak memory, throughput."""
    rows = []
    for marker in sorted((wd / "steps").glob("*/DONE"), key=lambda p: p.stat().st_mtime):
        info = json.loads(marker.read_text())
        runs = _runs(info)
        full = next((r for r in runs if r["kind"] == "full"), runs[0])
        resumes = [r for r in runs if r is not full]
        total = sum(float(r.get("seconds", 0.0)) for r in runs)
        rows.append({"step": info["step"], "full_s": float(full.get("seconds", 0.0)),
                     "resume_s": [float(r.get("seconds", 0.0)) for r in resumes], "total_s": total,
                     "peak_mb": max(float(r.get("peak_rss_mb", 0.0)) for r in runs),
                     "mvx_s": n_voxels / max(total, 1e-9) / 1e6})
    return rows


def steps_svg(rows: list[dict[str, Any]]) -> str:
    plt = _plt()
    names = [r["step"] for r in rows][::-1]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 0.9 + 0.32 * len(rows)), layout="constrained")
    y = np.arange(len(names))
    full = [r["full_s"] for r in rows][::-1]
    resumed = [sum(r["resume_s"]) for r in rows][::-1]
    ax_t.barh(y, full, color="#4a7", label="full run")
    ax_t.barh(y, resumed, left=full, color="#da5", label="resumes")
    ax_t.set_yticks(y, names)
    ax_t.set_xlabel("wall time (s)")
    ax_t.legend(loc="lower right", fontsize=7)
    ax_m.barh(y, [r["peak_mb"] for r in rows][::-1], color="#57a")
    ax_m.set_yticks(y, names)
    ax_m.set_xlabel("peak memory, all processes (MB)")
    for ax in (ax_t, ax_m):
        ax.grid(axis="x", alpha=0.3)
    return _svg(fig, "steps")


def collect_warnings(wd: Path) -> list[str]:
    """Failed or unfinished attempts, pipeline steps without DONE, warnings steps recorded."""
    from syngraph.engine.records import read_runs
    from syngraph.pipeline import step_names

    out = []
    for name in step_names():
        step_dir = wd / "steps" / name
        marker = step_dir / "DONE"
        runs = read_runs(step_dir)
        if not marker.exists():
            out.append(f"step '{name}' has not finished" + (
                f" (last attempt: {runs[-1]['status']})" if runs else " (not run)"))
        for r in runs[:-1] if marker.exists() else runs:
            if r["status"] == "failed":
                out.append(f"step '{name}': an attempt started {r.get('started_utc', '?')} failed "
                           f"after {r.get('seconds', 0):.1f} s")
            elif r["status"] == "running" and r is not runs[-1]:
                out.append(f"step '{name}': an attempt started {r.get('started_utc', '?')} was killed")
        if marker.exists():
            info = json.loads(marker.read_text())
            result = info.get("result") or {}
            for w in [*info.get("warnings", []), *(result.get("warnings", []) if isinstance(result, dict) else [])]:
                out.append(f"step '{name}': {w}")
    return out


def _volume(wd: Path) -> tuple[str, int]:
    from syngraph.io.volume import open_layer

    try:
        sv = open_layer(wd, "sv")
    except Exception:
        return "", 0
    n_vx = int(np.prod(sv.shape))
    return (f"<p>volume {sv.shape[0]}×{sv.shape[1]}×{sv.shape[2]} voxels (XYZ) at "
            f"{'×'.join(f'{v:g}' for v in sv.info.voxel_size_nm)} nm ({n_vx / 1e6:.1f} MVx)</p>"), n_vx


def _synapse_parts(syn: pa.Table, conns: pa.Table) -> list[str]:
    pre, post = syn["pre_cell_id"].to_numpy(), syn["post_cell_id"].to_numpy()
    sign = syn["sign"].to_numpy()
    stats = [["synapses", syn.num_rows], ["connections", conns.num_rows],
             ["autapses", int((pre == post).sum())], ["no root", int(((pre == 0) | (post == 0)).sum())],
             ["asymmetric (+1)", int((sign == 1).sum())], ["symmetric (-1)", int((sign == -1).sum())]]
    parts = ["<h2>Synapse table</h2>" + _table(["", "count"], stats)]
    if conns.num_rows:
        parts.append("<h2>Connectivity matrix</h2>" + synapse_matrix_svg(conns))
    parts.append("<h2>Distributions</h2>" + histograms_svg([
        (syn["area_um2"].to_numpy(), "synapse area (µm²)", "synapses", True),
        (conns["n_synapses"].to_numpy(), "synapses per connection", "connections", False),
        (syn["syn_prob"].to_numpy(), "synapse probability", "synapses", False),
    ]))
    return parts


def _contact_parts(conns: pa.Table) -> list[str]:
    area = conns["contact_area_um2"].to_numpy().astype(float)
    ends = np.concatenate(_contact_ends(conns))
    cells = np.unique(ends)
    stats = [["cell pairs in contact", conns.num_rows], ["cells with a contact", len(cells)],
             ["total contact area (µm²)", f"{area.sum():.4g}"]]
    parts = ["<h2>Cell contact graph</h2><p class='note'>Labels-only run: no synapse map, so the "
             "graph holds contact sites between cells and their area, not synapses.</p>"
             + _table(["", "value"], stats)]
    if conns.num_rows:
        parts.append(contact_matrix_svg(conns))
        partners = np.bincount(np.unique(ends, return_inverse=True)[1])
        parts.append("<h2>Distributions</h2>" + histograms_svg([
            (area, "contact area per cell pair (µm²)", "cell pairs", True),
            (partners, "contact partners per cell", "cells", False),
        ]))
    return parts


def _accuracy(wd: Path) -> str:
    res = json.loads((wd / "evaluation.json").read_text())
    rows = []
    for step, r in res.items():
        for k, v in r["metrics"].items():
            goal = r["targets"].get(k)
            ok = "" if not goal or goal["pass"] is None else (
                '<span class="ok">yes</span>' if goal["pass"] else '<span class="bad">NO</span>')
            rows.append([step, k, _fmt(v), f"{goal['cmp']} {goal['target']:g}" if goal else "", ok])
    return "<h2>Accuracy against ground truth</h2>" + _table(["step", "metric", "value", "target", "ok"], rows)


def _steps(wd: Path, n_vx: int) -> str:
    rows = step_stats(wd, n_vx)
    if not rows:
        return ""
    table = _table(["step", "full run s", "resumes s", "peak MB", "MVx/s"], [
        [r["step"], f"{r['full_s']:.1f}", ", ".join(f"{s:.1f}" for s in r["resume_s"]) or "-",
         f"{r['peak_mb']:.0f}", f"{r['mvx_s']:.2f}"] for r in rows])
    return ("<h2>Steps</h2>" + steps_svg(rows) + table
            + '<p class="note">full run: the first complete attempt at the step; resumes: later '
              "attempts on its state. peak MB: the step's own peak resident memory summed over all its "
              "processes (main and workers); MVx/s: volume voxels / total wall time.</p>")


def write_report(workdir: str | Path) -> Path:
    """Write ``<wd>/report.html`` from the tables and run records that exist; returns its path."""
    wd = Path(workdir)
    volume, n_vx = _volume(wd)
    parts = [f"<h1>syngraph report: {html.escape(str(wd.resolve().name))}</h1>",
             f'<p class="note">syngraph {__version__}</p>', volume]
    warnings = collect_warnings(wd) if (wd / "steps").exists() else []
    if warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(
            f'<li class="bad">{html.escape(w)}</li>' for w in warnings) + "</ul>")
    tables = wd / "tables"
    if (tables / "connections.parquet").exists():
        conns = pq.read_table(tables / "connections.parquet")
        if "n_synapses" in conns.column_names and (tables / "synapses.parquet").exists():
            parts += _synapse_parts(pq.read_table(tables / "synapses.parquet"), conns)
        elif "contact_area_um2" in conns.column_names:
            parts += _contact_parts(conns)
    if (tables / "celltype_matrix.parquet").exists():
        parts.append("<h2>Cell type to cell type</h2>"
                     + celltype_matrix_svg(pq.read_table(tables / "celltype_matrix.parquet")))
    if (wd / "evaluation.json").exists():
        parts.append(_accuracy(wd))
    parts.append(_steps(wd, n_vx))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>syngraph report</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    out = wd / "report.html"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(out)
    return out
