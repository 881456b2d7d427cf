"""The blockwise pass of the synapse step: contact sites and synaptic voxels of one block.

Each task writes three tables for its block (all coordinates global voxels, XYZ):

- ``cs`` (returned to the engine): one row per supervoxel pair with faces or contact voxels in the block.
- ``syn_vox/<id>.parquet``: every contact voxel inside the sj mask, with its pair, own supervoxel,
  sj probability and symmetric flag.
- ``syn_faces/<id>.parquet``: every face of a pair with sj voxels on both sides, with its area.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from syngraph.engine import Block, write_table_atomic
from syngraph.io.volume import open_layer
from syngraph.steps.synapses.contacts import block_contacts


def _read_prob(workdir: str, layer: str, block: Block) -> np.ndarray:
    return open_layer(workdir, layer).read(block.read)


def contacts_task(block: Block, workdir: str, step_dir: str, params: dict[str, Any]) -> pa.Table:
    """Contacts and synaptic voxels of one block (see the module docstring)."""
    sv = open_layer(workdir, "sv").read(block.read)
    core = block.core.local_slices(block.read)
    c = block_contacts(
        sv,
        tuple(s.start for s in core),
        tuple(s.stop for s in core),
        block.read.start,
        params["voxel_size_nm"],
        dilations=params["dilations"],
        gap_search_vx=tuple(params.get("gap_search_vx", (0, 0, 0))),
    )
    cs = pa.table(
        {
            "block": np.full(len(c.pairs), block.id, np.int64),
            "sv_a": c.pairs[:, 0],
            "sv_b": c.pairs[:, 1],
            "size_vx": c.size_vx,
            "n_faces_x": c.n_faces[:, 0],
            "n_faces_y": c.n_faces[:, 1],
            "n_faces_z": c.n_faces[:, 2],
            "area_nm2": c.area_nm2,
            **{f"bbox_min_{a}": c.bbox_min[:, i] for i, a in enumerate("xyz")},
            **{f"bbox_max_{a}": c.bbox_max[:, i] for i, a in enumerate("xyz")},
            **{f"rep_{a}": c.rep[:, i] for i, a in enumerate("xyz")},
            **{f"sum_{a}": c.coord_sum[:, i] for i, a in enumerate("xyz")},
        }
    )
    if params.get("sj_layer"):
        _write_syn_tables(block, workdir, Path(step_dir), params, sv, c)
    return cs


def _write_syn_tables(block, workdir, step_dir, params, sv, c) -> None:
    sj = _read_prob(workdir, params["sj_layer"], block)
    sj_flat = sj.reshape(-1)
    sj_mask = sj_flat > params["sj_threshold_raw"]
    sv_flat = sv.reshape(-1)
    e_in = sj_mask[c.entry_flat]
    flat = c.entry_flat[e_in]
    pair = c.entry_pair[e_in]
    xyz = c.xyz_of(flat)
    cols: dict[str, Any] = {
        "x": xyz[:, 0],
        "y": xyz[:, 1],
        "z": xyz[:, 2],
        "sv_a": c.pairs[pair, 0],
        "sv_b": c.pairs[pair, 1],
        "sv": sv_flat[flat],
        "sj_prob": sj_flat[flat].astype(np.float32) / np.float32(params["sj_range"]),
    }
    if params.get("type_layer"):
        st = _read_prob(workdir, params["type_layer"], block).reshape(-1)
        cols["sym"] = st[flat] > params["sym_threshold_raw"]
    write_table_atomic(pa.table(cols), step_dir / "syn_vox" / f"{block.id:08d}.parquet")

    f_in = sj_mask[c.face_lo_flat] & sj_mask[c.face_hi_flat]
    lo = c.xyz_of(c.face_lo_flat[f_in])
    fp = c.face_pair[f_in]
    faces = pa.table(
        {
            "x": lo[:, 0],
            "y": lo[:, 1],
            "z": lo[:, 2],
            "sv_a": c.pairs[fp, 0],
            "sv_b": c.pairs[fp, 1],
            "axis": c.face_axis[f_in],
            "area_nm2": c.face_area_nm2[f_in],
            "sj_min": np.minimum(sj_flat[c.face_lo_flat[f_in]], sj_flat[c.face_hi_flat[f_in]]).astype(
                np.float32) / np.float32(params["sj_range"]),
        }
    )
    write_table_atomic(faces, step_dir / "syn_faces" / f"{block.id:08d}.parquet")
