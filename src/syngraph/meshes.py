"""Triangle meshes: welding, checks and the Neuroglancer precomputed legacy format.

Format written under ``<workdir>/meshes/<layer>/`` (Neuroglancer ``neuroglancer_legacy_mesh``)::

    info              {"@type": "neuroglancer_legacy_mesh"}
    <id>:0            JSON manifest {"fragments": ["<id>:0:1", ...]} ({"fragments": []} if no mesh)
    <id>:0:<k>        uint32 n_vertices, float32 xyz[n_vertices] in nm (global frame),
                      then uint32 triangle index triples to the end of the file

Init's objects have one fragment (``<id>:0:1``); cells have one per block they cross
(``<id>:0:<block id + 1>``), whose border vertices coincide exactly, so :func:`read_mesh` welds them
into one closed mesh (Neuroglancer draws the fragments side by side). An object's files are read
without touching the others. Files are written under a temporary name and renamed (the manifest
last), so a killed writer leaves no half mesh behind.
View with Neuroglancer as ``precomputed://<url of meshes/<layer>>``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

INFO = {"@type": "neuroglancer_legacy_mesh"}


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_info(mesh_dir: str | Path) -> None:
    mesh_dir = Path(mesh_dir)
    mesh_dir.mkdir(parents=True, exist_ok=True)
    _atomic_bytes(mesh_dir / "info", json.dumps(INFO).encode())


def encode_legacy(vertices_nm: np.ndarray, faces: np.ndarray) -> bytes:
    v = np.ascontiguousarray(vertices_nm, "<f4").reshape(-1, 3)
    f = np.ascontiguousarray(faces, "<u4").reshape(-1, 3)
    return np.uint32(len(v)).astype("<u4").tobytes() + v.tobytes() + f.tobytes()


def decode_legacy(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    n = int(np.frombuffer(data[:4], "<u4")[0])
    v = np.frombuffer(data[4 : 4 + 12 * n], "<f4").reshape(n, 3).astype(np.float32)
    f = np.frombuffer(data[4 + 12 * n :], "<u4").reshape(-1, 3).astype(np.uint32)
    return v, f


def write_fragment(mesh_dir: str | Path, name: str, vertices_nm: np.ndarray, faces: np.ndarray) -> None:
    """Write one fragment file (list it in the object's manifest with :func:`write_manifest`)."""
    _atomic_bytes(Path(mesh_dir) / name, encode_legacy(vertices_nm, faces))


def write_manifest(mesh_dir: str | Path, obj_id: int, fragments: list[str]) -> None:
    """Write an object's manifest ``<id>:0`` listing its fragment files (after the fragments)."""
    _atomic_bytes(Path(mesh_dir) / f"{int(obj_id)}:0", json.dumps({"fragments": list(fragments)}).encode())


def write_mesh(mesh_dir: str | Path, obj_id: int, vertices_nm: np.ndarray, faces: np.ndarray) -> None:
    """Write one object's mesh (fragment, then manifest) into a legacy precomputed directory."""
    frags = []
    if len(faces):
        frags.append(f"{int(obj_id)}:0:1")
        write_fragment(mesh_dir, frags[0], vertices_nm, faces)
    write_manifest(mesh_dir, obj_id, frags)


def read_mesh(mesh_dir: str | Path, obj_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (N, 3) float32 in nm and faces (M, 3) uint32 of one object: its fragments, welded
    where they share vertices (fragments made per block share their border vertices exactly)."""
    mesh_dir = Path(mesh_dir)
    manifest = mesh_dir / f"{int(obj_id)}:0"
    if not manifest.exists():
        raise FileNotFoundError(
            f"no mesh for id {int(obj_id)} in {mesh_dir} (no manifest {manifest.name}); "
            f"is the id in the layer's table, and was the layer meshed (config meshes.exclude)?"
        )
    vs, fs = [], []
    for name in json.loads(manifest.read_text())["fragments"]:
        v, f = decode_legacy((mesh_dir / name).read_bytes())
        vs.append(v)
        fs.append(f)
    if not vs:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint32)
    if len(vs) == 1:
        return vs[0], fs[0]
    return weld_fragments(vs, fs)


def weld_fragments(vertices: list[np.ndarray], faces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Join fragments (faces index their own fragment's vertices) by merging vertices of different
    fragments at the same position; vertices of one fragment stay as they are (marching cubes keeps
    two vertices at one position where two sheets touch, and merging them would make the mesh
    non-manifold). The k-th vertex of a fragment at a position merges with the k-th of each other
    fragment there. No face is dropped.

    >>> a = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    >>> b = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float32)
    >>> v, f = weld_fragments([a, b], [np.array([[0, 1, 2]]), np.array([[0, 2, 1]])]); len(v), f.tolist()
    (4, [[0, 1, 2], [1, 3, 2]])
    """
    v = np.concatenate(vertices)
    frag = np.repeat(np.arange(len(vertices)), [len(x) for x in vertices])
    _, pos = _unique_rows(np.ascontiguousarray(v, np.float32).view(np.int32).reshape(-1, 3))
    order = np.lexsort((np.arange(len(v)), frag, pos))
    same = np.r_[False, (pos[order][1:] == pos[order][:-1]) & (frag[order][1:] == frag[order][:-1])]
    run_start = np.maximum.accumulate(np.where(~same, np.arange(len(v)), 0))
    rank = np.empty(len(v), np.int64)
    rank[order] = np.arange(len(v)) - run_start  # k-th vertex of its fragment at its position
    key = pos.astype(np.int64) * (int(rank.max()) + 1) + rank
    _, first, new_id = np.unique(key, return_index=True, return_inverse=True)
    offsets = np.cumsum([0] + [len(x) for x in vertices[:-1]])
    f = np.concatenate([np.asarray(fc, np.int64) + o for fc, o in zip(faces, offsets, strict=True)])
    # number merged vertices in order of first appearance (fragment order)
    rename = np.empty(len(first), np.int64)
    rename[np.argsort(first, kind="stable")] = np.arange(len(first))
    ids = rename[new_id.reshape(-1)]
    return v[np.sort(first)], ids[f].astype(np.uint32)


def weld(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge identical vertices (exact equality: pass quantized integer positions), drop faces
    that became degenerate and duplicated faces (same vertex set; the first one is kept).

    >>> v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    >>> f = np.array([[0, 1, 2], [3, 5, 4], [2, 1, 0]])
    >>> vv, ff = weld(v, f); len(vv), ff.tolist()
    (4, [[0, 2, 1], [2, 3, 1]])
    """
    if len(faces) == 0:
        return np.zeros((0, 3), vertices.dtype), np.zeros((0, 3), np.uint32)
    uniq, inv = _unique_rows(vertices)
    f = inv[faces]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    f = f[ok]
    _, first = _unique_rows(np.sort(f, axis=1), return_index=True)
    f = f[np.sort(first)]
    used = np.flatnonzero(np.bincount(f.ravel(), minlength=len(uniq)))
    remap = np.full(len(uniq), -1, np.int64)
    remap[used] = np.arange(len(used))
    return uniq[used], remap[f].astype(np.uint32)


def _unique_rows(a: np.ndarray, return_index: bool = False):
    """Unique rows of an integer (n, 3) array, via one int64 key per row when it fits (fast)."""
    a = np.asarray(a)
    lo = a.min(0).astype(np.int64) if len(a) else np.zeros(3, np.int64)
    span = (a.max(0).astype(np.int64) - lo + 1) if len(a) else np.ones(3, np.int64)
    if a.dtype.kind in "iu" and float(span[0]) * float(span[1]) * float(span[2]) < 2**62:
        b = a.astype(np.int64) - lo
        key = (b[:, 0] * span[1] + b[:, 1]) * span[2] + b[:, 2]
        order = np.argsort(key, kind="stable")
        sk = key[order]
        new = np.ones(len(a), bool)
        new[1:] = sk[1:] != sk[:-1]
    else:  # lexsort on the columns: much faster than np.unique(axis=0)
        order = np.lexsort((a[:, 2], a[:, 1], a[:, 0]))
        s = a[order]
        new = np.ones(len(a), bool)
        new[1:] = (s[1:] != s[:-1]).any(1)
    idx = order[new]
    inv = np.empty(len(a), np.int64)
    inv[order] = np.cumsum(new) - 1
    inv = inv.reshape(-1)
    if return_index:
        return a[idx], idx
    return a[idx], inv


def edge_counts(faces: np.ndarray) -> np.ndarray:
    """How many faces share each undirected edge."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)
    e.sort(axis=1)
    key = np.sort(e[:, 0] * (int(e.max()) + 1) + e[:, 1])
    new = np.ones(len(key), bool)
    new[1:] = key[1:] != key[:-1]
    return np.diff(np.append(np.flatnonzero(new), len(key)))


def is_closed(faces: np.ndarray) -> bool:
    """True if every edge is shared by exactly two faces (watertight) and there is a face."""
    return len(faces) > 0 and bool((edge_counts(faces) == 2).all())


def area(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Surface area (units of the vertices, squared)."""
    if len(faces) == 0:
        return 0.0
    v = vertices.astype(np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())


def volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Enclosed volume of a closed, consistently oriented mesh (divergence theorem; signed)."""
    if len(faces) == 0:
        return 0.0
    v = np.asarray(vertices, np.float64)
    x, y, z = v[:, 0].copy(), v[:, 1].copy(), v[:, 2].copy()  # per-axis gathers: half np.cross's time
    f0, f1, f2 = (faces[:, k].copy() for k in range(3))
    bx, by, bz, cx, cy, cz = x[f1], y[f1], z[f1], x[f2], y[f2], z[f2]
    t = x[f0] * (by * cz - bz * cy)  # a . (b x c), summed in np.cross's and einsum's order
    t += y[f0] * (bz * cx - bx * cz)
    t += z[f0] * (bx * cy - by * cx)
    return float(t.sum() / 6.0)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals per vertex: the area-weighted sum of its faces' normals (orientation kept)."""
    v = vertices.astype(np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    fn = np.cross(b - a, c - a)
    idx = faces.ravel().astype(np.int64)
    n = np.stack([np.bincount(idx, np.repeat(fn[:, k], 3), minlength=len(v)) for k in range(3)], 1)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def volume_polynomial(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Coefficients ``c[0..3]`` of ``V(t) = sum c_k t^k``: the signed volume (as :func:`volume`) of the
    mesh with every vertex moved to ``v - t * normal``. Sums over faces, so the polynomial of a
    closed mesh cut into pieces is the sum of its pieces' polynomials.

    >>> v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    >>> f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    >>> c = volume_polynomial(v, f, -v); float(np.polyval(c[::-1], 1.0)), volume(2 * v, f)
    (1.3333333333333333, 1.3333333333333333)
    """
    v = np.asarray(vertices, np.float64)
    n = np.asarray(normals, np.float64)
    a, b, c = (v[faces[:, k]] for k in range(3))
    na, nb, nc = (-n[faces[:, k]] for k in range(3))  # v - t n = v + t (-n)

    def triple(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
        return float(np.einsum("ij,ij->", x, np.cross(y, z)))

    return np.array([
        triple(a, b, c),
        triple(na, b, c) + triple(a, nb, c) + triple(a, b, nc),
        triple(na, nb, c) + triple(na, b, nc) + triple(a, nb, nc),
        triple(na, nb, nc),
    ]) / 6.0


def shrink_distance(poly: np.ndarray, area_: float, target: float, max_offset: float, steps: int = 5) -> float:
    """The ``t`` to move vertices by (``v - t * normal``, unit normals as :func:`vertex_normals`) so
    the volume approaches ``target``: one inward distance ``d`` in ``[0, max_offset]`` found by chord
    steps on ``V(d)`` with the fixed slope ``-area`` (``poly``: :func:`volume_polynomial`). Inward is
    ``t = d`` for an outward-oriented mesh, ``-d`` otherwise; 0 for a mesh at or below ``target``."""
    sign = 1.0 if poly[0] >= 0 else -1.0  # outward normals for either orientation
    slope = max(area_, 1e-12)  # dV/dd at d = 0 (chord method: kept fixed)
    d, excess = 0.0, sign * poly[0] - target
    for _ in range(steps):
        if abs(excess) <= 1e-4 * target:
            break
        d_new = float(np.clip(d + excess / slope, 0.0, max_offset))
        if d_new == d:
            break
        d = d_new
        excess = sign * float(np.polyval(poly[::-1], sign * d)) - target
    return sign * d


def shrink_to_volume(vertices: np.ndarray, faces: np.ndarray, target: float, max_offset: float,
                     steps: int = 5) -> np.ndarray:
    """Move every vertex inward along its normal by one distance ``d`` in ``[0, max_offset]`` so the
    enclosed volume approaches ``target`` (:func:`shrink_distance`). Undoes the outward bias of a
    surface on max-pooled voxels; a mesh already at or below ``target`` is returned unchanged.
    Connectivity is untouched, so a closed mesh stays closed."""
    if len(faces) == 0:
        return vertices
    v = vertices.astype(np.float64)
    n = vertex_normals(v, faces)
    t = shrink_distance(volume_polynomial(v, faces, n), area(v, faces), target, max_offset, steps)
    return (v - t * n).astype(vertices.dtype)
