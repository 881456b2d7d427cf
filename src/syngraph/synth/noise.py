"""Noise that depends only on global voxel coordinates (so every block agrees at its seams).

``white`` hashes each voxel's global (x, y, z) with the seed (splitmix64 finaliser) and gives up
to four independent uniform fields from one 64-bit hash. ``smooth`` is value noise: random values
on a coarse global lattice, interpolated with smoothstep weights. Both are pure elementwise numpy,
so a voxel's value is the same bytes whatever block it is computed in.

>>> a = white(7, 1, (0, 0, 0), (4, 3, 2))[0]
>>> b = white(7, 1, (2, 1, 1), (2, 2, 1))[0]
>>> bool((a[2:4, 1:3, 1:2] == b).all())
True
"""

from __future__ import annotations

import numpy as np

_P = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    h ^= h >> np.uint64(30)
    h *= _C1
    h ^= h >> np.uint64(27)
    h *= _C2
    h ^= h >> np.uint64(31)
    return h


def _hash3(seed: int, stream: int, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
    """64-bit hash of every (x, y, z) of the outer grid ``xs`` x ``ys`` x ``zs`` (int arrays)."""
    base = _mix(np.array([(seed & 0xFFFFFFFF) * 0x100000001 + stream * 0x9E37], np.uint64))[0]
    with np.errstate(over="ignore"):
        hx = _mix(xs.astype(np.uint64) * _P[0] + base)
        hy = _mix(ys.astype(np.uint64) * _P[1] + base)
        hz = _mix(zs.astype(np.uint64) * _P[2] + base)
        h = hx[:, None, None] ^ (hy[None, :, None] + hz[None, None, :] * np.uint64(3))
        return _mix(h)


def white(seed: int, stream: int, start, shape) -> list[np.ndarray]:
    """Four independent uniform [0, 1) float32 fields over the box ``start`` + ``shape`` (XYZ)."""
    xs, ys, zs = (np.arange(s, s + n, dtype=np.int64) for s, n in zip(start, shape, strict=True))
    h = _hash3(seed, stream, xs, ys, zs)
    out = []
    scale = np.float32(1.0 / 65536.0)
    for k in range(4):
        out.append(((h >> np.uint64(16 * k)) & np.uint64(0xFFFF)).astype(np.float32) * scale)
    return out


def smooth(seed: int, stream: int, start, shape, spacing_vx) -> np.ndarray:
    """Value noise in [-1, 1] (float32) with lattice spacing ``spacing_vx`` (XYZ voxels)."""
    axes = []
    for s, n, sp in zip(start, shape, spacing_vx, strict=True):
        g = np.arange(s, s + n, dtype=np.float64) / sp
        i0 = np.floor(g).astype(np.int64)
        f = (g - i0).astype(np.float32)
        f = f * f * (3 - 2 * f)
        axes.append((i0, f))
    lo = [int(a[0].min()) for a in axes]
    hi = [int(a[0].max()) + 2 for a in axes]
    lattice = _hash3(seed, stream + 1000, *(np.arange(a, b) for a, b in zip(lo, hi, strict=True)))
    vals = ((lattice >> np.uint64(40)).astype(np.float32) / np.float32(2**23)) - np.float32(1.0)
    out = vals
    for ax, ((i0, f), l0) in enumerate(zip(axes, lo, strict=True)):
        idx = i0 - l0
        a = np.take(out, idx, axis=ax)
        b = np.take(out, idx + 1, axis=ax)
        shape_f = [1, 1, 1]
        shape_f[ax] = len(f)
        ff = f.reshape(shape_f)
        out = a + (b - a) * ff
    return out.astype(np.float32, copy=False)
