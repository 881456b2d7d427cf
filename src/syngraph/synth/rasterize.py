"""Draw the tissue into one box of voxels (pure: geometry in, arrays out).

Every voxel ``p`` (centre at ``index * voxel_size_nm``) takes the primitive with the smallest
signed distance ``d = |p - axis(t)| - r(t)`` if it is closer than the expansion distance
(cells touch along flat faces where two cells' distances are equal), or, for an astrocyte's
primitive, closer than ``astrocyte_fill_nm`` (lamellae filling the free space whose nearest cell
surface is the astrocyte's, by a margin of one voxel diagonal: a generalized Voronoi region, so
connected to the process); ties go to the primitive added first. A myelin sheath is a shell primitive (``d = max(|p-axis| - r_out, r_in - |p-axis|)``)
whose voxels are background with ``gt_myelin = 1``. A soma voxel takes the supervoxel of the
nearest of its soma's seeds. Organelles are the voxels inside their primitive *and* owned by their
cell (both partner cells for a junction disc). Probability maps are logistic functions of the
signed distance, with smooth boundary noise, per-voxel noise and false-positive speckle, all
computed from global coordinates, so a voxel gets identical values in any block.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from syngraph.bbox import BBox
from syngraph.synth import noise
from syngraph.synth.geometry import DEAD, MYELIN_SHELL
from syngraph.synth.params import SynthParams
from syngraph.synth.tissue import Tissue

CELL_LAYERS = ("sv", "gt_cells", "gt_compartments", "gt_myelin")
STREAM = {"mi": 1, "vc": 2, "sj": 3, "syn_type": 4, "myelin": 5}


@dataclass
class Indexed:
    """A tissue plus the per-primitive voxel boxes and id lookups the rasteriser needs."""

    tissue: Tissue
    id_offset: int = 0

    @cached_property
    def vs(self) -> np.ndarray:
        return np.array(self.tissue.voxel_size_nm, np.float64)

    def _boxes(self, a, b, r) -> tuple[np.ndarray, np.ndarray]:
        lo = np.minimum(a, b) - r[:, None]
        hi = np.maximum(a, b) + r[:, None]
        return (np.floor(lo / self.vs).astype(np.int64),
                np.ceil(hi / self.vs).astype(np.int64) + 1)

    @cached_property
    def geodesic_fill(self) -> bool:
        return self.tissue.astrocyte_fill == "geodesic" and self.tissue.astrocyte_fill_nm > 0

    @cached_property
    def reach_nm(self) -> float:
        """How far from its surface a primitive must be evaluated."""
        if self.geodesic_fill:
            return self.tissue.expansion_nm
        return max(self.tissue.expansion_nm, self.tissue.astrocyte_fill_nm)

    @cached_property
    def prim_expansion(self) -> np.ndarray:
        """Per primitive, how far from its surface it may own voxels."""
        from syngraph.synth.tissue import CELL_TYPES

        t = self.tissue
        P = t.prims
        astro = (t.cells["type"][P["cell"]] == CELL_TYPES.index("astrocyte")) & (P["kind"] != MYELIN_SHELL)
        fill = t.expansion_nm if self.geodesic_fill else max(t.astrocyte_fill_nm, t.expansion_nm)
        return np.where(astro, fill, t.expansion_nm).astype(np.float32)

    @cached_property
    def prim_boxes(self) -> tuple[np.ndarray, np.ndarray]:
        P = self.tissue.prims
        r = np.maximum(P["ra"], P["rb"]) + self.reach_nm + 1.0
        lo, hi = self._boxes(P["a"], P["b"], r)
        dead = P["kind"] == DEAD
        lo[dead] = hi[dead] = 2**40  # far away: never selected
        return lo, hi

    @cached_property
    def sv_base(self) -> np.ndarray:
        """Global id of each cell's local supervoxel 0 (cell id = that id; ids start at 1)."""
        n = self.tissue.cells["n_sv"]
        return np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.uint64) + np.uint64(1 + self.id_offset)

    @cached_property
    def cell_ids(self) -> np.ndarray:
        c = self.tissue.cells
        return self.sv_base + c["anchor_sv"].astype(np.uint64)

    @cached_property
    def prim_sv_global(self) -> np.ndarray:
        P = self.tissue.prims
        return self.sv_base[P["cell"]] + P["sv"].astype(np.uint64)

    def org_boxes(self, layer: str) -> tuple[np.ndarray, np.ndarray]:
        o = self.tissue.organelles[layer]
        if layer == "sj":
            r = o["r"] + o["h"] + 40.0
            return self._boxes(o["a"], o["a"], r)
        return self._boxes(o["a"], o["b"], o["r"] + 60.0)

    @cached_property
    def speckle_boxes(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.tissue.speckle
        return self._boxes(s["pos"], s["pos"], s["r"] + 60.0)


def _select(boxes: tuple[np.ndarray, np.ndarray], box: BBox) -> np.ndarray:
    lo, hi = boxes
    if len(lo) == 0:
        return np.zeros(0, np.int64)
    start, stop = np.array(box.start), np.array(box.stop)
    m = np.all(lo < stop, axis=1) & np.all(hi > start, axis=1)
    return np.flatnonzero(m)


def _sub(lo: np.ndarray, hi: np.ndarray, box: BBox) -> tuple[slice, ...] | None:
    s = np.maximum(lo, box.start) - np.array(box.start)
    e = np.minimum(hi, box.stop) - np.array(box.start)
    if np.any(e <= s):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(s, e, strict=True))


