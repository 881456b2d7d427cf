"""The wiring diagram as tables: synapses and connections, plus CAVE, neuPrint and SyConn exports.

Writes ``tables/synapses.parquet`` and ``tables/connections.parquet`` (queryable with ``Project.sql``)
and, under ``export/``: ``cave_synapses.parquet`` (emannotationschemas ``synapse`` schema,
:mod:`syngraph.export.cave`), ``neuprint/`` (neo4j bulk-import CSVs, :mod:`syngraph.export.neuprint`),
``conn_mat.csv`` (byte-compatible with SyConn's, :mod:`syngraph.export.syconn`) and
``conn_mat.parquet`` (the same columns plus ``sign``, ``synapse_id``, ``area_um2``).
Parquet key-value metadata: ``voxel_size_nm``, ``syngraph_version``, ``config_sha256``.

Labels-only projects (no sj layer, so no ``syn_ssv``) get the cell contact graph instead:
``connections.parquet`` with one row per touching cell pair (``cell_a < cell_b``, contact area,
no synapse columns; metadata ``graph = contacts``) and ``export/cell_contacts.csv``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from syngraph import __version__
from syngraph.config import CONFIG_NAME, ProjectConfig, load_config
from syngraph.engine import write_table_atomic
from syngraph.errors import StepOrderError
from syngraph.export.cave import cave_metadata, cave_table
from syngraph.export.celltypes import (
    add_partner_columns,
    celltype_classes,
    celltype_matrix,
    conn_mat_partners,
)
from syngraph.export.neuprint import write_neuprint
from syngraph.export.points import with_partner_points
from syngraph.export.syconn import conn_mat_table, write_conn_mat
from syngraph.io.volume import open_layer

NULL_COLUMNS: dict[str, pa.DataType] = {
    "pre_compartment": pa.string(),
    "post_compartment": pa.string(),
    "post_spine_class": pa.string(),
    "post_spine_head_volume_um3": pa.float32(),
    "pre_celltype": pa.string(),
    "post_celltype": pa.string(),
    "pre_embedding": pa.list_(pa.float32()),
    "post_embedding": pa.list_(pa.float32()),
}


def _metadata(wd: Path, cfg: ProjectConfig) -> dict[str, str]:
    cfg_bytes = (wd / CONFIG_NAME).read_bytes() if (wd / CONFIG_NAME).exists() else b""
    return {
        "voxel_size_nm": json.dumps(list(cfg.voxel_size_nm)),
        "syngraph_version": __version__,
        "config_sha256": hashlib.sha256(cfg_bytes).hexdigest(),
    }


def synapse_table(syn: pa.Table, voxel_size_nm: tuple[float, float, float], threshold: float) -> pa.Table:
    """Synapses with ``syn_prob >= threshold``, nm centres, and the columns later steps fill."""
    keep = syn["syn_prob"].to_numpy() >= threshold
    syn = syn.filter(pa.array(keep))
    cols: dict[str, Any] = {}
    for name in ("synapse_id", "pre_cell_id", "post_cell_id", "pre_sv_id", "post_sv_id",
                 "x_vx", "y_vx", "z_vx"):
        cols[name] = syn[name]
    for a, v in zip("xyz", voxel_size_nm, strict=True):
        cols[f"{a}_nm"] = pa.array(syn[f"{a}_vx"].to_numpy() * float(v), pa.float64())
    for name in ("size_vx", "area_um2", "sign", "syn_prob", "direction_conf", "direction_source"):
        cols[name] = syn[name]
    for name, typ in NULL_COLUMNS.items():
        if name in syn.column_names:
            cols[name] = syn[name]
        else:
            cols[name] = pa.nulls(syn.num_rows, typ)
    return pa.table(cols)


def connection_table(synapses: pa.Table) -> pa.Table:
    con = duckdb.connect()
    con.register("s", synapses)
    return con.sql("""
      select pre_cell_id, post_cell_id, count(*)::bigint as n_synapses, sum(area_um2) as area_um2_sum,
        count(*) filter (where sign = 1)::bigint as n_asymmetric,
        count(*) filter (where sign = -1)::bigint as n_symmetric,
        count(*) filter (where sign = 0)::bigint as n_unsigned
      from s group by pre_cell_id, post_cell_id order by pre_cell_id, post_cell_id""").to_arrow_table()


def run_matrix(
    workdir: str | Path,
    *,
    config: ProjectConfig | None = None,
    compute: Any = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Write the synapse and connection tables and their exports; returns counts."""
    wd = Path(workdir)
    cfg = config or load_config(wd)
    path = wd / "tables" / "syn_ssv.parquet"
    meta = _metadata(wd, cfg)
    if not path.exists():
        contacts = wd / "tables" / "cs_ssv.parquet"
        if contacts.exists() and "n_synapses" not in pq.read_schema(contacts).names:
            return _write_contact_graph(wd, pq.read_table(contacts), meta)
        raise StepOrderError(f"{path} is missing: run `syngraph run synapses` first")
    syn = synapse_table(pq.read_table(path), cfg.voxel_size_nm, cfg.synapses.prob_threshold)
    syn = add_partner_columns(wd, syn)
    syn = with_partner_points(syn, open_layer(wd, "sv"))
    conns = connection_table(syn)
    write_table_atomic(celltype_matrix(syn), wd / "tables" / "celltype_matrix.parquet", meta)
    write_table_atomic(syn, wd / "tables" / "synapses.parquet", meta)
    write_table_atomic(conns, wd / "tables" / "connections.parquet", meta)
    out = wd / "export"
    out.mkdir(exist_ok=True)
    for old in ("neuprint_connections.csv", "neuprint_synapses.csv"):  # before export/neuprint/
        (out / old).unlink(missing_ok=True)
    write_table_atomic(cave_table(syn), out / "cave_synapses.parquet", {**meta, **cave_metadata(cfg.voxel_size_nm)})
    cells = wd / "tables" / "cells.parquet"
    write_neuprint(out / "neuprint", syn, conns, pq.read_table(cells) if cells.exists() else None)
    conn_mat = conn_mat_partners(conn_mat_table(syn), syn, celltype_classes(wd))
    write_table_atomic(conn_mat, out / "conn_mat.parquet", meta)
    write_conn_mat(out / "conn_mat.csv", conn_mat)
    return {"n_synapses": syn.num_rows, "n_connections": conns.num_rows}


