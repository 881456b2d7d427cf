"""SyConn2's ``conn_mat.csv``, written the way SyConn writes it, and our richer copy as Parquet.

SyConn (``cs_processing_steps.export_matrix``) calls ``np.savetxt(path, table, delimiter="\\t",
header=...)``: tab-separated ``%.18e`` floats under one ``# x\\ty\\tz\\tssv1...`` header line. Its 35
columns, in order: ``x y z`` (centre, voxels), ``ssv1 ssv2`` (partner cell ids; here pre first),
``size`` (area in um^2 times the sign: negative = symmetric/inhibitory), ``comp1 comp2`` (axoness:
0 dendrite, 1 axon, 2 soma, 3 en-passant bouton, 4 terminal bouton, -1 unknown), ``celltype1
celltype2`` (-1 unknown), ``spiness1 spiness2`` (0 neck, 1 head, 2 shaft, 3 other, -1 unknown),
``synprob``, ``spinehead_vol1 spinehead_vol2`` (um^3, -1 unknown), ``latentmorph{1,2}_0..9`` (NaN
here). Cell ids pass through float64 as in SyConn (exact below 2^53).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from syngraph.compartments import to_syconn
from syngraph.models.embeddings import DIM

N_LATENT = DIM  # latent_morph values per partner
COLUMNS = (["x", "y", "z", "ssv1", "ssv2", "size", "comp1", "comp2", "celltype1", "celltype2",
            "spiness1", "spiness2", "synprob", "spinehead_vol1", "spinehead_vol2"]
           + [f"latentmorph{s}_{k}" for s in (1, 2) for k in range(N_LATENT)])
HEADER = "\t".join(COLUMNS)

def _codes(table: pa.Table, column: str, kind: str) -> np.ndarray:
    """SyConn's ``axoness`` or ``spiness`` codes of a compartment-name column (-1 where absent)."""
    if column not in table.column_names:
        return np.full(table.num_rows, -1, np.int64)
    return to_syconn(table[column].to_pylist(), kind)


def conn_mat_table(synapses: pa.Table) -> pa.Table:
    """SyConn's 35 columns (its order and codes) plus ``sign``, ``synapse_id``, ``area_um2``."""
    n = synapses.num_rows
    sign = synapses["sign"].to_numpy().astype(np.int64)
    area = synapses["area_um2"].to_numpy().astype(np.float64)
    cols: dict[str, Any] = {
        "x": synapses["x_vx"], "y": synapses["y_vx"], "z": synapses["z_vx"],
        "ssv1": synapses["pre_cell_id"], "ssv2": synapses["post_cell_id"],
        "size": pa.array(np.where(sign < 0, -area, area)),
        "comp1": _codes(synapses, "pre_compartment", "axoness"),
        "comp2": _codes(synapses, "post_compartment", "axoness"),
        # cell types and latent_morph: -1 / NaN here, filled by export.celltypes.conn_mat_partners
        "celltype1": np.full(n, -1, np.int64), "celltype2": np.full(n, -1, np.int64),
        "spiness1": _codes(synapses, "pre_compartment", "spiness"),
        "spiness2": _codes(synapses, "post_compartment", "spiness"),
        "synprob": synapses["syn_prob"],
    }
    for side in ("pre", "post"):
        k = "1" if side == "pre" else "2"
        vol = np.full(n, -1.0)
        if "post_spine_head_volume_um3" in synapses.column_names and side == "post":
            vol = synapses["post_spine_head_volume_um3"].fill_null(-1.0).to_numpy().astype(np.float64)
        cols[f"spinehead_vol{k}"] = vol
    for side in (1, 2):
        for k in range(N_LATENT):
            cols[f"latentmorph{side}_{k}"] = np.full(n, np.nan)
    cols["sign"] = synapses["sign"]
    cols["synapse_id"] = synapses["synapse_id"]
    cols["area_um2"] = synapses["area_um2"]
    return pa.table(cols)


def write_conn_mat(path: Path, table: pa.Table) -> None:
    """``conn_mat.csv`` exactly as SyConn's ``np.savetxt`` call writes it."""
    arr = np.stack([table[c].to_numpy(zero_copy_only=False).astype(np.float64) for c in COLUMNS], 1) \
        if table.num_rows else np.zeros((0, len(COLUMNS)))
    tmp = path.with_name(path.name + ".tmp")
    np.savetxt(tmp, arr, delimiter="\t", header=HEADER)
    tmp.replace(path)