def _axis_dist(coords, sl, a, b) -> tuple[np.ndarray, np.ndarray]:
    """Distance of the voxels of a sub-box to segment a-b and the segment parameter (float32)."""
    x = coords[0][sl[0]] - np.float32(a[0])
    y = coords[1][sl[1]] - np.float32(a[1])
    z = coords[2][sl[2]] - np.float32(a[2])
    ab = (b - a).astype(np.float32)
    ll = np.float32(ab @ ab)
    x3, y3, z3 = x[:, None, None], y[None, :, None], z[None, None, :]
    w2 = x3 * x3 + y3 * y3 + z3 * z3
    if ll <= 0:
        return np.sqrt(w2), np.zeros((1, 1, 1), np.float32)
    wd = x3 * ab[0] + y3 * ab[1] + z3 * ab[2]
    t = np.clip(wd / ll, np.float32(0), np.float32(1))
    d2 = w2 - np.float32(2) * t * wd + t * t * ll
    # at the clamped ends use the exact endpoint distance, computed exactly as the neighbouring
    # cone computes it from its own start, so ties at shared nodes are exact (first cone wins)
    np.copyto(d2, w2, where=t <= 0)
    xb = coords[0][sl[0]] - np.float32(b[0])
    yb = coords[1][sl[1]] - np.float32(b[1])
    zb = coords[2][sl[2]] - np.float32(b[2])
    xb3, yb3, zb3 = xb[:, None, None], yb[None, :, None], zb[None, None, :]
    np.copyto(d2, xb3 * xb3 + yb3 * yb3 + zb3 * zb3, where=t >= 1)
    return np.sqrt(np.maximum(d2, np.float32(0))), t


def _disc_dist(coords, sl, c, n, radius, half) -> np.ndarray:
    x = coords[0][sl[0]] - np.float32(c[0])
    y = coords[1][sl[1]] - np.float32(c[1])
    z = coords[2][sl[2]] - np.float32(c[2])
    n = n.astype(np.float32)
    x3, y3, z3 = x[:, None, None], y[None, :, None], z[None, None, :]
    h = x3 * n[0] + y3 * n[1] + z3 * n[2]
    w2 = x3 * x3 + y3 * y3 + z3 * z3
    rad = np.sqrt(np.maximum(w2 - h * h, np.float32(0)))
    return np.maximum(np.abs(h) - np.float32(half), rad - np.float32(radius))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.float32(1.0) / (np.float32(1.0) + np.exp(np.clip(x, -30, 30)))


