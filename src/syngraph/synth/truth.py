"""Ground-truth tables of the demo tissue, reduced from the per-block statistics (pure functions).

Inputs are the tissue geometry (:class:`~syngraph.synth.rasterize.Indexed`) and the concatenated
block tables; outputs are Arrow tables with XYZ coordinates and units in the column names.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from syngraph import compartments as cp
from syngraph.synth.rasterize import Indexed
from syngraph.synth.tissue import CELL_TYPES


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv.ravel()


def sv_table(ix: Indexed, sv_blocks: pa.Table) -> pa.Table:
    """One row per supervoxel present: sv_id, cell_id, size_vx, bbox (voxels, stop exclusive)."""
    ids = sv_blocks["sv_id"].to_numpy()
    uniq, inv = _group(ids)
    size = np.bincount(inv, weights=sv_blocks["size_vx"].to_numpy(), minlength=len(uniq))
    cols: dict[str, np.ndarray] = {"sv_id": uniq.astype(np.uint64)}
    cell_index = np.searchsorted(ix.sv_base, uniq, side="right") - 1
    cols["cell_id"] = ix.cell_ids[cell_index]
    cols["size_vx"] = size.astype(np.int64)
    for k in ("min_x", "min_y", "min_z"):
        v = np.full(len(uniq), np.iinfo(np.int64).max)
        np.minimum.at(v, inv, sv_blocks[k].to_numpy())
        cols[f"bbox_{k}_vx"] = v
    for k in ("max_x", "max_y", "max_z"):
        v = np.full(len(uniq), np.iinfo(np.int64).min)
        np.maximum.at(v, inv, sv_blocks[k].to_numpy())
        cols[f"bbox_{k}_vx"] = v
    cols["cell_index"] = cell_index.astype(np.int64)
    return pa.table(cols)


def cells_table(ix: Indexed, sv: pa.Table) -> pa.Table:
    """cell_id, type, soma centre (nm, null if none), size_vx, n_sv, fragment, bbox_diag_nm."""
    t = ix.tissue
    ci = sv["cell_index"].to_numpy()
    uniq, inv = _group(ci)
    size = np.bincount(inv, weights=sv["size_vx"].to_numpy(), minlength=len(uniq)).astype(np.int64)
    n_sv = np.bincount(inv, minlength=len(uniq)).astype(np.int64)
    lo = np.full((len(uniq), 3), np.iinfo(np.int64).max)
    hi = np.full((len(uniq), 3), np.iinfo(np.int64).min)
    for k, ax in enumerate("xyz"):
        np.minimum.at(lo[:, k], inv, sv[f"bbox_min_{ax}_vx"].to_numpy())
        np.maximum.at(hi[:, k], inv, sv[f"bbox_max_{ax}_vx"].to_numpy())
    diag = np.linalg.norm((hi - lo) * ix.vs, axis=1)
    soma = t.cells["soma"][uniq]
    has = ~np.isnan(soma[:, 0])
    types = [CELL_TYPES[int(k)] for k in t.cells["type"][uniq]]
    return pa.table({
        "cell_id": ix.cell_ids[uniq].astype(np.uint64),
        "type": pa.array(types, pa.string()),
        "soma_x_nm": pa.array(soma[:, 0], pa.float64(), mask=~has),
        "soma_y_nm": pa.array(soma[:, 1], pa.float64(), mask=~has),
        "soma_z_nm": pa.array(soma[:, 2], pa.float64(), mask=~has),
        "soma_radius_nm": pa.array(t.cells["soma_r"][uniq], pa.float64(), mask=~has),
        "size_vx": size,
        "n_sv": n_sv,
        "fragment": t.cells["fragment"][uniq],
        "bbox_diag_nm": diag,
        "bbox_min_x_vx": lo[:, 0], "bbox_min_y_vx": lo[:, 1], "bbox_min_z_vx": lo[:, 2],
        "bbox_max_x_vx": hi[:, 0], "bbox_max_y_vx": hi[:, 1], "bbox_max_z_vx": hi[:, 2],
    })


def edges(ix: Indexed, sv: pa.Table, pair_blocks: pa.Table, false_edge_frac: float,
          rng: np.random.Generator) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(true sv edges, the rag a lab would hand in, all touching pairs with face counts)."""
    a = pair_blocks["sv_a"].to_numpy()
    b = pair_blocks["sv_b"].to_numpy()
    f = pair_blocks["faces"].to_numpy()
    if len(a):
        key = np.stack([a, b], axis=1)
        uniq, inv = np.unique(key, axis=0, return_inverse=True)
        inv = inv.ravel()
        faces = np.bincount(inv, weights=f, minlength=len(uniq)).astype(np.int64)
    else:
        uniq, faces = np.zeros((0, 2), np.uint64), np.zeros(0, np.int64)
    svs = sv["sv_id"].to_numpy()
    ci = sv["cell_index"].to_numpy()
    ca = ci[np.searchsorted(svs, uniq[:, 0])] if len(uniq) else np.zeros(0, np.int64)
    cb = ci[np.searchsorted(svs, uniq[:, 1])] if len(uniq) else np.zeros(0, np.int64)
    types = ix.tissue.cells["type"]
    astro = CELL_TYPES.index("astrocyte")
    same = ca == cb
    ta, tb = types[ca], types[cb]
    mixed = (~same) & ((ta == astro) ^ (tb == astro))
    cand = np.flatnonzero(mixed)
    n_false = int(round(false_edge_frac * len(cand)))
    if len(cand) and n_false == 0:
        n_false = 1
    pick = np.sort(rng.choice(cand, size=n_false, replace=False)) if n_false else np.zeros(0, np.int64)
    true = np.flatnonzero(same)
    contacts = pa.table({
        "sv_a": uniq[:, 0].astype(np.uint64), "sv_b": uniq[:, 1].astype(np.uint64),
        "faces": faces, "same_cell": same,
    })
    sv_edges = pa.table({"sv_a": uniq[true, 0].astype(np.uint64),
                         "sv_b": uniq[true, 1].astype(np.uint64),
                         "faces": faces[true]})
    rag_idx = np.sort(np.concatenate([true, pick]))
    rag = pa.table({"sv_a": uniq[rag_idx, 0].astype(np.uint64),
                    "sv_b": uniq[rag_idx, 1].astype(np.uint64)})
    return sv_edges, rag, contacts


