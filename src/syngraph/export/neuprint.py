"""neuPrint's neo4j bulk-import CSV set (``neo4j-admin database import``), as the hemibrain and
MANC ``neuprint-inputs`` releases lay it out.

Files in ``export/neuprint/`` (typed headers; ids in the spaces ``Body-ID``, ``SynSet-ID``,
``Syn-ID``; points are voxel coordinates, ``{x:.., y:.., z:..}`` in SRID 9157, cartesian 3-D)::

    Neuprint_Neurons.csv                 :ID(Body-ID), bodyId:long, pre:int, post:int,
                                         upstream:int, downstream:int, size:long (voxels),
                                         status:string, kind:string (neuron/astrocyte), :LABEL
    Neuprint_Neuron_Connections.csv      :START_ID(Body-ID), weight:int, :END_ID(Body-ID)  (ConnectsTo)
    Neuprint_SynapseSet.csv              :ID(SynSet-ID), :LABEL
    Neuprint_Neuron_to_SynapseSet.csv    :START_ID(Body-ID), :END_ID(SynSet-ID)          (Contains)
    Neuprint_SynapseSet_to_SynapseSet.csv  :START_ID(SynSet-ID), weight:int, :END_ID(SynSet-ID)  (ConnectsTo)
    Neuprint_Synapses.csv                :ID(Syn-ID), type:string, confidence:float,
                                         location:point{srid:9157}, :LABEL
    Neuprint_SynapseSet_to_Synapses.csv  :START_ID(SynSet-ID), :END_ID(Syn-ID)           (Contains)
    Neuprint_Synapse_Connections.csv     :START_ID(Syn-ID), :END_ID(Syn-ID)              (SynapsesTo)

Every synapse becomes a ``pre`` node (id ``2 * synapse_id``, at its pre point) and a ``post`` node
(``2 * synapse_id + 1``, at its post point). A synapse set is one body's synapses with one partner,
named ``<body>_<partner>_pre`` / ``_post``. Relationship types are given on the import command line
(``--relationships=ConnectsTo=...``), as in the releases.
"""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

RELATIONSHIPS = {
    "ConnectsTo": ("Neuprint_Neuron_Connections.csv", "Neuprint_SynapseSet_to_SynapseSet.csv"),
    "Contains": ("Neuprint_Neuron_to_SynapseSet.csv", "Neuprint_SynapseSet_to_Synapses.csv"),
    "SynapsesTo": ("Neuprint_Synapse_Connections.csv",),
}


def _point(xyz: np.ndarray) -> list[str]:
    return [f"{{x:{int(x)}, y:{int(y)}, z:{int(z)}}}" for x, y, z in xyz]


def _write(path: Path, header: list[str], columns: list[list]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_MINIMAL)
        w.writerow(header)
        w.writerows(zip(*columns, strict=True))  # None -> empty: property not set
    tmp.replace(path)


def neuron_table(connections: pa.Table, cells: pa.Table | None) -> pa.Table:
    """One row per cell: synapse counts (pre, post), partner counts, size, kind, from the matrix
    step's ``connections`` (``pre_cell_id``, ``post_cell_id``, ``n_synapses``). Without a cells
    table, the connected cells (size unknown: empty)."""
    if cells is None:
        ids = np.unique(np.concatenate([connections[c].to_numpy() for c in ("pre_cell_id", "post_cell_id")]))
        cells = pa.table({"cell_id": pa.array(ids, pa.uint64()), "size_vx": pa.nulls(len(ids), pa.int64())})
    con = duckdb.connect()
    con.register("k", connections)
    con.register("c", cells)
    kind = "c.kind" if "kind" in cells.column_names else "'neuron'"
    return con.sql(f"""
      with o as (select pre_cell_id as id, sum(n_synapses) as n, count(*) as partners from k group by 1),
        i as (select post_cell_id as id, sum(n_synapses) as n, count(*) as partners from k group by 1)
      select c.cell_id as body_id, coalesce(o.n, 0)::int as pre, coalesce(i.n, 0)::int as post,
        coalesce(i.partners, 0)::int as upstream, coalesce(o.partners, 0)::int as downstream,
        c.size_vx::bigint as size, {kind}::varchar as kind
      from c left join o on o.id = c.cell_id left join i on i.id = c.cell_id
      order by c.cell_id""").to_arrow_table()


