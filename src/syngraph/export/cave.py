"""The CAVE synapse table: emannotationschemas' ``synapse`` schema, flattened as CAVE stores it.

Columns ``id, valid, pre_pt_position, pre_pt_supervoxel_id, pre_pt_root_id, post_pt_position,
post_pt_supervoxel_id, post_pt_root_id, ctr_pt_position, size``: positions are XYZ voxel indices
at the resolution stated in the Parquet metadata (``voxel_resolution_nm``, CAVE's table
``voxel_resolution``), ``size`` is the synapse's voxel count as a float (as MICrONS tables), root ids
are cell ids and supervoxel ids the partners' supervoxels.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

SCHEMA = "synapse"


def _points(table: pa.Table, prefix: str) -> pa.Array:
    xyz = np.stack([table[f"{prefix}{a}_vx"].to_numpy() for a in "xyz"], axis=1).astype(np.int64)
    return pa.FixedSizeListArray.from_arrays(pa.array(xyz.ravel()), 3)


def cave_table(synapses: pa.Table) -> pa.Table:
    """The flattened ``synapse`` schema table of the synapses table (which has pre/post points)."""
    return pa.table({
        "id": synapses["synapse_id"],
        "valid": pa.array(np.ones(synapses.num_rows, bool)),
        "pre_pt_position": _points(synapses, "pre_"),
        "pre_pt_supervoxel_id": synapses["pre_sv_id"],
        "pre_pt_root_id": synapses["pre_cell_id"],
        "post_pt_position": _points(synapses, "post_"),
        "post_pt_supervoxel_id": synapses["post_sv_id"],
        "post_pt_root_id": synapses["post_cell_id"],
        "ctr_pt_position": _points(synapses, ""),
        "size": pa.array(synapses["size_vx"].to_numpy().astype(np.float64)),
    })


def cave_metadata(voxel_size_nm: tuple[float, float, float]) -> dict[str, str]:
    return {"schema_type": SCHEMA, "voxel_resolution_nm": json.dumps([float(v) for v in voxel_size_nm])}
