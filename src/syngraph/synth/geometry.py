"""Global geometry of the demo tissue: skeleton nodes, round-cone primitives, collision checks.

Everything here is in nanometres, XYZ. A cell is a tree of nodes; every parent->child edge is a
round cone (a capsule whose radius goes linearly from the parent's to the child's radius) and
somata, boutons and spine heads are spheres (cones of length 0). Primitives are what the
rasteriser draws: a voxel belongs to the primitive with the smallest signed distance
``|p - axis| - radius`` (see :mod:`syngraph.synth.rasterize`).

Cells never cut each other: every new primitive is checked against the primitives already placed
(a uniform grid hash finds the candidates) and must keep its axis at least ``r1 + r2 - allow``
away from theirs, where ``allow`` is at most half the thinner radius. So every axis voxel stays
owned by its own cell and each cell stays one connected piece. A growing cable also keeps clear
of its own cell (:meth:`Scene.clear` with ``grow_from``): two points of one cell farther apart
along the tree than ``SELF_KAPPA`` times the sum of their radii keep ``r1 + r2 + 20 nm`` apart,
so a cable never folds back into its own lumen (for r = 60 nm, bends up to about 110 degrees at
one node and branches at least about 70 degrees from their sibling are possible; the number of
hops to the growth tip is not what decides).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from syngraph import compartments as cp

SOLID = 0
MYELIN_SHELL = 1
DEAD = 2  # removed (an unclaimed synapse site): not drawn, not an obstacle
SELF_KAPPA = 2.0  # parts of a cell farther apart along it than this times r1 + r2 must not touch
SELF_GAP_NM = 20.0  # the clearance between those parts


def point_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from point ``p`` (3,) to segments ``a``-``b`` (M, 3) and the segment parameter t."""
    ab = b - a
    ll = np.einsum("ij,ij->i", ab, ab)
    t = np.where(ll > 0, np.einsum("ij,ij->i", p[None, :] - a, ab) / np.where(ll > 0, ll, 1.0), 0.0)
    t = np.clip(t, 0.0, 1.0)
    c = a + t[:, None] * ab
    return np.linalg.norm(p[None, :] - c, axis=1), t