def synapses_table(ix: Indexed, faces: pa.Table, sides: pa.Table, point: pa.Table,
                   sv: pa.Table) -> pa.Table:
    """One row per synapse with junction voxels in the volume."""
    t = ix.tissue
    S = t.synapses
    n = len(S["sign"])
    area = np.zeros(n + 1)
    np.add.at(area, faces["syn"].to_numpy(), faces["area_nm2"].to_numpy())
    # junction voxel nearest to the centre (min d2, then z, y, x)
    ps = point["syn"].to_numpy()
    order = np.lexsort((point["x"].to_numpy(), point["y"].to_numpy(), point["z"].to_numpy(),
                        point["d2"].to_numpy(), ps))
    first = order[np.r_[True, ps[order][1:] != ps[order][:-1]]] if len(ps) else order
    syn_ids = ps[first]
    px, py, pz = (point[k].to_numpy()[first] for k in ("x", "y", "z"))
    # voxels per (synapse, supervoxel): the pre / post side is the partner cell's majority sv
    s_syn = sides["syn"].to_numpy()
    s_sv = sides["sv_id"].to_numpy()
    s_n = sides["size_vx"].to_numpy()
    svs = sv["sv_id"].to_numpy()
    s_cell = sv["cell_index"].to_numpy()[np.searchsorted(svs, s_sv)] if len(s_sv) else s_sv
    rows: dict[str, list] = {k: [] for k in (
        "synapse_id", "pre_cell_id", "post_cell_id", "pre_sv_id", "post_sv_id", "x_vx", "y_vx",
        "z_vx", "x_nm", "y_nm", "z_nm", "size_vx", "area_um2", "sign", "pre_compartment",
        "post_compartment")}
    for k, sid in enumerate(syn_ids):
        i = int(sid) - 1
        pre, post = int(S["pre_cell"][i]), int(S["post_cell"][i])
        m = s_syn == sid
        size = int(s_n[m].sum())

        def side(cell: int, m: np.ndarray = m) -> int:
            mm = m & (s_cell == cell)
            if not mm.any():
                return 0
            j = np.flatnonzero(mm)
            best = j[np.lexsort((s_sv[j], -s_n[j]))[0]]
            return int(s_sv[best])

        pre_sv, post_sv = side(pre), side(post)
        rows["synapse_id"].append(int(sid))
        rows["pre_cell_id"].append(int(ix.cell_ids[pre]))
        rows["post_cell_id"].append(int(ix.cell_ids[post]))
        rows["pre_sv_id"].append(pre_sv)
        rows["post_sv_id"].append(post_sv)
        for ax, v in zip("xyz", (px[k], py[k], pz[k]), strict=True):
            rows[f"{ax}_vx"].append(int(v))
            rows[f"{ax}_nm"].append(float(v) * float(ix.vs["xyz".index(ax)]))
        rows["size_vx"].append(size)
        rows["area_um2"].append(float(area[sid]) / 1e6)
        rows["sign"].append(int(S["sign"][i]))
        rows["pre_compartment"].append(cp.name(int(S["pre_comp"][i])))
        rows["post_compartment"].append(cp.name(int(S["post_comp"][i])))
    types = {"synapse_id": pa.uint64(), "pre_cell_id": pa.uint64(), "post_cell_id": pa.uint64(),
             "pre_sv_id": pa.uint64(), "post_sv_id": pa.uint64(), "x_vx": pa.int64(),
             "y_vx": pa.int64(), "z_vx": pa.int64(), "x_nm": pa.float64(), "y_nm": pa.float64(),
             "z_nm": pa.float64(), "size_vx": pa.int64(), "area_um2": pa.float64(),
             "sign": pa.int8(), "pre_compartment": pa.string(), "post_compartment": pa.string()}
    return pa.table({k: pa.array(v, types[k]) for k, v in rows.items()})