def _ownership(ix: Indexed, box: BBox) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Owner primitive (-1: none), myelin-shell distance and supervoxel id of every voxel."""
    t = ix.tissue
    vs = ix.vs
    shape = box.shape
    coords = [(np.arange(s, e, dtype=np.float64) * v).astype(np.float32)
              for s, e, v in zip(box.start, box.stop, vs, strict=True)]
    E = np.float32(ix.reach_nm)
    P = t.prims
    best = np.full(shape, E, np.float32)
    best_other = np.full(shape, np.float32(np.inf), np.float32)  # nearest surface of a non-astrocyte
    astro_prim = ix.prim_expansion > t.expansion_nm
    sv_of = ix.prim_sv_global
    a_best = np.full(shape, np.float32(np.inf), np.float32)
    a_second = np.full(shape, np.float32(np.inf), np.float32)
    a_sv = np.zeros(shape, np.uint64)
    owner = np.full(shape, -1, np.int32)
    dmy = np.full(shape, np.float32(1e4), np.float32)
    lo, hi = ix.prim_boxes
    for pid in _select(ix.prim_boxes, box):
        sl = _sub(lo[pid], hi[pid], box)
        if sl is None:
            continue
        a, b = P["a"][pid], P["b"][pid]
        dist, tt = _axis_dist(coords, sl, a, b)
        ra, rb = np.float32(P["ra"][pid]), np.float32(P["rb"][pid])
        r = ra + tt * (rb - ra)
        if ra != rb:
            r = np.where(tt >= 1, rb, r)  # exactly rb at the end (ties with the next cone)
        d = dist - r
        if P["kind"][pid] == MYELIN_SHELL:
            d = np.maximum(d, np.float32(P["rin"][pid]) - dist)
            np.minimum(dmy[sl], d, out=dmy[sl])
        sub_best = best[sl]
        m = d < sub_best
        sub_best[m] = d[m]
        owner[sl][m] = pid
        if not astro_prim[pid]:
            np.minimum(best_other[sl], d, out=best_other[sl])
        else:  # nearest astrocyte surface and the nearest of another supervoxel
            svp = sv_of[pid]
            b1, l1, b2 = a_best[sl], a_sv[sl], a_second[sl]
            new = d < b1
            moved = new & (l1 != svp)
            b2[moved] = b1[moved]
            b1[new] = d[new]
            l1[new] = svp
            other = ~new & (l1 != svp)
            b2[other] = np.minimum(b2[other], d[other])
    fg = owner >= 0
    own = np.where(fg, owner, 0)
    fg &= best < ix.prim_expansion[own]  # nearest surface beyond its primitive's expansion: free
    # astrocyte lamellae only where the nearest surface of another cell or supervoxel is a voxel
    # diagonal farther: every voxel on the way to the process is then the same supervoxel's too
    # (no islands from rounding)
    fill = fg & astro_prim[own] & (best >= t.expansion_nm)
    margin = np.float32(np.linalg.norm(vs))
    fg &= ~fill | ((best_other - best >= margin) & (a_second - best >= margin))
    owner[~fg] = -1
    cell_fg = fg & (P["kind"][own] != MYELIN_SHELL)
    sv = np.where(cell_fg, ix.prim_sv_global[own], np.uint64(0)).astype(np.uint64)
    # soma voxels take the supervoxel of the nearest seed of their soma
    seeds = t.soma_seeds
    for sp in np.unique(seeds["prim"]):
        m = cell_fg & (owner == sp)
        if not m.any():
            continue
        idx = np.flatnonzero(seeds["prim"] == sp)
        pts = np.nonzero(m)
        xyz = [coords[k][pts[k]] for k in range(3)]
        bestd = np.full(len(pts[0]), np.inf, np.float32)
        pick = np.zeros(len(pts[0]), np.int64)
        for j in idx:
            s = seeds["pos"][j].astype(np.float32)
            d2 = (xyz[0] - s[0]) ** 2 + (xyz[1] - s[1]) ** 2 + (xyz[2] - s[2]) ** 2
            better = d2 < bestd
            bestd[better] = d2[better]
            pick[better] = j
        c = int(P["cell"][sp])
        sv[pts] = ix.sv_base[c] + seeds["sv"][pick].astype(np.uint64)
    return owner, dmy, sv


_OFFSETS = [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)]


def _fix_islands(owner: np.ndarray, dmy: np.ndarray, sv: np.ndarray, ext: BBox, box: BBox, vol: BBox):
    """Voxels of ``box`` whose supervoxel has no 26-neighbour of the same id (rasterisation
    slivers of a connected continuous region) take the most common neighbouring label (ties:
    the smallest id). Depends only on each voxel's raw 26-neighbourhood, so it is blockwise exact.
    """
    pad = np.full(tuple(n + 2 for n in box.shape), np.iinfo(np.uint64).max, np.uint64)
    # place ext inside pad (pad covers box grown by 1; outside the volume stays the sentinel)
    off = tuple(e - (b - 1) for e, b in zip(ext.start, box.start, strict=True))
    pad[tuple(slice(o, o + n) for o, n in zip(off, ext.shape, strict=True))] = sv
    core = tuple(slice(1, 1 + n) for n in box.shape)
    center = pad[core]
    same = np.zeros(box.shape, np.bool_)
    for di, dj, dk in _OFFSETS:
        same |= pad[1 + di : 1 + di + box.shape[0], 1 + dj : 1 + dj + box.shape[1],
                    1 + dk : 1 + dk + box.shape[2]] == center
    in_ext = box.local_slices(ext)
    owner_b, dmy_b, sv_b = owner[in_ext].copy(), dmy[in_ext].copy(), sv[in_ext].copy()
    islands = np.argwhere(~same & (center > 0))
    for x, y, z in islands:
        labels = []
        for di, dj, dk in _OFFSETS:
            v = pad[1 + x + di, 1 + y + dj, 1 + z + dk]
            if v != np.iinfo(np.uint64).max:
                labels.append((int(v), (x + di, y + dj, z + dk)))
        if not labels:
            continue
        ids = [lab for lab, _ in labels]
        best = min(set(ids), key=lambda v: (-ids.count(v), v))
        src = next(pos for lab, pos in labels if lab == best)
        gx, gy, gz = (p + o for p, o in zip(src, box.start, strict=True))
        ex = (gx - ext.start[0], gy - ext.start[1], gz - ext.start[2])
        owner_b[x, y, z] = owner[ex]
        dmy_b[x, y, z] = dmy[ex]
        sv_b[x, y, z] = best
    return owner_b, dmy_b, sv_b


def _geodesic_fill(ix: Indexed, owner: np.ndarray, sv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Astrocytic lamellae: every free voxel (no owner) within ``astrocyte_fill_nm`` of an
    astrocyte voxel along a 6-connected path through free voxels joins the nearest astrocyte
    supervoxel (ties: the smaller supervoxel id, then the smaller primitive id); its owner is that
    supervoxel's primitive at the path's start.

    Path lengths are integers (steps of the voxel size in 1/100 nm), so the fixed point, the
    lexicographic minimum of (length, sv id, primitive) over all paths, does not depend on the
    extent of the arrays: blocks rendered with the reach around them agree exactly. Every filled
    voxel has a 6-neighbour of its own supervoxel that is nearer, so supervoxels stay connected.
    """
    from syngraph.synth.tissue import CELL_TYPES

    t = ix.tissue
    P = t.prims
    own = np.maximum(owner, 0)
    astro_cell = t.cells["type"] == CELL_TYPES.index("astrocyte")
    seed = (owner >= 0) & astro_cell[P["cell"][own]] & (P["kind"][own] != MYELIN_SHELL)
    if not seed.any():
        return owner, sv
    free = owner < 0
    big = np.iinfo(np.int64).max // 4
    limit = int(round(t.astrocyte_fill_nm * 100))
    steps = [int(round(v * 100)) for v in ix.vs]
    dist = np.where(seed, 0, big).astype(np.int64)
    lab = np.where(seed, sv, np.uint64(0)).astype(np.uint64)
    src = np.where(seed, owner, np.int32(-1)).astype(np.int32)
    changed = True
    while changed:
        changed = False
        for axis in range(3):
            for fwd in (True, False):
                a = [slice(None)] * 3
                b = [slice(None)] * 3
                a[axis], b[axis] = (slice(0, -1), slice(1, None)) if fwd else (slice(1, None), slice(0, -1))
                sa, sb = tuple(a), tuple(b)
                cand = dist[sa] + steps[axis]
                d_b, l_b, s_b = dist[sb], lab[sb], src[sb]
                l_a, s_a = lab[sa], src[sa]
                better = (cand < d_b) | ((cand == d_b) & ((l_a < l_b) | ((l_a == l_b) & (s_a < s_b))))
                m = free[sb] & (cand <= limit) & better
                if m.any():
                    d_b[m] = cand[m]
                    l_b[m] = l_a[m]
                    s_b[m] = s_a[m]
                    changed = True
    filled = free & (lab != 0)
    return np.where(filled, src, owner).astype(owner.dtype), np.where(filled, lab, sv).astype(np.uint64)