def write_neuprint(out: Path, synapses: pa.Table, connections: pa.Table, cells: pa.Table | None,
                   dataset: str = "syngraph") -> list[Path]:
    """Write the CSV set into ``out`` from the synapses and the ``connections`` the matrix step
    counted (:func:`syngraph.export.matrix.connection_table`); returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    neurons = neuron_table(connections, cells)
    ids = neurons["body_id"].to_numpy()
    kind = neurons["kind"].to_pylist()
    label = [f"Segment;{dataset}_Segment" + (f";Neuron;{dataset}_Neuron" if k == "neuron" else "") for k in kind]
    files = {}
    files["Neuprint_Neurons.csv"] = (
        [":ID(Body-ID)", "bodyId:long", "pre:int", "post:int", "upstream:int", "downstream:int",
         "size:long", "status:string", "kind:string", ":LABEL"],
        [ids, ids, *(neurons[c].to_pylist() for c in ("pre", "post", "upstream", "downstream", "size")),
         ["Traced"] * len(ids), kind, label])
    pre_c = synapses["pre_cell_id"].to_numpy()
    post_c = synapses["post_cell_id"].to_numpy()
    pairs = np.stack([connections[c].to_numpy().astype(np.uint64) for c in ("pre_cell_id", "post_cell_id")], 1)
    weight = connections["n_synapses"].to_numpy()
    files["Neuprint_Neuron_Connections.csv"] = (
        [":START_ID(Body-ID)", "weight:int", ":END_ID(Body-ID)"], [pairs[:, 0], weight, pairs[:, 1]])
    set_pre = [f"{a}_{b}_pre" for a, b in pairs]
    set_post = [f"{b}_{a}_post" for a, b in pairs]
    files["Neuprint_SynapseSet.csv"] = (
        [":ID(SynSet-ID)", ":LABEL"], [set_pre + set_post, [f"SynapseSet;{dataset}_SynapseSet"] * (2 * len(pairs))])
    files["Neuprint_Neuron_to_SynapseSet.csv"] = (
        [":START_ID(Body-ID)", ":END_ID(SynSet-ID)"],
        [np.concatenate([pairs[:, 0], pairs[:, 1]]), set_pre + set_post])
    files["Neuprint_SynapseSet_to_SynapseSet.csv"] = (
        [":START_ID(SynSet-ID)", "weight:int", ":END_ID(SynSet-ID)"], [set_pre, weight, set_post])
    sid = synapses["synapse_id"].to_numpy().astype(np.uint64)
    pre_id, post_id = sid * 2, sid * 2 + 1
    conf = synapses["syn_prob"].to_numpy()
    pre_xyz = np.stack([synapses[f"pre_{a}_vx"].to_numpy() for a in "xyz"], 1)
    post_xyz = np.stack([synapses[f"post_{a}_vx"].to_numpy() for a in "xyz"], 1)
    n = len(sid)
    files["Neuprint_Synapses.csv"] = (
        [":ID(Syn-ID)", "type:string", "confidence:float", "location:point{srid:9157}", ":LABEL"],
        [np.concatenate([pre_id, post_id]), ["pre"] * n + ["post"] * n,
         [f"{c:.4f}" for c in np.concatenate([conf, conf])], _point(pre_xyz) + _point(post_xyz),
         [f"Synapse;{dataset}_Synapse"] * (2 * n)])
    set_of = {(int(a), int(b)): i for i, (a, b) in enumerate(pairs)}
    k = [set_of[(int(a), int(b))] for a, b in zip(pre_c, post_c, strict=True)]
    files["Neuprint_SynapseSet_to_Synapses.csv"] = (
        [":START_ID(SynSet-ID)", ":END_ID(Syn-ID)"],
        [[set_pre[i] for i in k] + [set_post[i] for i in k], np.concatenate([pre_id, post_id])])
    files["Neuprint_Synapse_Connections.csv"] = ([":START_ID(Syn-ID)", ":END_ID(Syn-ID)"], [pre_id, post_id])
    paths = []
    for name, (header, columns) in files.items():
        _write(out / name, header, [list(c) for c in columns])
        paths.append(out / name)
    return paths