def organelles_table(ix: Indexed, blocks: pa.Table) -> pa.Table:
    """layer, id, cell_id, size_vx for every organelle instance with voxels in the volume."""
    layer = blocks["layer"].to_numpy(zero_copy_only=False).astype(str)
    oid = blocks["id"].to_numpy()
    size = blocks["size_vx"].to_numpy()
    out_l, out_i, out_c, out_s = [], [], [], []
    for name in ("mi", "vc", "sj"):
        m = layer == name
        if not m.any():
            continue
        uniq, inv = _group(oid[m])
        tot = np.bincount(inv, weights=size[m], minlength=len(uniq)).astype(np.int64)
        host = ix.tissue.organelles[name]["cell"][uniq.astype(np.int64) - 1]
        out_l += [name] * len(uniq)
        out_i.append(uniq.astype(np.uint64))
        out_c.append(ix.cell_ids[host])
        out_s.append(tot)
    return pa.table({
        "layer": pa.array(out_l, pa.string()),
        "id": np.concatenate(out_i) if out_i else np.zeros(0, np.uint64),
        "cell_id": np.concatenate(out_c).astype(np.uint64) if out_c else np.zeros(0, np.uint64),
        "size_vx": np.concatenate(out_s) if out_s else np.zeros(0, np.int64),
    })


def skeletons_table(ix: Indexed, present_cells: np.ndarray) -> pa.Table:
    """Skeleton nodes of every present cell, clipped to the volume (nm, XYZ).

    A node outside the volume is dropped; an edge that leaves the volume ends at a new node on the
    border; a soma centre outside the volume is moved to the nearest point of the volume.
    """
    t = ix.tissue
    N = t.nodes
    lo = np.zeros(3)
    hi = (np.array(t.shape_xyz) - 1) * ix.vs
    pos = N["pos"]
    inside = np.all((pos >= lo) & (pos <= hi), axis=1)
    keep_cells = set(int(c) for c in present_cells)
    rows = {k: [] for k in ("cell_id", "node_id", "parent_id", "x_nm", "y_nm", "z_nm",
                            "radius_nm", "compartment", "myelin")}
    n_nodes = len(N["parent"])
    new_id = np.full(n_nodes, -1, np.int64)
    counter: dict[int, int] = {}
    for i in range(n_nodes):
        c = int(N["cell"][i])
        if c not in keep_cells:
            continue
        par = int(N["parent"][i])
        comp = int(N["comp"][i])
        p = pos[i]
        if not inside[i]:
            if comp == cp.SOMA:
                p = np.clip(p, lo, hi)
            elif par >= 0 and new_id[par] >= 0:
                # clip the edge parent -> i at the border
                a = pos[par]
                d = p - a
                with np.errstate(divide="ignore", invalid="ignore"):
                    ts = np.concatenate([np.where(d != 0, (lo - a) / d, np.inf),
                                         np.where(d != 0, (hi - a) / d, np.inf)])
                ts = ts[(ts > 0) & (ts <= 1)]
                p = a + d * (ts.min() if len(ts) else 1.0)
            else:
                continue
        nid = counter.get(c, 0)
        counter[c] = nid + 1
        new_id[i] = nid
        rows["cell_id"].append(int(ix.cell_ids[c]))
        rows["node_id"].append(nid)
        rows["parent_id"].append(int(new_id[par]) if par >= 0 else -1)
        rows["x_nm"].append(float(p[0]))
        rows["y_nm"].append(float(p[1]))
        rows["z_nm"].append(float(p[2]))
        rows["radius_nm"].append(float(N["radius"][i]))
        rows["compartment"].append(comp)
        rows["myelin"].append(bool(N["myelin"][i]))
        if not inside[i] and comp != cp.SOMA:
            new_id[i] = -1  # children of a clipped node are outside too
    types = {"cell_id": pa.uint64(), "node_id": pa.int64(), "parent_id": pa.int64(),
             "x_nm": pa.float64(), "y_nm": pa.float64(), "z_nm": pa.float64(),
             "radius_nm": pa.float64(), "compartment": pa.uint8(), "myelin": pa.bool_()}
    return pa.table({k: pa.array(v, types[k]) for k, v in rows.items()})
