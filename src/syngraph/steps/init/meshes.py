"""Welded object meshes from blockwise marching cubes.

Each block meshes its (downsampled) labels read with one extra downsampled voxel on its upper faces,
with zmesh's ``close=False``, so the marching-cubes cells of neighbouring blocks tile the volume
without overlap and pieces of one object share exact vertex positions on block faces. Vertices are
kept as integers in half-voxel units of the downsampled grid (marching cubes on labels puts them on
voxel-edge midpoints), so :func:`assemble` welds the pieces by exact equality. The volume border is
closed by padding one background voxel there. Simplification (optional) runs on each piece before
welding (see :func:`assemble`).

Coordinates: downsampled voxel ``j`` covers full-resolution voxels ``[j*ds, (j+1)*ds)``, i.e.
``[j, j+1) * ds * voxel_size`` nm, so a half-unit vertex ``q`` lies at ``(q / 2 + 0.5) * ds * voxel_size`` nm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zmesh

from syngraph.meshes import area, is_closed, weld


def downsample(labels: np.ndarray, ds: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour downsampling by striding (voxel ``j`` takes full-res voxel ``j * ds``)."""
    return labels[:: ds[0], :: ds[1], :: ds[2]]


def block_pieces(
    crop_ds: np.ndarray,
    origin_ds: Sequence[int],
    pad_lo: Sequence[bool],
    pad_hi: Sequence[bool],
) -> dict[str, np.ndarray]:
    """Marching-cubes pieces of every id in one block's downsampled crop.

    ``crop_ds`` starts at global downsampled voxel ``origin_ds``; ``pad_lo``/``pad_hi`` say which
    sides lie on the volume border (closed with one background voxel). Returns arrays ``ids``,
    ``n_vertices``, ``n_faces``, ``vertices`` (int32, global half-voxel units, concatenated) and
    ``faces`` (uint32, indices local to each piece, concatenated).
    """
    pad = [(int(lo), int(hi)) for lo, hi in zip(pad_lo, pad_hi, strict=True)]
    data = np.pad(crop_ds, pad) if any(p != (0, 0) for p in pad) else crop_ds
    origin = np.asarray(origin_ds, np.float64) - [p[0] for p in pad]
    mesher = zmesh.Mesher((1, 1, 1))
    mesher.mesh(np.asfortranarray(data), close=False)
    ids, nv, nf, vs, fs = [], [], [], [], []
    for obj in sorted(int(i) for i in mesher.ids()):
        m = mesher.get(obj, normals=False, reduction_factor=0)
        mesher.erase(obj)
        if len(m.faces) == 0:
            continue
        q = np.rint(2.0 * (m.vertices.astype(np.float64) + origin)).astype(np.int32)
        ids.append(obj)
        nv.append(len(q))
        nf.append(len(m.faces))
        vs.append(q)
        fs.append(m.faces.astype(np.uint32))
    mesher.clear()
    return {
        "ids": np.asarray(ids, np.uint64),
        "n_vertices": np.asarray(nv, np.int64),
        "n_faces": np.asarray(nf, np.int64),
        "vertices": np.concatenate(vs) if vs else np.zeros((0, 3), np.int32),
        "faces": np.concatenate(fs) if fs else np.zeros((0, 3), np.uint32),
    }


def piece_of(pieces: dict[str, np.ndarray], obj_id: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The (vertices, faces) piece of ``obj_id`` in a :func:`block_pieces` result, or None."""
    return pieces_of(pieces, [obj_id]).get(int(obj_id))


def pieces_of(pieces: dict[str, np.ndarray], obj_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Copies of the (vertices, faces) pieces of ``obj_ids`` in a :func:`block_pieces` result (ids
    without a piece are left out), so the block's arrays can be freed while the pieces are kept."""
    ids = pieces["ids"]
    v0 = np.concatenate([[0], np.cumsum(pieces["n_vertices"])])
    f0 = np.concatenate([[0], np.cumsum(pieces["n_faces"])])
    out = {}
    for obj in obj_ids:
        i = int(np.searchsorted(ids, np.uint64(obj)))
        if i < len(ids) and ids[i] == obj:
            out[int(obj)] = (pieces["vertices"][v0[i] : v0[i + 1]].copy(), pieces["faces"][f0[i] : f0[i + 1]].copy())
    return out


def _weld_pieces(pieces: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    vs, fs, n = [], [], 0
    for v, f in pieces:
        vs.append(v)
        fs.append(f.astype(np.int64) + n)
        n += len(v)
    return weld(np.concatenate(vs), np.concatenate(fs))


def to_nm(q: np.ndarray, res_nm: Sequence[float]) -> np.ndarray:
    """Half-voxel vertex units of a grid with voxels of ``res_nm`` to nm (float32; voxel faces at
    multiples of ``res_nm``)."""
    return ((q.astype(np.float64) / 2.0 + 0.5) * np.asarray(res_nm, np.float64)).astype(np.float32)


def _simplify(verts: np.ndarray, faces: np.ndarray, res_nm: Sequence[float], reduction_factor: int,
              max_error_nm: float) -> tuple[np.ndarray, np.ndarray]:
    if len(faces) <= 4:
        return verts, faces
    m = zmesh.Mesher(tuple(float(r) for r in res_nm)).simplify(
        zmesh.Mesh(verts, faces, None), reduction_factor=reduction_factor, max_error=max_error_nm
    )
    return m.vertices.astype(np.float32), m.faces.astype(np.uint32)


def assemble(
    pieces: Sequence[tuple[np.ndarray, np.ndarray]],
    res_nm: Sequence[float],
    *,
    simplify: bool = True,
    reduction_factor: int = 50,
    max_error_nm: float = 40.0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Weld an object's block pieces; optionally simplify. Returns (vertices_nm float32, faces
    uint32, area in um^2). ``res_nm`` is the downsampled voxel size (ds * voxel size).

    Simplification runs on each block piece before welding, so it costs the memory of one piece,
    not of the whole object's full-resolution surface: zmesh's simplifier keeps a piece's open
    border (its vertices and edges), so the pieces still weld by exact position. Should the welded
    result not be closed, the object falls back to simplifying its welded whole mesh.
    """
    if not pieces:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint32), 0.0
    if simplify:
        simple = [_simplify(to_nm(q, res_nm), f, res_nm, reduction_factor, max_error_nm) for q, f in pieces]
        verts, faces = _weld_pieces(simple)
        if is_closed(faces):
            return verts, faces, area(verts, faces) / 1e6
    q, faces = _weld_pieces(pieces)
    verts = to_nm(q, res_nm)
    if simplify:
        verts, faces = _simplify(verts, faces, res_nm, reduction_factor, max_error_nm)
    return verts, faces, area(verts, faces) / 1e6
