"""SWC files with node types from compartments and a real root.

``syngraph export skeletons --format swc`` writes one ``<cell_id>.swc`` per cell. Node types come
from the compartment step's per-node labels (``tables/compartments_nodes.parquet``: ``cell_id``,
``node_id``, ``label``; codes or names of :mod:`syngraph.compartments`) mapped by
:func:`syngraph.compartments.to_swc` (soma 1, axon 2, dendrite 3, glia 7); astrocytes (``kind`` in
``tables/cells.parquet``) are glia (7) throughout; without labels a neuron's types stay 0. Both
tables are read once per export. Each tree is rooted at its thickest soma node when it has one
(else at the skeleton's root) and nodes are numbered parents first, by
:func:`syngraph.skeleton.orient`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from syngraph import compartments
from syngraph.skeleton import Forest
from syngraph.skeleton_io import CellSkeleton, cell_ids, read_skeleton, to_cell_skeleton, write_swc

COMPARTMENTS_TABLE = "compartments_nodes"


@dataclass(frozen=True)
class NodeLabels:
    """Compartment codes of every labelled node, and the astrocytes, read once per export."""

    astrocytes: np.ndarray  # sorted uint64 cell ids
    cell_id: np.ndarray  # (k,) uint64, sorted
    node_id: np.ndarray  # (k,) int64
    code: np.ndarray  # (k,) uint8


def read_node_labels(workdir: Path) -> NodeLabels:
    """``tables/cells.parquet`` (kind) and ``tables/compartments_nodes.parquet`` (label), each read
    once; either may be missing."""
    tables = Path(workdir) / "tables"
    astro = np.zeros(0, np.uint64)
    if (tables / "cells.parquet").exists():
        t = pq.read_table(tables / "cells.parquet", columns=["cell_id", "kind"])
        kind = np.asarray(t["kind"].to_pylist(), object)
        astro = np.sort(t["cell_id"].to_numpy().astype(np.uint64)[kind == "astrocyte"])
    path = tables / f"{COMPARTMENTS_TABLE}.parquet"
    if not path.exists():
        return NodeLabels(astro, np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint8))
    t = pq.read_table(path, columns=["cell_id", "node_id", "label"]).sort_by("cell_id")
    names, inv = np.unique(np.asarray(t["label"].to_pylist(), object).astype(str), return_inverse=True)
    as_code = np.asarray([compartments.code(v) if not v.isdigit() else int(v) for v in names], np.uint8)
    return NodeLabels(astro, t["cell_id"].to_numpy().astype(np.uint64), t["node_id"].to_numpy().astype(np.int64),
                      as_code[inv.reshape(-1)])


def node_compartments(labels: NodeLabels, skel: CellSkeleton) -> np.ndarray:
    """Compartment code per node of ``skel``: its labelled nodes, astrocytes all glia, else 0."""
    cid = np.uint64(skel.cell_id)
    if np.any(labels.astrocytes == cid):
        return np.full(len(skel), compartments.ASTROCYTE, np.uint8)
    lo, hi = np.searchsorted(labels.cell_id, cid), np.searchsorted(labels.cell_id, cid, side="right")
    node, code = labels.node_id[lo:hi], labels.code[lo:hi]
    ok = (node >= 0) & (node < len(skel))
    codes = np.zeros(len(skel), np.uint8)
    codes[node[ok]] = code[ok]
    return codes


def with_compartments(skel: CellSkeleton, codes: np.ndarray) -> CellSkeleton:
    """The skeleton with a ``compartment`` attribute, each tree rooted at its thickest soma node
    (else at its root), parents first (:func:`syngraph.skeleton.orient`)."""
    codes = np.asarray(codes, np.uint8)
    radius = np.asarray(skel.radius_nm, np.float64)
    top = radius.max(initial=0.0) + 1.0
    priority = np.where(codes == compartments.SOMA, 2 * top + radius, np.where(skel.parent_id < 0, top, radius))
    forest = Forest(skel.nodes_nm, skel.edges, skel.radius_nm, {**skel.attributes, "compartment": codes})
    return to_cell_skeleton(skel.cell_id, forest, priority)


def export_swc(workdir: str | Path, out_dir: str | Path, ids: Iterable[int] | None = None) -> list[Path]:
    """One ``<cell_id>.swc`` per cell in ``out_dir`` (see module)."""
    wd, out = Path(workdir), Path(out_dir)
    chosen = cell_ids(wd) if ids is None else np.asarray(list(ids), np.uint64)
    labels = read_node_labels(wd)
    paths = []
    for c in chosen:
        skel = read_skeleton(wd, int(c))
        paths.append(write_swc(out / f"{int(c)}.swc", with_compartments(skel, node_compartments(labels, skel))))
    return paths
