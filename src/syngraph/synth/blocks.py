"""The per-block task of the generator: render one block, write its layers, return its statistics.

Each block renders its core plus one voxel on the upper faces (clipped to the volume), so faces
between a core voxel and its +x/+y/+z neighbour are counted exactly once over all blocks. The
statistics go to ``<step_dir>/blocks/<id>.<kind>.parquet`` (written atomically before the
engine's done marker; a rerun rewrites the same bytes).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cc3d
import fastremap
import numpy as np
import pyarrow as pa

from syngraph.bbox import BBox
from syngraph.engine import Block, write_table_atomic
from syngraph.io.volume import open_layer
from syngraph.synth.params import SynthParams
from syngraph.synth.rasterize import Indexed, render
from syngraph.synth.tissue import Tissue

VOLUME_LAYERS = (
    "sv", "gt_cells", "gt_compartments", "gt_myelin", "gt_mi", "gt_vc", "gt_sj",
    "mi", "vc", "sj", "syn_type", "myelin",
)
STAT_KINDS = ("sv", "pairs", "syn_faces", "syn_sides", "syn_point", "organelles")


@lru_cache(maxsize=2)
def load_indexed(path: str, id_offset: int, mtime: float) -> Indexed:
    with np.load(path) as z:
        tissue = Tissue.from_npz_dict({k: z[k] for k in z.files})
    return Indexed(tissue, id_offset)


def _face_pairs(lab: np.ndarray, n_core: tuple[int, int, int]):
    """Slices (axis, a, b) pairing every core voxel with its +1 neighbour along each axis."""
    for ax in range(3):
        h = lab.shape[ax] - n_core[ax]  # 0 or 1: halo present on this axis
        sa = [slice(0, n) for n in n_core]
        sb = [slice(0, n) for n in n_core]
        sa[ax] = slice(0, n_core[ax] + h - 1)
        sb[ax] = slice(1, n_core[ax] + h)
        yield ax, tuple(sa), tuple(sb)


def synth_block(block: Block, workdir: str, tissue_path: str, id_offset: int,
                params: SynthParams, volume_shape: tuple[int, int, int]) -> pa.Table:
    """Render ``block``, write every layer's core, write statistics; return a one-row summary."""
    ix = load_indexed(tissue_path, id_offset, Path(tissue_path).stat().st_mtime)
    vol = BBox.from_shape(volume_shape)
    core = block.core
    region = BBox(core.start, tuple(min(s + 1, v) for s, v in zip(core.stop, vol.stop, strict=True)))
    arrays = render(ix, region, params)
    cs = core.local_slices(region)
    for name in VOLUME_LAYERS:
        open_layer(workdir, name).write(arrays[name][cs], core.start)

    step_blocks = Path(tissue_path).parent / "blocks"
    tag = f"{block.id:08d}"
    n_core = core.shape
    vs = ix.vs
    face_area = (vs[1] * vs[2], vs[0] * vs[2], vs[0] * vs[1])

    # supervoxel sizes and bounding boxes (global voxels, stop exclusive)
    sv = arrays["sv"][cs]
    tables: dict[str, pa.Table] = {}
    if sv.any():
        dense, remap = fastremap.renumber(sv, in_place=False, preserve_zero=True)
        stats = cc3d.statistics(dense)
        inv = {v: k for k, v in remap.items()}
        ids, sizes, lo, hi = [], [], [], []
        for lab in range(1, len(stats["voxel_counts"])):
            bb = stats["bounding_boxes"][lab]
            if bb is None or stats["voxel_counts"][lab] == 0:
                continue
            ids.append(inv[lab])
            sizes.append(int(stats["voxel_counts"][lab]))
            lo.append([sl.start + o for sl, o in zip(bb, core.start, strict=True)])
            hi.append([sl.stop + o for sl, o in zip(bb, core.start, strict=True)])
        lo_a = np.array(lo, np.int64).reshape(-1, 3)
        hi_a = np.array(hi, np.int64).reshape(-1, 3)
        tables["sv"] = pa.table({
            "sv_id": np.array(ids, np.uint64), "size_vx": np.array(sizes, np.int64),
            "min_x": lo_a[:, 0], "min_y": lo_a[:, 1], "min_z": lo_a[:, 2],
            "max_x": hi_a[:, 0], "max_y": hi_a[:, 1], "max_z": hi_a[:, 2],
        })
    else:
        tables["sv"] = pa.table({k: pa.array([], t) for k, t in (
            ("sv_id", pa.uint64()), ("size_vx", pa.int64()), ("min_x", pa.int64()),
            ("min_y", pa.int64()), ("min_z", pa.int64()), ("max_x", pa.int64()),
            ("max_y", pa.int64()), ("max_z", pa.int64()))})

    # touching supervoxel pairs (6-connected faces) with face counts
    lab = arrays["sv"]
    keys_a, keys_b = [], []
    for _ax, sa, sb in _face_pairs(lab, n_core):
        A, B = lab[sa], lab[sb]
        m = (A != B) & (A > 0) & (B > 0)
        a, b = A[m], B[m]
        keys_a.append(np.minimum(a, b))
        keys_b.append(np.maximum(a, b))
    ka = np.concatenate(keys_a) if keys_a else np.zeros(0, np.uint64)
    kb = np.concatenate(keys_b) if keys_b else np.zeros(0, np.uint64)
    if len(ka):
        pairs, counts = np.unique(np.stack([ka, kb], axis=1), axis=0, return_counts=True)
    else:
        pairs, counts = np.zeros((0, 2), np.uint64), np.zeros(0, np.int64)
    tables["pairs"] = pa.table({"sv_a": pairs[:, 0].astype(np.uint64),
                                "sv_b": pairs[:, 1].astype(np.uint64),
                                "faces": counts.astype(np.int64)})

    # synaptic junctions: interface area between the two partner cells inside each junction
    sj = arrays["gt_sj"]
    cidx = arrays["cell_index"]
    n_sj = len(ix.tissue.organelles["sj"]["r"])
    area = np.zeros(n_sj + 1, np.float64)
    for ax, sa, sb in _face_pairs(sj, n_core):
        A, B = sj[sa], sj[sb]
        m = (A == B) & (A > 0) & (cidx[sa] != cidx[sb])
        if m.any():
            area += np.bincount(A[m].astype(np.int64), minlength=n_sj + 1) * face_area[ax]
    nz = np.flatnonzero(area)
    tables["syn_faces"] = pa.table({"syn": nz.astype(np.int64), "area_nm2": area[nz]})
    sj_core = sj[cs]
    m = sj_core > 0
    if m.any():
        pairs2, cnt2 = np.unique(np.stack([sj_core[m], sv[m]], axis=1), axis=0, return_counts=True)
        # the junction voxel nearest its geometric centre (ties: lowest global z, y, x)
        idx = np.nonzero(m)
        gx, gy, gz = (idx[k] + core.start[k] for k in range(3))
        syn = sj_core[m].astype(np.int64)
        cen = ix.tissue.organelles["sj"]["a"][syn - 1]
        d2 = ((gx * vs[0] - cen[:, 0]) ** 2 + (gy * vs[1] - cen[:, 1]) ** 2
              + (gz * vs[2] - cen[:, 2]) ** 2)
        order = np.lexsort((gx, gy, gz, d2, syn))
        first = order[np.r_[True, syn[order][1:] != syn[order][:-1]]]
        tables["syn_point"] = pa.table({"syn": syn[first], "d2": d2[first], "x": gx[first],
                                        "y": gy[first], "z": gz[first]})
    else:
        pairs2, cnt2 = np.zeros((0, 2), np.uint64), np.zeros(0, np.int64)
        tables["syn_point"] = pa.table({"syn": pa.array([], pa.int64()), "d2": pa.array([], pa.float64()),
                                        "x": pa.array([], pa.int64()), "y": pa.array([], pa.int64()),
                                        "z": pa.array([], pa.int64())})
    tables["syn_sides"] = pa.table({"syn": pairs2[:, 0].astype(np.int64),
                                    "sv_id": pairs2[:, 1].astype(np.uint64),
                                    "size_vx": cnt2.astype(np.int64)})
    # organelle sizes
    layers, oids, osz = [], [], []
    for name in ("mi", "vc", "sj"):
        lab_o = arrays[f"gt_{name}"][cs]
        c = np.bincount(lab_o.ravel().astype(np.int64))
        c[0] = 0
        nzo = np.flatnonzero(c)
        layers += [name] * len(nzo)
        oids.append(nzo)
        osz.append(c[nzo])
    tables["organelles"] = pa.table({
        "layer": pa.array(layers, pa.string()),
        "id": np.concatenate(oids).astype(np.uint64),
        "size_vx": np.concatenate(osz).astype(np.int64),
    })
    for kind, table in tables.items():
        write_table_atomic(table, step_blocks / f"{tag}.{kind}.parquet")
    fg = int((arrays["gt_cells"][cs] > 0).sum())
    return pa.table({"block": [block.id], "voxels": [core.size], "foreground_vx": [fg],
                     "myelin_vx": [int(arrays["gt_myelin"][cs].sum())]})


def read_block_tables(step_dir: Path, kind: str) -> pa.Table:
    files = sorted((Path(step_dir) / "blocks").glob(f"*.{kind}.parquet"))
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(f) for f in files])


__all__ = ["STAT_KINDS", "VOLUME_LAYERS", "read_block_tables", "synth_block"]
