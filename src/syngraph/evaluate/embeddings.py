"""Scoring the embeddings against the demo tissue's ground truth, by nearest neighbours.

* ``cell_knn_type_accuracy``: over the cells the celltypes step typed (cable >=
  ``celltypes.min_cable_um``) with a true type (:func:`syngraph.evaluate.celltypes.true_celltypes`),
  each cell voted (5-NN, cosine) by the encoder file's reference bank (the labelled cells it was
  trained with) plus the volume's other scored cells; ``n_bank_cells`` the bank's size (no
  score without a bank);
* ``cell_knn_type_accuracy_within_volume``: the same vote among the volume's cells alone
  (leave-one-out); ``cell_knn_type_ceiling`` an upper bound on that accuracy: the fraction of
  cells that some choice of 5 neighbours votes right under the vote's own rule (plurality, ties to
  the first type in sorted order); a type with one cell in a volume is always outvoted.
* ``node_knn_compartment_accuracy``: neuron nodes with a true compartment (``gt_compartments``,
  coarse: soma / dendrite = shaft, neck, head / axon = axon, boutons); cells split in two halves
  by id, each half's nodes voted by their 5 nearest nodes of the other half (at most
  ``MAX_NODES`` nodes, a fixed random subset); ``node_knn_fine_accuracy`` the same with the
  seven compartments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from syngraph import compartments as cp
from syngraph.models.embeddings import bank_vote, knn_vote

K = 5
MAX_NODES = 20000
COARSE = {cp.SOMA: 1, cp.SHAFT: 2, cp.SPINE_NECK: 2, cp.SPINE_HEAD: 2, cp.AXON: 3, cp.BOUTON: 3,
          cp.TERMINAL_BOUTON: 3}


def knn_ceiling(y: np.ndarray, k: int = K) -> float:
    """Upper bound on the leave-one-out :func:`knn_vote` accuracy of any embedding: the fraction of
    cells that some choice of their k neighbours votes right (plurality, ties to the first label in
    sorted order). A cell's best case takes all the same-label neighbours it can, then fills up with
    other labels kept below its count (at its count for labels sorting after it)."""
    types, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    kk = min(k, len(y) - 1)
    win = np.zeros(len(types), bool)
    for i, c in enumerate(counts):
        s = min(c - 1, kk)
        if s == 0:
            continue
        other = np.arange(len(types)) != i
        cap = np.minimum(counts[other], np.where(np.flatnonzero(other) > i, s, s - 1))
        win[i] = s + cap.sum() >= kk
    return float(np.mean(win[inv]))


def _bank(wd: Path, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """The reference bank of the encoder ``variant`` of the project's model (empty without one)."""
    from syngraph.config import load_config, project_path
    from syngraph.models.embeddings import DIM, load_encoders
    from syngraph.models.files import load_model_file

    model = load_config(wd).embeddings.model
    encoders, _ = load_model_file(load_encoders, project_path(wd, model) if model else None, "embeddings.model")
    enc = encoders.get(variant)
    if enc is None or enc.bank_z is None:
        return np.zeros((0, DIM)), np.zeros(0, str)
    return enc.bank_z, np.asarray(enc.bank_type, str)


def score_embeddings(workdir: str | Path) -> dict[str, float | int]:
    from syngraph.evaluate.celltypes import true_celltypes
    from syngraph.evaluate.compartments import demo_node_truth
    from syngraph.models.embeddings import DIM

    wd = Path(workdir)
    cols = [f"e{i}" for i in range(DIM)]
    out: dict[str, float | int] = {}
    ct_path = wd / "tables" / "celltypes.parquet"
    table = pq.read_table(wd / "tables" / "embeddings_cells.parquet")
    variant = (table.schema.metadata or {}).get(b"syngraph:model_variant", b"shape").decode()
    cells = table.to_pandas().set_index("cell_id")
    if ct_path.exists():
        typed = pq.read_table(ct_path, columns=["cell_id", "typed"]).to_pandas().set_index("cell_id")["typed"]
        cells = cells[typed.reindex(cells.index).fillna(False).to_numpy(bool)]
    truth = true_celltypes(wd).reindex(cells.index)
    cells = cells[truth.notna().to_numpy()]
    y = truth.dropna().to_numpy().astype(str)
    out["n_cells"] = len(cells)
    z = cells[cols].to_numpy(np.float64)
    bank_z, bank_y = _bank(wd, variant)
    out["n_bank_cells"] = len(bank_y)
    if len(cells) and len(bank_y):  # no bank (an older or unlabelled file): no score
        out["cell_knn_type_accuracy"] = float(np.mean(bank_vote(bank_z, bank_y, z, y) == y))
    if len(cells) > K:
        out["cell_knn_type_accuracy_within_volume"] = float(np.mean(knn_vote(z, y, z, exclude_self=True) == y))
        out["cell_knn_type_ceiling"] = knn_ceiling(y)
    nodes = pq.read_table(wd / "tables" / "embeddings_nodes.parquet").to_pandas()
    rng = np.random.default_rng(0)
    if len(nodes) > MAX_NODES:
        nodes = nodes.iloc[np.sort(rng.choice(len(nodes), MAX_NODES, replace=False))]
    true = demo_node_truth(wd, nodes[["x_nm", "y_nm", "z_nm"]].to_numpy(np.float64))
    keep = np.isin(true, list(COARSE))
    nodes, true = nodes[keep], true[keep]
    out["n_nodes"] = len(nodes)
    half = nodes["cell_id"].to_numpy().astype(np.int64) % 2 == 0
    if half.sum() > K and (~half).sum() > K:
        z = nodes[cols].to_numpy()
        for name, y_ in (("node_knn_compartment_accuracy", np.vectorize(COARSE.get)(true)),
                         ("node_knn_fine_accuracy", true)):
            pred = np.empty_like(y_)
            pred[half] = knn_vote(z[~half], y_[~half], z[half])
            pred[~half] = knn_vote(z[half], y_[half], z[~half])
            out[name] = float(np.mean(pred == y_))
    return out
