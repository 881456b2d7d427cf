"""The node encoder: a node's skeleton context in, a 10-dimensional unit vector out (``latent_morph``).

A small MLP (features -> 64 -> 64 -> 10, ReLU, L2-normalised output) trained WITHOUT labels with a
contrastive loss (NT-Xent, as SimCLR; the reference trains its tCMN with a triplet loss): two
augmented views of a node's context (the node and a node within :data:`POSITIVE_NM` of it on the
same cell, each with feature noise and dropped features) are pulled together, every other node
of the batch pushed away. Training needs PyTorch (``pip install 'syngraph[embed]'``); inference
is three matrix products in numpy, so ``syngraph run embeddings`` needs only the weights.

Weights are a safetensors file (never pickles): ``<variant>.w0 .. w2``, ``.b0 .. b2``, ``.mean``,
``.std`` (input standardisation) and ``.domain`` (the training features at
:data:`syngraph.models.domain.QUANTILE_LEVELS`, the domain check every learned model shares); the
feature names and the training record are in the file's metadata.

The file also carries a **reference bank** per variant: the cell vectors of the labelled cells it
was trained with (``<variant>.bank_z``, (n, 10)) and their types (``<variant>.bank_type``, indices
into the metadata's ``bank_classes``). A new cell is typed by its nearest bank cells
(:func:`bank_vote`), the way a lab queries a labelled reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from syngraph.models.domain import Domain

DIM = 10
HIDDEN = 64
POSITIVE_NM = 1000.0
DEFAULT_MODEL_PATH = Path(__file__).parent / "data" / "embeddings_default.safetensors"
INSTALL = "pip install 'syngraph[embed]' (torch==2.13.0 and safetensors)"


@dataclass(frozen=True)
class Encoder:
    feature_names: tuple[str, ...]
    weights: tuple[np.ndarray, ...]  # w0, w1, w2 (in, out)
    biases: tuple[np.ndarray, ...]
    mean: np.ndarray
    std: np.ndarray
    domain: Domain | None = None  # the training inputs' distribution
    bank_z: np.ndarray | None = None  # (n, DIM) cell vectors of the labelled reference cells
    bank_type: tuple[str, ...] = ()  # their types
    cell: Encoder | None = None  # the cell encoder: cell descriptors + pooled node vector in

    def embed(self, features: np.ndarray) -> np.ndarray:
        """(n, DIM) unit vectors of (n, len(feature_names)) features (NaN counts as the mean)."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"node encoder expects (n, {len(self.feature_names)}) features, got {x.shape}")
        h = np.nan_to_num((x - self.mean) / self.std)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0)
        return h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}.mean": self.mean, f"{prefix}.std": self.std}
        if self.domain is not None:
            out[f"{prefix}.domain"] = self.domain.quantiles
        if self.bank_z is not None:
            out[f"{prefix}.bank_z"] = self.bank_z
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"{prefix}.w{i}"], out[f"{prefix}.b{i}"] = w, b
        if self.cell is not None:
            out |= self.cell.arrays(f"{prefix}.cell")
        return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def _safetensors():
    try:
        import safetensors.numpy as st
    except ImportError:
        raise ImportError(f"the embeddings step reads safetensors weights: {INSTALL}") from None
    return st


