"""Cell types and embeddings in the wiring diagram: partner columns of the synapse table,
SyConn's ``celltype1/2`` and ``latentmorph*`` columns of ``conn_mat.csv``, and
``tables/celltype_matrix.parquet`` (pre type x post type: synapse counts and summed area by sign).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from syngraph.export.syconn import N_LATENT


def celltype_classes(wd: Path) -> list[str]:
    """The classes of ``tables/celltypes.parquet`` in probability-column order (SyConn codes 0..)."""
    path = wd / "tables" / "celltypes.parquet"
    return [c[2:] for c in pq.read_schema(path).names if c.startswith("p_")] if path.exists() else []


def add_partner_columns(wd: Path, syn: pa.Table) -> pa.Table:
    """Fill ``pre/post_celltype`` (from ``tables/celltypes.parquet``) and ``pre/post_embedding``
    (the ``latent_morph`` of each partner's skeleton node nearest to the synapse, from
    ``tables/embeddings_nodes.parquet``) where those tables exist."""
    ct_path, emb_path = wd / "tables" / "celltypes.parquet", wd / "tables" / "embeddings_nodes.parquet"
    if ct_path.exists():
        t = pq.read_table(ct_path, columns=["cell_id", "celltype"])
        lut = dict(zip(t["cell_id"].to_pylist(), t["celltype"].to_pylist(), strict=True))
        for side in ("pre", "post"):
            vals = [lut.get(c) for c in syn[f"{side}_cell_id"].to_pylist()]
            syn = syn.set_column(syn.schema.get_field_index(f"{side}_celltype"), f"{side}_celltype",
                                 pa.array(vals, pa.string()))
    if emb_path.exists() and syn.num_rows:
        from scipy.spatial import cKDTree

        nodes = pq.read_table(emb_path).to_pandas()
        cols = [f"e{i}" for i in range(N_LATENT)]
        n = syn.num_rows
        xyz = np.stack([syn[f"{a}_nm"].to_numpy() for a in "xyz"], 1)
        at = np.concatenate([xyz, xyz])  # rows 0..n-1: the pre side, n..2n-1: the post side
        cid = np.concatenate([syn[f"{s}_cell_id"].to_numpy() for s in ("pre", "post")]).astype(np.uint64)
        order = np.argsort(cid, kind="stable")
        cid_sorted = cid[order]
        vec: list[list[float] | None] = [None] * (2 * n)
        for c, g in nodes.groupby("cell_id"):  # one tree per cell, queried for both sides at once
            c = np.uint64(c)
            rows = order[np.searchsorted(cid_sorted, c):np.searchsorted(cid_sorted, c, "right")]
            if not rows.size:
                continue
            _, nn = cKDTree(g[["x_nm", "y_nm", "z_nm"]].to_numpy()).query(at[rows])
            for i, v in zip(rows.tolist(), g[cols].to_numpy(np.float32)[np.atleast_1d(nn)], strict=True):
                vec[i] = v.tolist()
        for s, part in (("pre", vec[:n]), ("post", vec[n:])):
            syn = syn.set_column(syn.schema.get_field_index(f"{s}_embedding"), f"{s}_embedding",
                                 pa.array(part, pa.list_(pa.float32())))
    return syn


def conn_mat_partners(conn_mat: pa.Table, syn: pa.Table, classes: list[str]) -> pa.Table:
    """``conn_mat`` with ``celltype1/2`` as class codes (index in ``classes``; -1 unknown) and
    ``latentmorph{1,2}_k`` from the partner embeddings (NaN where none)."""
    codes = {c: i for i, c in enumerate(classes)}
    for side, k in (("pre", 1), ("post", 2)):
        vals = np.array([codes.get(t, -1) for t in syn[f"{side}_celltype"].to_pylist()], np.int64)
        conn_mat = conn_mat.set_column(conn_mat.schema.get_field_index(f"celltype{k}"), f"celltype{k}", pa.array(vals))
        emb = syn[f"{side}_embedding"].to_pylist()
        z = np.array([e if e is not None else [np.nan] * N_LATENT for e in emb], np.float64).reshape(-1, N_LATENT)
        for j in range(N_LATENT):
            name = f"latentmorph{k}_{j}"
            conn_mat = conn_mat.set_column(conn_mat.schema.get_field_index(name), name, pa.array(z[:, j]))
    return conn_mat


def celltype_matrix(syn: pa.Table) -> pa.Table:
    """One row per (pre type, post type): synapse counts and summed area (um^2) by sign
    (asymmetric = +1, symmetric = -1); cells without a type count as ``unknown``."""
    con = duckdb.connect()
    con.register("s", syn.select(["pre_celltype", "post_celltype", "sign", "area_um2"]))
    return con.sql("""
      select coalesce(pre_celltype, 'unknown') as pre_celltype, coalesce(post_celltype, 'unknown') as post_celltype,
        count(*)::bigint as n_synapses, sum(area_um2) as area_um2_sum,
        count(*) filter (where sign = 1)::bigint as n_asymmetric,
        coalesce(sum(area_um2) filter (where sign = 1), 0) as area_um2_asymmetric,
        count(*) filter (where sign = -1)::bigint as n_symmetric,
        coalesce(sum(area_um2) filter (where sign = -1), 0) as area_um2_symmetric
      from s group by all order by 1, 2""").to_arrow_table()
