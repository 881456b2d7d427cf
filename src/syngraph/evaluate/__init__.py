"""Scores against the demo tissue's ground truth: one scorer per step, run if the step is done.

A scorer is ``score_<x>(workdir) -> dict[str, float | int]``; targets come from the issues' done-when
lists. ``evaluate`` writes ``<wd>/evaluation.json``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

# (step whose DONE marker enables it, "module:function", {metric: (comparison, target)})
SCORERS: tuple[tuple[str, str, dict[str, tuple[str, float]]], ...] = (
    (
        "init",
        "syngraph.evaluate.organelles:score_organelles",
        {
            "mi_precision": (">=", 0.9),
            "mi_recall": (">=", 0.9),
            "vc_precision": (">=", 0.9),
            "vc_recall": (">=", 0.9),
        },
    ),
    (
        "cells",
        "syngraph.evaluate.cells:score_cells",
        {"n_split": ("<=", 0), "n_merge": ("<=", 0), "astrocyte_accuracy": (">=", 0.95)},
    ),
    (
        "skeletons",
        "syngraph.evaluate.skeletons:score_skeletons",
        {"neuron_node_precision": (">=", 0.97), "neuron_node_recall": (">=", 0.95),
         "neuron_cable_rel_error_median": ("<=", 0.03), "neuron_cells_cable_within_5pct": (">=", 0.9),
         "astrocyte_coverage": (">=", 0.95), "astrocyte_nodes_inside": (">=", 0.99),
         "astrocyte_cells_one_tree_per_piece": (">=", 1.0), "myelin_accuracy": (">=", 0.95)},
    ),
    (
        "compartments",
        "syngraph.evaluate.compartments:score_compartments",
        {"node_accuracy_axon_dendrite_soma": (">=", 0.95), "spine_f1": (">=", 0.9),
         "bouton_f1": (">=", 0.85), "spine_head_volume_median_rel_error": ("<=", 0.2),
         "synapse_post_compartment_accuracy": (">=", 0.95)},
    ),
    (
        "celltypes",
        "syngraph.evaluate.celltypes:score_celltypes",
        {"accuracy": (">=", 0.95), "macro_f1": (">=", 0.9), "ece": ("<=", 0.05)},
    ),
    (
        "embeddings",
        "syngraph.evaluate.embeddings:score_embeddings",
        {"cell_knn_type_accuracy": (">=", 0.9), "node_knn_compartment_accuracy": (">=", 0.9)},
    ),
    (
        "matrix",
        "syngraph.evaluate.synapses:score_synapses",
        {"synapse_precision": (">=", 0.9), "synapse_recall": (">=", 0.9),
         "direction_accuracy": (">=", 0.95), "sign_accuracy": (">=", 0.95),
         "area_median_rel_error": ("<=", 0.25)},
    ),
)


def _passes(value: Any, cmp: str, target: float) -> bool | None:
    """Whether ``value`` meets the target; None when there was nothing to score (not a number, NaN)."""
    if not isinstance(value, int | float) or value != value:
        return None
    return value >= target if cmp == ">=" else value <= target


def _flatten(result: Any, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """Scalar metrics of a scorer's result; one level of dicts/dataclasses flattens as
    ``outer_inner`` (per-layer scores); deeper breakdowns stay in the scorer's own output."""
    import dataclasses

    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = dataclasses.asdict(result)
    out: dict[str, Any] = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not all(isinstance(k, str) for k in value):
            continue  # per-object breakdowns (keyed by id) stay in the scorer's own output
        if dataclasses.is_dataclass(value) or isinstance(value, dict):
            if depth == 0:
                out.update(_flatten(value, f"{name}_", depth + 1))
        elif isinstance(value, bool | int | float | str) or hasattr(value, "item"):
            out[name] = value.item() if hasattr(value, "item") else value
    return out


def _check_table_format(wd: Path) -> None:
    """Truth tables of an older column format are an error naming the fix (the scorers read
    renamed columns only from gt/; the steps' own tables are checked when a step runs)."""
    import pyarrow.parquet as pq

    from syngraph.engine.run import TABLE_FORMAT
    from syngraph.errors import StepOrderError

    gt = wd / "gt" / "cells.parquet"
    fmt = int((pq.read_schema(gt).metadata or {}).get(b"table_format", b"1")) if gt.exists() else TABLE_FORMAT
    if fmt != TABLE_FORMAT:
        raise StepOrderError(
            f"{wd / 'gt'} was written by an earlier syngraph (table format {fmt}; this version reads "
            f"format {TABLE_FORMAT}, with units in column names); write the demo tissue again with "
            f"`syngraph synth {wd} --overwrite` and run the steps"
        )


def evaluate(workdir: str | Path) -> dict[str, Any]:
    """Run every scorer whose step is done; write and return ``{step: {metric: value}}``."""
    wd = Path(workdir)
    if not (wd / "gt").is_dir():
        raise FileNotFoundError(
            f"{wd} has no gt/ folder: evaluation needs the demo tissue's ground truth "
            f"(create one with `syngraph synth DIR`)"
        )
    _check_table_format(wd)
    results: dict[str, Any] = {}
    for step, target, goals in SCORERS:
        if not (wd / "steps" / step / "DONE").exists():
            continue
        module, func = target.split(":")
        try:
            scorer = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError):
            continue
        metrics = _flatten(scorer(wd))
        results[step] = {
            "metrics": metrics,
            "targets": {
                k: {"cmp": c, "target": t, "pass": _passes(metrics.get(k), c, t)}
                for k, (c, t) in goals.items()
            },
        }
    tmp = wd / "evaluation.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=float))
    tmp.replace(wd / "evaluation.json")
    return results


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="accuracy against ground truth")
    for col in ("step", "metric", "value", "target", "ok"):
        table.add_column(col)
    for step, res in results.items():
        for name, value in res["metrics"].items():
            goal = res["targets"].get(name)
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            target = f"{goal['cmp']} {goal['target']:g}" if goal else ""
            ok = "" if not goal else "n/a" if goal["pass"] is None else ("yes" if goal["pass"] else "[red]NO[/]")
            table.add_row(step, name, shown, target, ok)
    if not results:
        table.add_row("-", "no step has run yet", "", "", "")
    Console().print(table)