def save_encoders(path: str | Path, encoders: dict[str, Encoder], info: dict[str, str]) -> Path:
    st = _safetensors()
    arrays: dict[str, np.ndarray] = {}
    classes = sorted({t for e in encoders.values() for t in e.bank_type})
    for v, e in encoders.items():
        arrays |= e.arrays(v)
        if e.bank_z is not None:
            arrays[f"{v}.bank_type"] = np.array([classes.index(t) for t in e.bank_type], np.int32)
    meta = {"bank_classes": json.dumps(classes), "features": json.dumps({v: list(e.feature_names) for v, e in encoders.items()}),
            "cell_features": json.dumps({v: list(e.cell.feature_names) for v, e in encoders.items() if e.cell}),
            "domain_n_train": json.dumps({v: e.domain.n_train for v, e in encoders.items() if e.domain}), **info}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    st.save_file(arrays, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_encoders(path: str | Path | None = None) -> tuple[dict[str, Encoder], dict[str, str]]:
    """Variant -> encoder and the training record, from ``path`` or the shipped default."""
    from safetensors import safe_open

    _safetensors()
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    if not path.exists():
        raise FileNotFoundError(f"node encoder {path} does not exist; train one with `syngraph train embeddings`")
    with safe_open(str(path), framework="numpy") as f:
        meta = dict(f.metadata() or {})
        arr = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    out = {}
    n_train = json.loads(meta.pop("domain_n_train", "{}"))
    classes = json.loads(meta.pop("bank_classes", "[]"))
    cell_names = json.loads(meta.pop("cell_features", "{}"))
    arr = {k: a if k.endswith(".bank_type") else a.astype(np.float64) for k, a in arr.items()}

    def mlp(p: str, names: list[str]) -> tuple:
        n = sum(1 for k in arr if k.startswith(f"{p}.w"))
        return (tuple(names), tuple(arr[f"{p}.w{i}"] for i in range(n)), tuple(arr[f"{p}.b{i}"] for i in range(n)),
                arr[f"{p}.mean"], arr[f"{p}.std"])

    for v, names in json.loads(meta.pop("features")).items():
        domain = Domain(tuple(names), arr[f"{v}.domain"], int(n_train.get(v, 0))) if f"{v}.domain" in arr else None
        bank = f"{v}.bank_z" in arr
        out[v] = Encoder(*mlp(v, names), domain, arr[f"{v}.bank_z"] if bank else None,
                         tuple(classes[int(i)] for i in arr[f"{v}.bank_type"]) if bank else (),
                         Encoder(*mlp(f"{v}.cell", cell_names[v])) if v in cell_names else None)
    return out, meta


def knn_vote(train_z: np.ndarray, train_y: np.ndarray, query_z: np.ndarray, k: int = 5,
             exclude_self: bool = False) -> np.ndarray:
    """Majority label of the k nearest (cosine) training rows of each query row, ties to the
    first label in sorted order; ``exclude_self`` drops each query's nearest row (itself)."""
    from scipy.spatial import cKDTree

    kk = min(k + int(exclude_self), len(train_z))
    _, nb = cKDTree(train_z).query(query_z, k=kk)  # unit vectors: Euclidean order = cosine order
    nb = np.asarray(nb).reshape(len(query_z), kk)[:, int(exclude_self):]
    labels = train_y[nb]
    out = np.empty(len(query_z), train_y.dtype)
    for i, row in enumerate(labels):
        vals, counts = np.unique(row, return_counts=True)
        out[i] = vals[np.argmax(counts)]
    return out


def bank_vote(bank_z: np.ndarray, bank_type: np.ndarray, z: np.ndarray, y: np.ndarray, k: int = 5) -> np.ndarray:
    """Each row of ``z`` voted by its k nearest among the reference bank and the OTHER rows of
    ``z`` (labelled ``y``): a labelled reference plus the volume's own labelled cells."""
    ref_z = np.concatenate([np.asarray(z, np.float64), np.asarray(bank_z, np.float64).reshape(-1, z.shape[1])])
    ref_y = np.concatenate([np.asarray(y).astype(str), np.asarray(bank_type).astype(str)])
    return knn_vote(ref_z, ref_y, z, k, exclude_self=True)


def _augment(torch, x, noise: float, drop: float):
    keep = (torch.rand_like(x) > drop).to(x.dtype)
    return (x + noise * torch.randn_like(x)) * keep


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError(f"training the encoders needs PyTorch: {INSTALL}") from None
    return torch


def _fit_nt_xent(x: np.ndarray, names: tuple[str, ...], draw, *, steps: int, batch: int, noise: float,
                 temperature: float = 0.2, seed: int = 0) -> tuple[Encoder, list[float]]:
    """An MLP (features -> 64 -> 64 -> DIM) on the rows of ``x`` trained with NT-Xent: each step
    ``draw(generator, batch)`` gives the row indices of ``batch`` anchors and of their positive
    views (two views of one thing; the batch's other rows are the negatives); both views get
    Gaussian noise (``noise`` sd) and 10 % dropped features. One CPU thread."""
    torch = _torch()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x = np.asarray(x, np.float64)
    mean = np.nanmean(x, 0)
    std = np.nanstd(x, 0) + 1e-6
    xs = torch.tensor(np.nan_to_num((x - mean) / std), dtype=torch.float32)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], HIDDEN), torch.nn.ReLU(),
                              torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, DIM))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-5)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(steps):
        ia, ib = draw(gen, batch)
        a = torch.nn.functional.normalize(net(_augment(torch, xs[ia], noise, 0.1)), dim=1)
        b = torch.nn.functional.normalize(net(_augment(torch, xs[ib], noise, 0.1)), dim=1)
        z = torch.cat([a, b])
        sim = z @ z.T / temperature
        sim.fill_diagonal_(-1e9)
        n = len(ia)
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        loss = torch.nn.functional.cross_entropy(sim, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            losses.append(float(loss.detach()))
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    return Encoder(names, tuple(m.weight.detach().numpy().T.astype(np.float64) for m in layers),
                   tuple(m.bias.detach().numpy().astype(np.float64) for m in layers), mean, std), losses


def fit_encoder(x: np.ndarray, positive: np.ndarray, names: tuple[str, ...], *, steps: int = 1500,
                batch: int = 256, temperature: float = 0.2, seed: int = 0) -> tuple[Encoder, list[float]]:
    """The node encoder, trained on node features ``x`` (n, f) with ``positive[i]`` a node near
    node i on the same cell (itself if none); returns the encoder (with the domain of ``x``) and
    the loss every 100 steps."""
    torch = _torch()
    pos = torch.tensor(np.asarray(positive, np.int64))

    def draw(gen, n):
        idx = torch.randint(0, len(pos), (n,), generator=gen)
        return idx, pos[idx]

    enc, losses = _fit_nt_xent(x, names, draw, steps=steps, batch=batch, noise=0.1,
                               temperature=temperature, seed=seed)
    return replace(enc, domain=Domain.fit(x, names)), losses


def fit_cell_encoder(views: np.ndarray, names: tuple[str, ...], *, steps: int = 300, batch: int = 128,
                     temperature: float = 0.2, seed: int = 0) -> tuple[Encoder, list[float]]:
    """The cell encoder, trained on ``views`` (cells, pieces, f): the descriptors of random pieces
    of each cell; the two views of a cell are two of its pieces, the batch's cells all differ."""
    torch = _torch()
    n_cells, n_views, f = views.shape
    if n_views < 2:
        raise ValueError("the cell encoder needs >= 2 pieces per cell")

    def draw(gen, n):
        cells = torch.randperm(n_cells, generator=gen)[:n]
        va = torch.randint(0, n_views, (len(cells),), generator=gen)
        vb = (va + torch.randint(1, n_views, (len(cells),), generator=gen)) % n_views
        return cells * n_views + va, cells * n_views + vb

    return _fit_nt_xent(views.reshape(-1, f), names, draw, steps=steps, batch=min(batch, n_cells), noise=0.05,
                        temperature=temperature, seed=seed)
