"""SWC files with node types from compartments and a real root.

``syngraph export skeletons --format swc`` writes one ``<cell_id>.swc`` per cell. Node types come
from the compartment step's per-node labels (``tables/compartments_nodes.parquet``: ``cell_id``,
``node_id``, ``label``; codes or names of :mod:`syngraph.compartments`) mapped by
:func:`syngraph.compartments.to_swc` (soma 1, axon 2, dendrite 3, glia 7); astrocytes (``kind`` in
``tables/cells.parquet``) are glia (7) throughout; without labels a neuron's types stay 0. Each tree is
rooted at its thickest soma node when it has one (else at the skeleton's root, its thickest node),
and nodes are numbered parents first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from syngraph import compartments
from syngraph.io.ids import id_equals
from syngraph.skeleton_io import CellSkeleton, cell_ids, read_skeleton, write_swc

COMPARTMENTS_TABLE = "compartments_nodes"


def reroot(parent: np.ndarray, root: int) -> np.ndarray:
    """Parent array with ``root`` made the root of its tree (the path to the old root reversed).

    >>> reroot(np.array([-1, 0, 1, 1]), 2).tolist()
    [1, 2, -1, 1]
    """
    new = np.asarray(parent).copy()
    prev, v = -1, int(root)
    while v != -1:
        nxt = int(parent[v])
        new[v] = prev
        prev, v = v, nxt
    return new


def parents_first(parent: np.ndarray) -> np.ndarray:
    """Node order in which every parent precedes its children (breadth first from the roots)."""
    n = len(parent)
    children = [[] for _ in range(n)]
    for i, p in enumerate(parent):
        if p >= 0:
            children[int(p)].append(i)
    order = [i for i in range(n) if parent[i] < 0]
    k = 0
    while k < len(order):
        order.extend(children[order[k]])
        k += 1
    return np.asarray(order, np.int64)


def with_compartments(skel: CellSkeleton, codes: np.ndarray) -> CellSkeleton:
    """The skeleton with a ``compartment`` attribute, rooted at its thickest soma node, parents first."""
    codes = np.asarray(codes, np.uint8)
    parent = skel.parent_id
    soma = np.flatnonzero(codes == compartments.SOMA)
    if len(soma):
        parent = reroot(parent, int(soma[np.argmax(skel.radius_nm[soma])]))
    order = parents_first(parent)
    new = np.empty(len(order), np.int64)
    new[order] = np.arange(len(order))
    par = parent[order]
    return dataclasses.replace(
        skel,
        node_id=np.arange(len(order), dtype=np.int64),
        parent_id=np.where(par >= 0, new[np.maximum(par, 0)], -1),
        nodes_nm=skel.nodes_nm[order],
        radius_nm=skel.radius_nm[order],
        attributes={**{k: np.asarray(v)[order] for k, v in skel.attributes.items()}, "compartment": codes[order]},
    )


def node_compartments(workdir: Path, skel: CellSkeleton) -> np.ndarray:
    """Compartment code per node: the compartments table where it exists, astrocytes all glia."""
    codes = np.zeros(len(skel), np.uint8)
    cells = workdir / "tables" / "cells.parquet"
    if cells.exists():
        t = pq.read_table(cells, columns=["cell_id", "kind"], filters=id_equals("cell_id", skel.cell_id))
        if t.num_rows and t["kind"][0].as_py() == "astrocyte":
            return np.full(len(skel), compartments.ASTROCYTE, np.uint8)
    path = workdir / "tables" / f"{COMPARTMENTS_TABLE}.parquet"
    if path.exists():
        t = pq.read_table(path, columns=["cell_id", "node_id", "label"], filters=id_equals("cell_id", skel.cell_id))
        node = t["node_id"].to_numpy().astype(np.int64)
        label = t["label"].to_pylist()
        vals = [compartments.code(v) if isinstance(v, str) else int(v) for v in label]
        ok = (node >= 0) & (node < len(skel))
        codes[node[ok]] = np.asarray(vals, np.uint8)[ok]
    return codes


def export_swc(workdir: str | Path, out_dir: str | Path, ids: Iterable[int] | None = None) -> list[Path]:
    """One ``<cell_id>.swc`` per cell in ``out_dir`` (see module)."""
    wd, out = Path(workdir), Path(out_dir)
    chosen = cell_ids(wd) if ids is None else np.asarray(list(ids), np.uint64)
    paths = []
    for c in chosen:
        skel = read_skeleton(wd, int(c))
        paths.append(write_swc(out / f"{int(c)}.swc", with_compartments(skel, node_compartments(wd, skel))))
    return paths