SYNAPSE_FILES = ("tables/synapses.parquet", "tables/celltype_matrix.parquet", "export/cave_synapses.parquet",
                 "export/neuprint_connections.csv", "export/neuprint_synapses.csv", "export/conn_mat.csv",
                 "export/conn_mat.parquet")
CONTACT_COLUMNS = ("cell_a", "cell_b", "contact_area_um2", "contact_size_vx", "n_sv_pairs")


def _write_contact_graph(wd: Path, cs_ssv: pa.Table, meta: dict[str, str]) -> dict[str, Any]:
    """Labels-only: ``connections.parquet`` and ``export/cell_contacts.csv`` from the cell
    contacts; synapse files of an earlier run are removed (they would describe other inputs)."""
    conns = cs_ssv.select([c for c in CONTACT_COLUMNS if c in cs_ssv.column_names])
    for rel in SYNAPSE_FILES:
        (wd / rel).unlink(missing_ok=True)
    shutil.rmtree(wd / "export" / "neuprint", ignore_errors=True)
    write_table_atomic(conns, wd / "tables" / "connections.parquet", {**meta, "graph": "contacts"})
    (wd / "export").mkdir(exist_ok=True)
    _write_csv(conns, wd / "export" / "cell_contacts.csv")
    return {"graph": "contacts", "n_synapses": 0, "n_connections": conns.num_rows}


def _write_csv(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pacsv.write_csv(table, tmp, pacsv.WriteOptions(quoting_style="none"))
    tmp.replace(path)
