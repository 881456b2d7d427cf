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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"{prefix}.w{i}"], out[f"{prefix}.b{i}"] = w, b
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
    for v, e in encoders.items():
        arrays |= e.arrays(v)
    meta = {"features": json.dumps({v: list(e.feature_names) for v, e in encoders.items()}),
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
        arr = {k: f.get_tensor(k).astype(np.float64) for k in f.keys()}  # noqa: SIM118
    out = {}
    n_train = json.loads(meta.pop("domain_n_train", "{}"))
    for v, names in json.loads(meta.pop("features")).items():
        n = sum(1 for k in arr if k.startswith(f"{v}.w"))
        domain = Domain(tuple(names), arr[f"{v}.domain"], int(n_train.get(v, 0))) if f"{v}.domain" in arr else None
        out[v] = Encoder(tuple(names), tuple(arr[f"{v}.w{i}"] for i in range(n)),
                         tuple(arr[f"{v}.b{i}"] for i in range(n)), arr[f"{v}.mean"], arr[f"{v}.std"], domain)
    return out, meta


def _augment(torch, x, noise: float, drop: float):
    keep = (torch.rand_like(x) > drop).to(x.dtype)
    return (x + noise * torch.randn_like(x)) * keep


def fit_encoder(x: np.ndarray, positive: np.ndarray, names: tuple[str, ...], *, steps: int = 1500,
                batch: int = 256, temperature: float = 0.2, seed: int = 0) -> tuple[Encoder, list[float]]:
    """Train on node features ``x`` (n, f) with ``positive[i]`` a node near node i on the same
    cell (itself if none); returns the encoder (with the domain of ``x``) and the loss every 100
    steps. One CPU thread."""
    try:
        import torch
    except ImportError:
        raise ImportError(f"training the node encoder needs PyTorch: {INSTALL}") from None
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x = np.asarray(x, np.float64)
    mean = np.nanmean(x, 0)
    std = np.nanstd(x, 0) + 1e-6
    xs = torch.tensor(np.nan_to_num((x - mean) / std), dtype=torch.float32)
    pos = torch.tensor(np.asarray(positive, np.int64))
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], HIDDEN), torch.nn.ReLU(),
                              torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, DIM))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-5)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(steps):
        idx = torch.randint(0, len(xs), (batch,), generator=gen)
        a = torch.nn.functional.normalize(net(_augment(torch, xs[idx], 0.1, 0.1)), dim=1)
        b = torch.nn.functional.normalize(net(_augment(torch, xs[pos[idx]], 0.1, 0.1)), dim=1)
        z = torch.cat([a, b])
        sim = z @ z.T / temperature
        sim.fill_diagonal_(-1e9)
        target = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)])
        loss = torch.nn.functional.cross_entropy(sim, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            losses.append(float(loss.detach()))
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    return Encoder(names, tuple(m.weight.detach().numpy().T.astype(np.float64) for m in layers),
                   tuple(m.bias.detach().numpy().astype(np.float64) for m in layers), mean, std,
                   Domain.fit(x, names)), losses
