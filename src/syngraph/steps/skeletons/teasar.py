"""TEASAR skeletons of one block with kimimaro, border-aware so that blocks join exactly.

The block function sees only numpy: a label array at skeleton resolution (cell ids, already
downsampled) that covers the block's *trace region* plus a halo. The halo is used only for the
distance-to-boundary field (so radii and path centring near a block face are what a whole-volume
run would see); tracing happens inside the trace region, which overlaps the next block's trace
region by exactly one voxel plane. As kimimaro's ``fix_borders``, every cross-section on every
face of the trace region gets a border target at the maximum of its 2-D distance transform
(:func:`face_targets`: taken over the read region's whole plane, so a section clipped by a block
edge keeps its target near the axis); the shared plane is identical in both blocks, so both
place the same vertex there and the pieces join where their vertices coincide (:mod:`.join`).
Targets where the axis crosses a face are traced before the TEASAR paths (the path runs
through them); targets on a face that runs along a neurite are traced after them, as short
spurs off the axis (:func:`_crosses`). On the volume border there is no block to agree with:
targets are only where a neurite's axis leaves the volume (:func:`exit_targets`), not where a
neurite grazes the border or a bouton or soma bulges out of it, which the true tree does not
end at either; they are traced first, one of them being the root. Path vertices off the faces
then move onto the medial axis (:mod:`.recentre`). Vertices within a voxel of the volume
border that lie on the ridge of a sliver (a neurite whose axis lies outside the volume) are
flagged (:func:`face_ridge`) for the post-processing to peel.

We call kimimaro's own building blocks (``compute_cc_labels``, ``trace``) instead of
``kimimaro.skeletonize`` for three reasons, each a case where the whole-volume entry point
would break exact joins:

* ``trace`` returns an empty skeleton when a piece has ``max_paths`` or more border targets; we
  allow ``max_paths`` TEASAR paths *plus* one path per border target;
* in soma mode kimimaro trims path points within the soma radius, which can remove a border
  target; we put it back as a vertex joined to the soma root, which is how kimimaro represents
  every other path inside the soma;
* the dust threshold must apply to whole cells, not to the part of a cell inside one block, so
  pieces are all skeletonized here and dust is removed after joining (``piece_vx`` is returned
  so the caller can sum voxel counts over joined pieces).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

import cc3d
import edt
import numpy as np
from kimimaro.trace import trace
from kimimaro.utility import compute_cc_labels
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components

from syngraph.steps.skeletons.recentre import recentre

EXIT_TOL = 0.5  # voxels the distance to the boundary may rise inwards from an exit target
EXIT_CONTINUE = 0.75  # an exit's neurite keeps this fraction of its radius one radius inwards
EXIT_MIN_BALL = 2.0  # voxels: the exit tests look at least this far inwards
RECENTRE_TOL = 0.25  # voxels: discretisation slack of the ball containment test (:mod:`.recentre`)
SLIVER_FALL = 0.5  # steps the distance to the boundary falls one voxel in from a face on a sliver


class TeasarParams(TypedDict):
    """kimimaro TEASAR parameters; lengths in nm."""

    scale: float
    const: float
    pdrf_scale: float
    pdrf_exponent: int
    soma_detection_threshold: float
    soma_acceptance_threshold: float
    soma_invalidation_scale: float
    soma_invalidation_const: float
    max_paths: int


@dataclass(frozen=True)
class BlockSkeletons:
    """The skeleton pieces of one block, one row per vertex.

    ``vertex_vx`` are integer voxel coordinates at skeleton resolution, relative to the trace
    region's origin; ``parent`` is a row index into the same arrays (-1 for a piece's root), so
    every piece is a tree; ``piece`` numbers the pieces of the block and ``piece_vx`` is the
    voxel count of the connected component a vertex was traced in, counted inside the block's own
    box only (the plane shared with the next block counts once, in one block).
    """

    cell_id: np.ndarray  # (n,) uint64
    vertex_vx: np.ndarray  # (n, 3) int64
    radius_nm: np.ndarray  # (n,) float32
    parent: np.ndarray  # (n,) int64
    piece: np.ndarray  # (n,) int64
    piece_vx: np.ndarray  # (n,) int64
    face_ridge: np.ndarray  # (n,) bool: on the volume border, the distance field not rising inwards

    @classmethod
    def empty(cls) -> BlockSkeletons:
        z = np.zeros(0, np.int64)
        return cls(np.zeros(0, np.uint64), np.zeros((0, 3), np.int64), np.zeros(0, np.float32), z, z, z,
                   np.zeros(0, bool))

    def __len__(self) -> int:
        return int(self.cell_id.shape[0])


def tree_parents(n: int, edges: np.ndarray, root: int = 0) -> np.ndarray:
    """Parent index of every vertex of a forest given undirected ``edges``; roots get -1.

    The component containing ``root`` is rooted there, every other component at its lowest
    vertex index. Edges that would close a cycle are dropped (a BFS tree is kept).

    >>> tree_parents(4, np.array([[0, 1], [1, 2], [3, 2]]), root=2).tolist()
    [1, 2, -1, 2]
    """
    parent = np.full(n, -1, np.int64)
    if n == 0:
        return parent
    e = np.asarray(edges, np.int64).reshape(-1, 2)
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    ncomp, comp = connected_components(g, directed=False)
    roots = [root] + [int(np.flatnonzero(comp == c)[0]) for c in range(ncomp) if c != comp[root]]
    for r in roots:
        order, pred = breadth_first_order(g, r, directed=False, return_predecessors=True)
        parent[order] = pred[order]
        parent[r] = -1
    parent[parent < 0] = -1
    return parent


def exit_targets(dbf: np.ndarray, labels: np.ndarray, axis: int, index: int,
                 rect: tuple[slice, slice], anisotropy_nm: tuple[float, float, float],
                 tol_nm: float) -> list[tuple[int, int, int]]:
    """Where neurites leave the volume through the plane ``index`` of ``axis``.

    A neurite whose axis crosses the volume border has its largest inscribed ball centred on
    the face, on the axis: the distance to the boundary ``dbf`` (taken without the volume
    border as a boundary) has a local maximum ``d`` on the face and, inside the volume, rises
    nowhere within ``d`` (at least ``EXIT_MIN_BALL`` voxels) of that point by more than
    ``tol_nm``. A neurite that only grazes the
    face (its axis stays inside, within a radius of the face) touches the face where the
    distance rises inwards, towards the axis; a bouton or soma bulging out of the face has
    no neurite continuing inwards (one radius ``d`` in, the distance has fallen below
    ``EXIT_CONTINUE * d`` everywhere). Those contacts are not ends of the neurite and get no
    target. Unlike one target per cross-section, a neurite that runs along the face before it
    leaves gets its target where it leaves.

    ``dbf`` and ``labels`` cover the read region (the tests look up to a radius and a half
    voxels inwards); targets are searched in ``rect`` of the plane (the face of the trace
    region). Returns them as ``(x, y, z)`` indices of ``dbf``, thickest first.
    """
    sel: list[Any] = [slice(None)] * 3
    sel[axis] = index
    other = [a for a in range(3) if a != axis]
    f = np.zeros(dbf.shape[other[0]] * dbf.shape[other[1]], np.float32).reshape(
        dbf.shape[other[0]], dbf.shape[other[1]])
    lab = np.asarray(labels[tuple(sel)])
    f[rect] = np.asarray(dbf[tuple(sel)], np.float32)[rect]
    fg = (lab > 0) & (f > 0)
    if not fg.any():
        return []
    peak = fg & (ndimage.maximum_filter(np.where(lab > 0, np.asarray(dbf[tuple(sel)]), 0.0), size=3,
                                        mode="constant") <= f)
    aniso = np.asarray(anisotropy_nm, np.float64)
    cand = np.argwhere(peak)
    order = np.lexsort((cand[:, 1], cand[:, 0], -f[peak]))
    kept: list[tuple[np.ndarray, float]] = []
    out: list[tuple[int, int, int]] = []
    for k in order.tolist():
        uv = cand[k]
        d0 = float(f[uv[0], uv[1]])
        t = np.zeros(3, np.int64)
        t[axis] = index
        t[other[0]], t[other[1]] = uv
        pos = t * aniso
        if any(float(np.linalg.norm(pos - q)) < max(d0, dq) for q, dq in kept):
            continue  # the same section as a thicker target
        ball = max(d0, EXIT_MIN_BALL * float(aniso.max()))  # a thin contact is tested deeper
        shell = ball + 1.5 * float(aniso.max())
        half = np.ceil(shell / aniso).astype(np.int64)
        lo = np.maximum(t - half, 0)
        hi = np.minimum(t + half + 1, np.asarray(dbf.shape))
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        grid = np.meshgrid(*[(np.arange(a, b) - c) * v for a, b, c, v in zip(lo, hi, t, aniso, strict=True)],
                           indexing="ij")
        r2 = grid[0] ** 2 + grid[1] ** 2 + grid[2] ** 2
        own = np.where(labels[box] == lab[uv[0], uv[1]], dbf[box], 0.0)
        if float(np.max(np.where(r2 <= ball * ball, own, 0.0))) > d0 + tol_nm:
            continue  # the axis lies inside, deeper than the face: a graze
        if float(np.max(np.where((r2 > ball * ball) & (r2 <= shell * shell), own, 0.0))) < EXIT_CONTINUE * d0:
            continue  # no neurite continues inwards from here: a bouton or soma bulging out
        kept.append((pos, d0))
        out.append((int(t[0]), int(t[1]), int(t[2])))
    return out


def face_targets(
    labels: np.ndarray,
    trace_region: tuple[slice, slice, slice],
    cc_labels: np.ndarray,
    anisotropy_nm: tuple[float, float, float],
    dbf: np.ndarray | None = None,
) -> tuple[dict[int, list[tuple[int, int, int]]], dict[int, list[tuple[int, int, int]]]]:
    """Border targets of every piece: one per connected cross-section on each trace-region face.

    Like ``kimimaro.intake.compute_border_targets`` (the maximum of the 2-D distance transform
    of each 8-connected cross-section of a face), except that the distance transform is taken
    over the whole plane of the read region, not only the face: a neurite whose cross-section
    is cut by the edge of the face (it crosses near a block edge or corner) gets its target
    where its axis is, or as near to it as the face allows, instead of at the centre of the
    clipped part. The plane and the face are the same in both blocks that share the face, so
    both compute the same target (ties go to the first voxel in C order).

    Returns ``(on_volume_border, on_shared_faces)``, each ``{piece id in cc_labels: [(x, y, z),
    ...]}`` in trace-region coordinates. A face is on the volume border when it is also a face
    of ``labels`` (the read region is the trace region grown by a halo of at least one voxel,
    clipped to the volume). With ``dbf`` (the distance to the boundary over ``labels``), the
    targets on the volume border are where neurites leave the volume (:func:`exit_targets`)
    instead; there is no neighbouring block to agree with there.
    """
    volume: dict[int, list[tuple[int, int, int]]] = {}
    shared: dict[int, list[tuple[int, int, int]]] = {}
    tr = [(s.start, s.stop) for s in trace_region]
    for axis in range(3):
        other = [a for a in range(3) if a != axis]
        spacing = tuple(float(anisotropy_nm[a]) for a in other)
        for local in (0, tr[axis][1] - tr[axis][0] - 1):
            index = [slice(None)] * 3
            index[axis] = tr[axis][0] + local  # type: ignore[call-overload]
            at_border = tr[axis][0] + local in (0, labels.shape[axis] - 1)
            out = volume if at_border else shared
            rect = tuple(slice(*tr[a]) for a in other)
            if at_border and dbf is not None:
                for t in exit_targets(dbf, labels, axis, tr[axis][0] + local, rect,  # type: ignore[arg-type]
                                      anisotropy_nm, EXIT_TOL * float(min(anisotropy_nm))):
                    tt = tuple(int(c) - s[0] for c, s in zip(t, tr, strict=True))
                    out.setdefault(int(cc_labels[tt]), []).append(tt)  # type: ignore[arg-type]
                continue
            plane = np.ascontiguousarray(labels[tuple(index)])
            face = plane[rect]
            if not face.any():
                continue
            dt = edt.edt(plane, anisotropy=spacing, black_border=True, parallel=1)[rect]
            cc2, n = cc3d.connected_components(face, connectivity=8, return_N=True)
            if n == 0:
                continue
            pos = ndimage.maximum_position(dt, cc2, index=np.arange(1, n + 1))
            for p in pos:
                t = [0, 0, 0]
                t[axis] = local
                t[other[0]], t[other[1]] = int(p[0]), int(p[1])
                piece = int(cc_labels[tuple(t)])
                out.setdefault(piece, [])
                if tuple(t) not in out[piece]:
                    out[piece].append(tuple(t))  # type: ignore[arg-type]
    return volume, shared


def face_ridge(verts: np.ndarray, dbf: np.ndarray, pieces: np.ndarray, piece: int,
               volume_faces: list[tuple[int, int]], aniso: np.ndarray) -> np.ndarray:
    """True for the vertices within a voxel of a volume face that lie on the ridge of a sliver:
    the part inside the volume of a neurite whose axis lies outside it.

    The volume face is no boundary of ``dbf``. Where a tube's axis (radius ``r``) lies outside
    the volume at ``d`` from the face, its wall curves back under the face: the distance to the
    boundary is ``r - d`` on the face and falls by a full step ``s`` one voxel inwards (the
    ridge of the field lies on the face). Where the axis lies inside, deeper than about half a
    voxel, the distance on the face is the section's half-width ``sqrt(r^2 - a^2)`` and rises
    or stays one voxel inwards, towards the axis (a neurite grazing the face). So a vertex on
    the face plane or the next one is a sliver's when, at its position in the face, the
    distance falls from the face plane to the next by more than ``SLIVER_FALL`` steps (a voxel
    outside the piece counts as 0; paths on a sliver run on either plane). An axis within half
    a voxel of the face plane, on either side, counts as a sliver's (the field cannot tell the
    sides apart there). ``verts`` index ``dbf`` and ``pieces`` (the piece: the voxels equal to
    ``piece``); ``volume_faces``: ``(axis, +1)`` for the face at index 0 (inwards is +1),
    ``(axis, -1)`` for the last plane; ``aniso``: the voxel size.
    """
    out = np.zeros(len(verts), bool)
    shape = np.asarray(dbf.shape)
    for axis, sign in volume_faces:
        face = 0 if sign > 0 else int(shape[axis]) - 1
        at = (verts[:, axis] == face) | (verts[:, axis] == face + sign)
        if not at.any() or not 0 <= face + sign < shape[axis]:
            continue
        p0 = verts[at].copy()
        p0[:, axis] = face
        p1 = p0.copy()
        p1[:, axis] = face + sign
        d0 = np.where(pieces[tuple(p0.T)] == piece, dbf[tuple(p0.T)], 0.0)
        d1 = np.where(pieces[tuple(p1.T)] == piece, dbf[tuple(p1.T)], 0.0)
        out[np.flatnonzero(at)] |= d1 < d0 - SLIVER_FALL * float(aniso[axis])
    return out


def _crosses(dbf_roi: np.ndarray, mask: np.ndarray, t_local: tuple[int, int, int],
             t_region: tuple[int, int, int], region_shape: tuple[int, ...], aniso: np.ndarray) -> bool:
    """Whether the neurite's axis crosses the face at a face target (rather than running along
    the face, or the target lying on a sliver beside the axis).

    Walking half the target's radius from it into the block along the face normal, the
    distance to the boundary must stay above 0.6 of the target's (the axis meets the face at
    less than about 53 degrees from the normal) and never exceed it by more than a voxel (the
    target is not beside a thicker axis).
    """
    faces = [(a, 1) for a in range(3) if t_region[a] == 0]
    faces += [(a, -1) for a in range(3) if t_region[a] == region_shape[a] - 1]
    if len(faces) != 1:
        return False
    axis, sign = faces[0]
    d0 = float(dbf_roi[t_local])
    if d0 < 2 * float(aniso.max()):  # a section a few voxels across: a graze, not a crossing
        return False
    steps = max(1, int(round(0.5 * d0 / float(aniso[axis]))))
    p = list(t_local)
    for _ in range(steps):
        p[axis] += sign
        if not 0 <= p[axis] < mask.shape[axis] or not mask[tuple(p)]:
            return False
        if float(dbf_roi[tuple(p)]) > d0 + float(aniso.max()):
            return False
    return float(dbf_roi[tuple(p)]) >= 0.6 * d0


def skeletonize_block(
    labels: np.ndarray,
    trace_region: tuple[slice, slice, slice],
    *,
    anisotropy_nm: tuple[float, float, float],
    teasar: TeasarParams,
    teasar_by_label: dict[int, TeasarParams] | None = None,
    own_shape: tuple[int, int, int] | None = None,
) -> BlockSkeletons:
    """Skeletonize every label in ``labels[trace_region]``; see the module docstring.

    Parameters
    ----------
    labels : (X, Y, Z) integer array of cell ids (0 = background) at skeleton resolution,
        covering the trace region and its halo. Not modified.
    trace_region : slices of the trace region inside ``labels``.
    anisotropy_nm : voxel size at skeleton resolution, in nm.
    teasar : TEASAR parameters (lengths in nm).
    teasar_by_label : other parameters for some labels (e.g. astrocytes), by label.
    own_shape : the part of the trace region (from its origin) that is this block's own;
        ``piece_vx`` counts only those voxels, so that the plane shared with the next block is
        not counted twice when the caller sums over joined pieces (None: the whole region).

    Returns
    -------
    BlockSkeletons with vertex coordinates relative to the trace region's origin. Every
    26-connected piece of a label in the trace region gets one tree (a piece of one voxel gets
    one vertex); every border target of a piece is a vertex of its tree.
    """
    aniso = np.asarray(anisotropy_nm, np.float32)
    region = labels[trace_region]
    if not region.any():
        return BlockSkeletons.empty()
    dbf_all = edt.edt(
        np.asfortranarray(labels), anisotropy=tuple(float(a) for a in aniso), black_border=False,
        parallel=1,
    )
    if not np.isfinite(dbf_all).all():  # a label filling the whole read region has no boundary
        far = float(np.linalg.norm(np.asarray(labels.shape) * aniso))
        dbf_all = np.nan_to_num(dbf_all, posinf=far)
    dbf = np.asfortranarray(dbf_all[trace_region], dtype=np.float32)
    cc_labels, remapping = compute_cc_labels(np.asfortranarray(region))
    volume_targets, shared_targets = face_targets(labels, trace_region, cc_labels, tuple(aniso.tolist()),
                                                  dbf=dbf_all)
    del dbf_all
    all_vx = np.bincount(cc_labels.ravel(order="K"))  # voxels of each piece (cc3d's ids are consecutive)
    segids = np.flatnonzero(all_vx)
    if own_shape is None:
        own_vx = all_vx
    else:
        own_cc = cc_labels[tuple(slice(0, int(n)) for n in own_shape)]
        own_vx = np.bincount(own_cc.ravel(order="K"), minlength=all_vx.size)
    all_slices = ndimage.find_objects(cc_labels)

    volume_faces = [(a, 1) for a in range(3) if trace_region[a].start == 0]
    volume_faces += [(a, -1) for a in range(3) if trace_region[a].stop == labels.shape[a]]
    out_cell, out_v, out_r, out_p, out_piece, out_pvx, out_ridge = [], [], [], [], [], [], []
    n_rows = 0
    piece_no = 0
    for segid, count in zip(segids.tolist(), all_vx[segids].tolist(), strict=True):
        if segid == 0:
            continue
        slices = all_slices[segid - 1]
        if slices is None:
            continue
        minpt = np.array([s.start for s in slices], np.int64)
        mask = cc_labels[slices] == segid
        on_volume = volume_targets.get(segid, [])
        targets = on_volume + [t for t in shared_targets.get(segid, []) if t not in on_volume]
        if count == 1:
            verts = minpt[None, :].copy()
            edges = np.zeros((0, 2), np.int64)
            radii = dbf[tuple(minpt)][None].astype(np.float32)
        else:
            dbf_roi = np.where(mask, dbf[slices], 0.0).astype(np.float32, copy=False)
            local = [tuple(int(c) - int(m) for c, m in zip(t, minpt, strict=True)) for t in targets]
            # ends on the volume border and faces the axis crosses first, as kimimaro's
            # fix_borders (the root is one of them); targets on a face that runs along a
            # neurite or cuts a sliver off it after the TEASAR paths, so that they hang off
            # paths that follow the axis as in a whole-volume run as short spurs instead of
            # pulling the paths to the face (TEASAR invalidates everything near a path)
            before = local[: len(on_volume)]
            pairs = sorted(zip(local[len(on_volume):], targets[len(on_volume):], strict=True),
                           key=lambda tg: (-float(dbf_roi[tg[0]]), tg[0]))  # most central first
            cross = [t for t, g in pairs if _crosses(dbf_roi, mask, t, g, region.shape, aniso)]
            other = [t for t, _ in pairs if t not in cross]
            if before:
                root = before.pop()
            elif cross:
                root = cross.pop(0)
            elif other:  # the most central face target
                root = other.pop(0)
            else:
                root = None
            before = before + cross
            after = other
            own = (teasar_by_label or {}).get(int(remapping[segid]), teasar)
            params = dict(own)
            params["max_paths"] = int(own["max_paths"]) + len(local)
            skel = trace(
                np.asfortranarray(mask), np.array(dbf_roi, order="F"), anisotropy=aniso,  # trace edits it
                fix_branching=True, manual_targets_before=before, manual_targets_after=after,
                root=root, **params,
            )
            verts = np.rint(skel.vertices).astype(np.int64)
            edges = np.asarray(skel.edges, np.int64).reshape(-1, 2)
            if len(verts):  # onto the medial axis (:mod:`.recentre`)
                g = verts + minpt  # faces stay put: both blocks must place the same vertices there
                on_face = np.any((g == 0) | (g == np.asarray(region.shape) - 1), axis=1)
                verts, inv = np.unique(recentre(verts, dbf_roi, on_face, tuple(aniso.tolist()),
                                                RECENTRE_TOL * float(aniso.min())), axis=0, return_inverse=True)
                edges = inv.reshape(-1)[edges]
                edges = np.unique(np.sort(edges[edges[:, 0] != edges[:, 1]], axis=1), axis=0)
                skel.radii = dbf_roi[tuple(verts.T)]
            radii = np.asarray(skel.radii, np.float32)
            if len(verts) == 0:  # kimimaro found no root: keep the piece as its deepest voxel
                deepest = np.unravel_index(int(np.argmax(dbf_roi)), dbf_roi.shape)
                verts = np.array([deepest], np.int64)
                edges = np.zeros((0, 2), np.int64)
                radii = dbf_roi[deepest][None].astype(np.float32)
            missing = sorted(set(local) - {tuple(v) for v in verts.tolist()})
            if missing:
                # soma mode trimmed these ends; kimimaro joins every trimmed path to the soma
                # root, so do the same (the root is the vertex of largest radius)
                anchor = int(np.argmax(radii))
                add = np.array(missing, np.int64)
                edges = np.concatenate(
                    [edges, np.stack([np.full(len(add), anchor), len(verts) + np.arange(len(add))], 1)]
                )
                radii = np.concatenate([radii, dbf_roi[tuple(add.T)].astype(np.float32)])
                verts = np.concatenate([verts, add])
            verts = verts + minpt
        root_idx = 0
        parent = tree_parents(len(verts), edges, root_idx)
        parent[parent >= 0] += n_rows
        out_cell.append(np.full(len(verts), remapping[segid], np.uint64))
        out_v.append(verts)
        out_r.append(radii)
        out_p.append(parent)
        out_piece.append(np.full(len(verts), piece_no, np.int64))
        out_pvx.append(np.full(len(verts), own_vx[segid], np.int64))
        out_ridge.append(face_ridge(verts, dbf, cc_labels, segid, volume_faces, aniso))
        n_rows += len(verts)
        piece_no += 1
    if not out_cell:
        return BlockSkeletons.empty()
    return BlockSkeletons(
        np.concatenate(out_cell),
        np.concatenate(out_v),
        np.concatenate(out_r),
        np.concatenate(out_p),
        np.concatenate(out_piece),
        np.concatenate(out_pvx),
        np.concatenate(out_ridge),
    )