def render(ix: Indexed, box: BBox, params: SynthParams | None = None) -> dict[str, np.ndarray]:
    """Render every layer of the tissue inside ``box`` (XYZ voxels); returns XYZ arrays."""
    params = params or SynthParams()
    t = ix.tissue
    vs = ix.vs
    shape = box.shape
    coords = [(np.arange(s, e, dtype=np.float64) * v).astype(np.float32)
              for s, e, v in zip(box.start, box.stop, vs, strict=True)]
    P = t.prims
    vol = BBox.from_shape(t.shape_xyz)
    if ix.geodesic_fill:
        # a free voxel's path to the astrocyte is at most astrocyte_fill_nm long, so it stays
        # within that many nm of the voxel: render that much around the box, fill, crop
        reach = [int(np.ceil(t.astrocyte_fill_nm / v)) for v in vs]
        inner = box.grow(reach, clip=vol)
        ext = inner.grow(1, clip=vol)
        owner, dmy, sv = _fix_islands(*_ownership(ix, ext), ext, inner, vol)
        owner, sv = _geodesic_fill(ix, owner, sv)
        crop = box.local_slices(inner)
        owner, dmy, sv = owner[crop], dmy[crop], sv[crop]
    else:
        ext = box.grow(1, clip=vol)
        owner, dmy, sv = _fix_islands(*_ownership(ix, ext), ext, box, vol)
    fg = owner >= 0
    own = np.where(fg, owner, 0)
    is_shell = fg & (P["kind"][own] == MYELIN_SHELL)
    cell_fg = fg & ~is_shell
    cell_idx = np.where(cell_fg, P["cell"][own], -1)
    cells = np.where(cell_fg, ix.cell_ids[np.maximum(cell_idx, 0)], np.uint64(0)).astype(np.uint64)
    comp = np.where(cell_fg, P["comp"][own], 0).astype(np.uint8)
    gt_myelin = is_shell.astype(np.uint8)
    out: dict[str, np.ndarray] = {
        "sv": sv,
        "gt_cells": cells,
        "gt_compartments": comp,
        "gt_myelin": gt_myelin,
        "cell_index": cell_idx,
    }
    # noise fields shared by the maps
    u = noise.white(t.seed, 0, box.start, shape)
    spacing = tuple(max(2.0, 80.0 / v) for v in vs)
    w = np.float32(params.edge_width_nm)
    wob = np.float32(params.wobble_nm)
    wn = np.float32(params.white_noise)
    # organelles
    for li, layer in enumerate(("mi", "vc", "sj")):
        o = t.organelles[layer]
        n_org = len(o["r"])
        dmin = np.full(shape, np.float32(1e4), np.float32)
        arg = np.full(shape, -1, np.int32)
        olo, ohi = ix.org_boxes(layer)
        for oid in _select((olo, ohi), box):
            sl = _sub(olo[oid], ohi[oid], box)
            if sl is None:
                continue
            if layer == "sj":
                d = _disc_dist(coords, sl, o["a"][oid], o["b"][oid], o["r"][oid], o["h"][oid])
            else:
                dist, _tt = _axis_dist(coords, sl, o["a"][oid], o["b"][oid])
                d = dist - np.float32(o["r"][oid])
            sub = dmin[sl]
            m = d < sub
            sub[m] = d[m]
            arg[sl][m] = oid
        has = arg >= 0
        a0 = np.maximum(arg, 0)
        inside = has & (dmin <= 0)
        if n_org == 0:
            inside[:] = False
        elif layer == "sj":
            inside &= (cell_idx == o["cell"][a0]) | (cell_idx == o["cell2"][a0])
        else:
            inside &= cell_idx == o["cell"][a0]
        out[f"gt_{layer}"] = np.where(inside, a0.astype(np.uint64) + np.uint64(1), np.uint64(0))
        # probability map
        sm = noise.smooth(t.seed, STREAM[layer], box.start, shape, spacing)
        sm2 = noise.smooth(t.seed, STREAM[layer] + 50, box.start, shape, tuple(s * 2 for s in spacing))
        sig = _sigmoid((dmin + wob * sm) / w)
        amp = np.float32(0.86) + np.float32(0.1) * sm2
        prob = sig * amp
        sp = t.speckle
        slo, shi = ix.speckle_boxes
        for k in _select((slo, shi), box):
            if sp["layer"][k] != li:
                continue
            sl = _sub(slo[k], shi[k], box)
            if sl is None:
                continue
            dist, _tt = _axis_dist(coords, sl, sp["pos"][k], sp["pos"][k])
            spk = np.float32(sp["peak"][k]) * _sigmoid((dist - np.float32(sp["r"][k])) / w)
            np.maximum(prob[sl], spk, out=prob[sl])
        prob += (u[li] - np.float32(0.5)) * np.float32(2.0) * wn + np.float32(0.02)
        out[layer] = _to_u8(prob)
        if layer == "sj":
            val = (np.where(has, o["value"][a0], 0.0) if n_org else np.zeros(shape)).astype(np.float32)
            st = val * sig + (u[3] - np.float32(0.5)) * np.float32(0.12) * sig
            st += np.float32(0.01) * u[3]
            out["syn_type"] = _to_u8(st)
    # myelin map
    sm = noise.smooth(t.seed, STREAM["myelin"], box.start, shape, spacing)
    my = _sigmoid((dmy + wob * sm) / w) * np.float32(0.9)
    my += (u[3] - np.float32(0.5)) * np.float32(2.0) * wn + np.float32(0.02)
    out["myelin"] = _to_u8(my)
    return out


def _to_u8(p: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(p * np.float32(255.0)), 0, 255).astype(np.uint8)