def segment_segment(
    p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest distance between segment ``p0-p1`` (3,) and segments ``q0-q1`` (M, 3).

    Returns ``(distance, s, t)``: the parameters of the closest points on p and on each q
    (Ericson, Real-Time Collision Detection, 5.1.9), vectorised over the M segments.
    """
    eps = 1e-9
    d1 = p1 - p0
    d2 = q1 - q0
    r = p0[None, :] - q0
    a = float(d1 @ d1)
    e = np.einsum("ij,ij->i", d2, d2)
    f = np.einsum("ij,ij->i", d2, r)
    m = len(q0)
    if a <= eps:
        s = np.zeros(m)
        t = np.where(e > eps, np.clip(f / np.where(e > eps, e, 1.0), 0.0, 1.0), 0.0)
    else:
        c = r @ d1
        b = d2 @ d1
        denom = a * e - b * b
        s = np.where(denom > eps, np.clip((b * f - c * e) / np.where(denom > eps, denom, 1.0), 0, 1), 0.0)
        t = np.where(e > eps, (b * s + f) / np.where(e > eps, e, 1.0), 0.0)
        lo = t < 0
        hi = t > 1
        s = np.where(lo, np.clip(-c / a, 0, 1), s)
        s = np.where(hi, np.clip((b - c) / a, 0, 1), s)
        t = np.clip(t, 0.0, 1.0)
        degenerate = e <= eps
        s = np.where(degenerate, np.clip(-c / a, 0, 1), s)
    cp_ = p0[None, :] + s[:, None] * d1[None, :]
    cq = q0 + t[:, None] * d2
    return np.linalg.norm(cp_ - cq, axis=1), s, t


class _Growable:
    """A column store that grows by doubling (numpy arrays, appended one row at a time)."""

    def __init__(self, columns: dict[str, tuple[np.dtype | type, tuple[int, ...]]], capacity: int = 1024):
        self.n = 0
        self._cap = capacity
        self._cols = {k: np.zeros((capacity, *shape), dtype) for k, (dtype, shape) in columns.items()}

    def append(self, **values) -> int:
        if self.n == self._cap:
            self._cap *= 2
            for k, arr in self._cols.items():
                new = np.zeros((self._cap, *arr.shape[1:]), arr.dtype)
                new[: self.n] = arr[: self.n]
                self._cols[k] = new
        for k, v in values.items():
            self._cols[k][self.n] = v
        self.n += 1
        return self.n - 1

    def __getitem__(self, key: str) -> np.ndarray:
        return self._cols[key][: self.n]

    def set(self, key: str, index: int, value) -> None:
        self._cols[key][index] = value

    def freeze(self) -> dict[str, np.ndarray]:
        return {k: v[: self.n].copy() for k, v in self._cols.items()}


@dataclass
class Cell:
    """One cell: its type, root node and bookkeeping for supervoxels."""

    index: int
    type: str  # excitatory, inhibitory, modulatory, astrocyte
    root: int = -1
    soma_prim: int = -1
    soma_center_nm: tuple[float, float, float] | None = None
    soma_radius_nm: float = 0.0
    fragment: bool = False
    n_sv: int = 0
    anchor_sv: int = 0  # local sv index that is certainly inside the volume (gets the smallest id)


@dataclass
class Scene:
    """The geometry under construction: nodes, primitives, cells and a collision grid."""

    box_nm: np.ndarray  # (2, 3): low and high corner of the volume in nm
    grid_nm: float = 400.0
    cells: list[Cell] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nodes = _Growable(
            {
                "pos": (np.float64, (3,)),
                "radius": (np.float64, ()),
                "parent": (np.int64, ()),
                "cell": (np.int32, ()),
                "comp": (np.uint8, ()),
                "myelin": (np.bool_, ()),
                "sv": (np.int32, ()),
            }
        )
        self.prims = _Growable(
            {
                "a": (np.float64, (3,)),
                "b": (np.float64, (3,)),
                "ra": (np.float64, ()),
                "rb": (np.float64, ()),
                "rin": (np.float64, ()),
                "kind": (np.uint8, ()),
                "cell": (np.int32, ()),
                "sv": (np.int32, ()),
                "comp": (np.uint8, ()),
                "myelin": (np.bool_, ()),
                "node_a": (np.int64, ()),
                "node_b": (np.int64, ()),
            }
        )
        self.children: dict[int, list[int]] = defaultdict(list)
        self.node_prims: dict[int, list[int]] = defaultdict(list)
        self.path_nm: list[float] = []  # path length from the cell's root to each node
        self._ancestors: tuple[int, dict[int, float]] = (-1, {})
        self._grid: dict[tuple[int, int, int], list[int]] = defaultdict(list)
        self.solid_grid: bool = True

    # --- construction -------------------------------------------------------------------------
    def new_cell(self, type_: str, fragment: bool = False) -> Cell:
        cell = Cell(len(self.cells), type_, fragment=fragment)
        self.cells.append(cell)
        return cell

    def new_sv(self, cell: Cell) -> int:
        cell.n_sv += 1
        return cell.n_sv - 1

    def add_node(self, pos, radius: float, parent: int, cell: Cell, comp: int, sv: int,
                 myelin: bool = False) -> int:
        i = self.nodes.append(pos=pos, radius=radius, parent=parent, cell=cell.index, comp=comp,
                              myelin=myelin, sv=sv)
        self.path_nm.append(0.0 if parent < 0 else self.path_nm[parent] + float(
            np.linalg.norm(np.asarray(pos, float) - self.nodes["pos"][parent])))
        if parent >= 0:
            self.children[parent].append(i)
        elif cell.root < 0:
            cell.root = i
        return i

    def add_prim(self, a, b, ra: float, rb: float, cell: int, sv: int, comp: int, node_a: int,
                 node_b: int, myelin: bool = False, kind: int = SOLID, rin: float = 0.0) -> int:
        i = self.prims.append(a=a, b=b, ra=ra, rb=rb, rin=rin, kind=kind, cell=cell, sv=sv,
                              comp=comp, myelin=myelin, node_a=node_a, node_b=node_b)
        self.node_prims[node_a].append(i)
        if node_b != node_a:
            self.node_prims[node_b].append(i)
        lo, hi = self._cells_of(np.minimum(a, b) - max(ra, rb), np.maximum(a, b) + max(ra, rb))
        for key in _keys(lo, hi):
            self._grid[key].append(i)
        return i

    def kill_prim(self, i: int) -> None:
        """Remove a primitive from the collision grid and mark it DEAD (it is not drawn)."""
        P = self.prims
        a, b, r = P["a"][i], P["b"][i], max(P["ra"][i], P["rb"][i])
        lo, hi = self._cells_of(np.minimum(a, b) - r, np.maximum(a, b) + r)
        for key in _keys(lo, hi):
            lst = self._grid.get(key)
            if lst and i in lst:
                lst.remove(i)
        P.set("kind", i, DEAD)

    def _cells_of(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.floor(lo / self.grid_nm).astype(int), np.floor(hi / self.grid_nm).astype(int)

    def candidates(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Primitive ids whose (radius-grown) box may come within the box ``lo``-``hi``."""
        glo, ghi = self._cells_of(lo, hi)
        out: set[int] = set()
        for key in _keys(glo, ghi):
            got = self._grid.get(key)
            if got:
                out.update(got)
        return np.fromiter(sorted(out), np.int64, len(out))

    # --- queries ------------------------------------------------------------------------------
    def inside(self, p: np.ndarray, margin: float = 0.0) -> bool:
        return bool(np.all(p >= self.box_nm[0] + margin) and np.all(p <= self.box_nm[1] - margin))

    def near_nodes(self, node: int, hops: int) -> set[int]:
        """Nodes within ``hops`` tree edges of ``node`` (same cell)."""
        seen = {node}
        frontier = [node]
        parent = self.nodes["parent"]
        for _ in range(hops):
            nxt = []
            for u in frontier:
                nb = list(self.children.get(u, ()))
                if parent[u] >= 0:
                    nb.append(int(parent[u]))
                for v in nb:
                    if v not in seen:
                        seen.add(v)
                        nxt.append(v)
            frontier = nxt
        return seen

    def path_distance(self, node: int, others: np.ndarray) -> np.ndarray:
        """Path length (nm) along the tree from ``node`` to each of ``others`` (same cell).

        Nodes of another tree get ``inf``.
        """
        if self._ancestors[0] != node:
            anc: dict[int, float] = {}
            parent = self.nodes["parent"]
            u = node
            while u >= 0:
                anc[u] = self.path_nm[u]
                u = int(parent[u])
            self._ancestors = (node, anc)
        anc = self._ancestors[1]
        parent = self.nodes["parent"]
        out = np.full(len(others), np.inf)
        here = self.path_nm[node]
        for k, v in enumerate(np.asarray(others, np.int64).tolist()):
            u = v
            while u >= 0 and u not in anc:
                u = int(parent[u])
            if u >= 0:
                out[k] = here + self.path_nm[v] - 2.0 * anc[u]
        return out

    def _self_clear(self, a: np.ndarray, b: np.ndarray, ra: float, rb: float, node: int,
                    cand: np.ndarray, r_out: np.ndarray, kappa: float) -> bool:
        """Whether the cone ``a``-``b`` grown from ``node`` keeps clear of its own cell's
        primitives ``cand`` (outer radii ``r_out`` at their ends a, b: (M, 2)).

        Points of the cone and of a primitive whose path distance (through ``node`` and the
        tree) is at least ``kappa * (r1 + r2)`` must be ``r1 + r2 + SELF_GAP_NM`` apart; both
        are sampled every half of the thinner radius.
        """
        P = self.prims
        length = float(np.linalg.norm(b - a))
        k = int(np.clip(np.ceil(length / (0.5 * max(min(ra, rb), 1.0))), 1, 24))
        t = np.arange(1, k + 1) / k
        x = a[None, :] + t[:, None] * (b - a)[None, :]
        rx = ra + t * (rb - ra)
        tx = t * length
        na, nb = P["node_a"][cand], P["node_b"][cand]
        ua = self.path_distance(node, na)
        ub = self.path_distance(node, nb)
        for j in range(len(cand)):
            pa, pb = P["a"][cand[j]], P["b"][cand[j]]
            lj = float(np.linalg.norm(pb - pa))
            rmin = max(min(r_out[j, 0], r_out[j, 1]), 1.0)
            m = int(np.clip(np.ceil(lj / (0.5 * rmin)), 1, 24))
            s = np.arange(m + 1) / m
            y = pa[None, :] + s[:, None] * (pb - pa)[None, :]
            ry = r_out[j, 0] + s * (r_out[j, 1] - r_out[j, 0])
            uy = np.minimum(ua[j] + s * lj, ub[j] + (1.0 - s) * lj)
            rr = rx[:, None] + ry[None, :]
            far = tx[:, None] + uy[None, :] >= kappa * rr
            if not far.any():
                continue
            d = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=2)
            if np.any(far & (d < rr + SELF_GAP_NM)):
                return False
        return True

    def exempt_prims(self, node: int, hops: int = 3) -> set[int]:
        out: set[int] = set()
        for u in self.near_nodes(node, hops):
            out.update(self.node_prims.get(u, ()))
        return out

    def clear(
        self,
        a: np.ndarray,
        b: np.ndarray,
        ra: float,
        rb: float,
        cell: int,
        *,
        exempt: set[int] = frozenset(),  # type: ignore[assignment]
        gap: float = 0.0,
        allow_cells: dict[int, float] | None = None,
        allow_prims: dict[int, float] | None = None,
        max_overlap_frac: float = 0.5,
        grow_from: int | None = None,
        kappa: float = SELF_KAPPA,
    ) -> bool:
        """Whether a cone ``a``-``b`` with radii ``ra``, ``rb`` fits.

        Against other cells the axes must be ``>= r1 + r2 + gap`` apart (``gap`` may be negative
        down to ``-max_overlap_frac * min(r1, r2)``: touching), against the same cell (outside
        ``exempt``) ``>= r1 + r2 + 20 nm``. ``allow_cells`` / ``allow_prims`` give a larger
        designed overlap (synaptic contacts) for some cells or primitives. ``grow_from``: the
        cone is a cable growing from this node of ``cell``; its own cell is then checked by path
        length instead (points farther apart along the tree than ``kappa * (r1 + r2)`` keep
        ``r1 + r2 + 20 nm`` apart; ``exempt`` still applies).
        """
        r = max(ra, rb)
        reach = r + max(gap, 0.0) + 25.0
        cand = self.candidates(np.minimum(a, b) - reach, np.maximum(a, b) + reach)
        if len(cand) == 0:
            return True
        if exempt:
            cand = np.array([c for c in cand if c not in exempt], np.int64)
            if len(cand) == 0:
                return True
        P = self.prims
        if grow_from is not None:
            own = (P["cell"][cand] == cell) & (P["kind"][cand] != DEAD)
            if own.any():
                oc = cand[own]
                shell = (P["kind"][oc] == MYELIN_SHELL)[:, None]
                r_out = np.where(shell, np.maximum(P["ra"][oc], P["rb"][oc])[:, None],
                                 np.stack([P["ra"][oc], P["rb"][oc]], 1))
                if not self._self_clear(np.asarray(a, float), np.asarray(b, float), ra, rb,
                                        grow_from, oc, r_out, kappa):
                    return False
                cand = cand[~own]
                if len(cand) == 0:
                    return True
        pa, pb = P["a"][cand], P["b"][cand]
        dist, s, t = segment_segment(np.asarray(a, float), np.asarray(b, float), pa, pb)
        r_self = ra + s * (rb - ra)
        kind = P["kind"][cand]
        r_other = np.where(kind == MYELIN_SHELL, np.maximum(P["ra"][cand], P["rb"][cand]),
                           P["ra"][cand] + t * (P["rb"][cand] - P["ra"][cand]))
        other_cell = P["cell"][cand]
        same = other_cell == cell
        g = np.maximum(gap, -max_overlap_frac * np.minimum(r_self, r_other))
        need = r_self + r_other + np.where(same, 20.0, g)
        if allow_cells:
            for c, ov in allow_cells.items():
                m = other_cell == c
                need[m] = np.minimum(need[m], r_self[m] + r_other[m] - ov)
        if allow_prims:
            for c, ov in allow_prims.items():
                m = cand == c
                need[m] = r_self[m] + r_other[m] - ov
        return bool(np.all(dist >= need))

    def nearest_on(self, p: np.ndarray, radius: float, cells_exclude: int, comps: set[int],
                   cell_types: set[str] | None = None) -> list[tuple[float, int, float]]:
        """Primitives of other cells with compartment in ``comps`` whose axis is within ``radius``.

        Returns ``(distance_to_axis, prim, t)`` sorted by distance.
        """
        cand = self.candidates(p - radius, p + radius)
        if len(cand) == 0:
            return []
        P = self.prims
        keep = (P["cell"][cand] != cells_exclude) & np.isin(P["comp"][cand], list(comps)) & (
            P["kind"][cand] == SOLID
        )
        if cell_types is not None:
            keep &= np.array([self.cells[c].type in cell_types for c in P["cell"][cand]], bool)
        cand = cand[keep]
        if len(cand) == 0:
            return []
        d, t = point_segment(p, P["a"][cand], P["b"][cand])
        order = np.argsort(d, kind="stable")
        return [(float(d[i]), int(cand[i]), float(t[i])) for i in order if d[i] <= radius]

    def prim_radius_at(self, prim: int, t: float) -> float:
        P = self.prims
        return float(P["ra"][prim] + t * (P["rb"][prim] - P["ra"][prim]))

    def prim_point(self, prim: int, t: float) -> np.ndarray:
        P = self.prims
        return P["a"][prim] + t * (P["b"][prim] - P["a"][prim])


def _keys(lo: np.ndarray, hi: np.ndarray):
    for i in range(lo[0], hi[0] + 1):
        for j in range(lo[1], hi[1] + 1):
            for k in range(lo[2], hi[2] + 1):
                yield (i, j, k)


def unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return unit(v)


def perpendicular(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random unit vector perpendicular to ``d``."""
    v = rng.normal(size=3)
    v -= (v @ d) * d
    return unit(v)


COMP_NAMES = cp.NAMES
