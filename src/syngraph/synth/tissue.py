"""Build the global geometry of the demo tissue (cells, synapses, organelles) for one seed.

:func:`build_tissue` is pure: ``(shape_xyz, voxel_size_nm, seed, params) -> Tissue``, a bundle of
small numpy arrays (primitives, skeleton nodes, organelles, synapses) that the rasteriser draws
block by block. The order of construction is fixed (so a seed gives the same tissue):

1. somata (spheres; cut by the border in small volumes, inside from 512^3 on);
2. dendrites from somata and dendrites entering through the border (spiny or smooth);
3. myelinated axons, excitatory, inhibitory and modulatory axons entering through the border;
4. synapses: en-passant boutons that touch a dendritic shaft or soma, boutons reached by a new
   spine of a spiny dendrite, terminal boutons at the end of a short axon branch;
5. free spines, modulatory varicosities, tiny border fragments, astrocytes (filling gaps, allowed
   to press a little into neurons);
6. organelles: mitochondria in dendrites, somata, boutons and myelinated axons, vesicle clouds in
   boutons, synaptic junction discs, and false-positive speckle for the probability maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from syngraph import compartments as cp
from syngraph.synth.geometry import (
    MYELIN_SHELL,
    SOLID,
    Cell,
    Scene,
    perpendicular,
    random_unit,
    segment_segment,
    unit,
)
from syngraph.synth.params import SynthParams

NEURON_TYPES = ("excitatory", "inhibitory", "modulatory")
CELL_TYPES = ("excitatory", "inhibitory", "modulatory", "astrocyte")


@dataclass
class Tissue:
    """The frozen geometry: every array is small (O(primitives)), all lengths in nm."""

    shape_xyz: tuple[int, int, int]
    voxel_size_nm: tuple[float, float, float]
    seed: int
    expansion_nm: float
    prims: dict[str, np.ndarray]  # a, b, ra, rb, rin, kind, cell, sv, comp, myelin, node_a, node_b
    nodes: dict[str, np.ndarray]  # pos, radius, parent, cell, comp, myelin, sv
    cells: dict[str, np.ndarray]  # type (int8 index into CELL_TYPES), fragment, n_sv, anchor_sv, soma xyz/r
    soma_seeds: dict[str, np.ndarray]  # prim, pos, sv
    organelles: dict[str, dict[str, np.ndarray]]  # mi / vc / sj: a, b, r, h, kind, cell, value
    synapses: dict[str, np.ndarray]
    speckle: dict[str, np.ndarray]  # layer (0 mi, 1 vc, 2 sj), pos, r, peak
    astrocyte_fill_nm: float = 0.0  # astrocytes own free space up to this distance (lamellae)
    astrocyte_fill: str = "nearest"  # or "geodesic" (see SynthParams.astrocyte_fill)

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {
            "meta_shape": np.array(self.shape_xyz, np.int64),
            "meta_vs": np.array(self.voxel_size_nm, np.float64),
            "meta_seed": np.array(self.seed, np.int64),
            "meta_expansion": np.array(self.expansion_nm, np.float64),
            "meta_astrocyte_fill": np.array(self.astrocyte_fill_nm, np.float64),
            "meta_astrocyte_fill_geodesic": np.array(self.astrocyte_fill == "geodesic"),
        }
        for group in ("prims", "nodes", "cells", "soma_seeds", "synapses", "speckle"):
            for k, v in getattr(self, group).items():
                out[f"{group}__{k}"] = v
        for layer, cols in self.organelles.items():
            for k, v in cols.items():
                out[f"organelles__{layer}__{k}"] = v
        return out

    @classmethod
    def from_npz_dict(cls, d: Any) -> Tissue:
        groups: dict[str, dict[str, np.ndarray]] = {
            g: {} for g in ("prims", "nodes", "cells", "soma_seeds", "synapses", "speckle")
        }
        org: dict[str, dict[str, np.ndarray]] = {}
        for key in d.keys():
            if key.startswith("meta_"):
                continue
            parts = key.split("__")
            if parts[0] == "organelles":
                org.setdefault(parts[1], {})[parts[2]] = np.asarray(d[key])
            else:
                groups[parts[0]][parts[1]] = np.asarray(d[key])
        return cls(
            shape_xyz=tuple(int(v) for v in d["meta_shape"]),  # type: ignore[arg-type]
            voxel_size_nm=tuple(float(v) for v in d["meta_vs"]),  # type: ignore[arg-type]
            seed=int(d["meta_seed"]),
            expansion_nm=float(d["meta_expansion"]),
            astrocyte_fill_nm=float(d["meta_astrocyte_fill"]) if "meta_astrocyte_fill" in d else 0.0,
            astrocyte_fill="geodesic" if "meta_astrocyte_fill_geodesic" in d and bool(d["meta_astrocyte_fill_geodesic"]) else "nearest",
            organelles=org,
            **groups,  # type: ignore[arg-type]
        )


class _Builder:
    def __init__(self, shape_xyz, voxel_size_nm, seed: int, params: SynthParams):
        self.shape = np.array(shape_xyz, np.int64)
        self.vs = np.array(voxel_size_nm, np.float64)
        self.p = params
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E7C]))
        hi = (self.shape - 1) * self.vs
        self.scene = Scene(np.stack([np.zeros(3), hi]))
        self.size_um = hi / 1000.0
        self.volume_um3 = float(np.prod(self.shape * self.vs) / 1e9)
        dims = self.shape * self.vs / 1000.0
        self.surface_um2 = float(2 * (dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2]))
        self.chord_um = 4 * self.volume_um3 / self.surface_um2
        self.soma_seeds: list[tuple[int, np.ndarray, int]] = []
        self.synapses: list[dict[str, Any]] = []
        self.boutons: list[dict[str, Any]] = []  # vc hosts: prim, node, cell, contact dir, synapse
        self.spine_heads: list[int] = []
        self.sites: list[dict[str, Any]] = []
        self.astro: list[list[Any]] = []

    # ---------------------------------------------------------------- helpers
    def u(self, r) -> float:
        return float(self.rng.uniform(r[0], r[1]))

    def n_cables(self, frac: float, r_range) -> int:
        r_um = np.mean(r_range) / 1000.0
        expect = frac * self.volume_um3 / (np.pi * r_um**2 * self.chord_um)
        base = int(np.floor(expect))
        return base + int(self.rng.random() < expect - base)

    def entry(self) -> tuple[np.ndarray, np.ndarray]:
        """A random point on the volume's surface (area-weighted) and an inward direction."""
        dims = self.scene.box_nm[1]
        areas = np.array([dims[1] * dims[2], dims[0] * dims[2], dims[0] * dims[1]])
        axis = int(self.rng.choice(3, p=areas / areas.sum()))
        side = int(self.rng.integers(2))
        p = self.rng.uniform(0.05, 0.95, 3) * dims
        inset = self.vs[axis] * 0.6
        p[axis] = inset if side == 0 else dims[axis] - inset
        normal = np.zeros(3)
        normal[axis] = 1.0 if side == 0 else -1.0
        d = unit(normal + self.rng.normal(0, 0.55, 3))
        if d @ normal < 0.35:
            d = unit(d + normal)
        return p, d

    # ---------------------------------------------------------------- growth
    def grow(
        self,
        cell: Cell,
        node: int,
        direction: np.ndarray,
        radius: float,
        sv: int,
        *,
        comp: int,
        seg_nm: float,
        sigma: float,
        r_min: float,
        taper_per_um: float = 0.0,
        branch_per_um: float = 0.0,
        branch_factor: float = 0.75,
        max_len_nm: float = 1e12,
        gap: float = 0.0,
        max_overlap_frac: float = 0.5,
        jitter: float = 0.0,
        shell_nm: float = 0.0,
        attempts: int = 8,
        max_total_nm: float | None = None,
        on_node=None,
    ) -> float:
        """Grow a cable (and its branches) from ``node``; returns the cable length added.

        Each step lays ``bend_substeps`` pieces of ``seg_nm`` (:meth:`arc`); ``taper_per_um``,
        ``branch_per_um`` and the cable length count the whole step."""
        rng, scene, N = self.rng, self.scene, self.scene.nodes
        step = seg_nm * self.p.bend_substeps
        stack = [(node, unit(direction), radius, sv, 0.0, self.u(self.p.sv_stretch_nm), 0.0)]
        total = 0.0
        while stack:
            node, d, r, sv, acc, target, length = stack.pop()
            while length < max_len_nm:
                if max_total_nm is not None and total >= max_total_nm:
                    return total
                p = N["pos"][node]
                ok = False
                for attempt in range(attempts):
                    sig = sigma * (1.0 + 0.8 * attempt)
                    nd = unit(d + rng.normal(0.0, sig, 3))
                    r_new = max(r_min, r * (1.0 - taper_per_um * step / 1000.0))
                    if jitter:
                        r_new = float(np.clip(r_new * (1.0 + jitter * rng.normal()), r_min, 2.5 * r_min))
                    pts, radii = self.arc(p, d, nd, seg_nm), self.arc_radii(r, r_new)
                    # clear of other cells, and of its own cell wherever that is far along the
                    # tree (a cable never folds back into its own lumen)
                    if all(scene.clear(a, q, ra + shell_nm, rb + shell_nm, cell.index, grow_from=node,
                                       gap=gap, max_overlap_frac=max_overlap_frac)
                           for a, q, ra, rb in zip([p, *pts[:-1]], pts, radii[:-1], radii[1:], strict=True)):
                        ok = True
                        break
                if not ok:
                    break
                acc += step
                if acc > target:
                    sv, acc, target = self.scene.new_sv(cell), 0.0, self.u(self.p.sv_stretch_nm)
                myelin = shell_nm > 0
                a, child = p, node
                for q, ra, rb in zip(self.inside_prefix(pts), radii[:-1], radii[1:], strict=False):
                    parent, child = child, scene.add_node(q, rb, child, cell, comp, sv, myelin=myelin)
                    scene.add_prim(a, q, ra, rb, cell.index, sv, comp, parent, child, myelin=myelin)
                    if shell_nm > 0:
                        scene.add_prim(a, q, ra + shell_nm, rb + shell_nm, cell.index, sv, cp.UNKNOWN,
                                       parent, child, myelin=True, kind=MYELIN_SHELL, rin=ra)
                    if on_node is not None and scene.inside(q):
                        on_node(cell, child)
                    a = q
                total += step
                length += step
                node, d, r = child, nd, r_new
                if not scene.inside(a):
                    break
                if branch_per_um and rng.random() < branch_per_um * step / 1000.0:
                    ang = rng.uniform(0.6, 1.3)
                    bd = unit(np.cos(ang) * d + np.sin(ang) * perpendicular(d, rng))
                    # the branch starts in its parent's supervoxel (a branch point never splits
                    # a supervoxel) and gets its own one after a stretch
                    stack.append((node, bd, max(r_min, r * branch_factor), sv, 0.0,
                                  self.u(self.p.sv_stretch_nm), length))
        return total

    def arc(self, p: np.ndarray, d: np.ndarray, nd: np.ndarray, seg_nm: float) -> list[np.ndarray]:
        """The ends of one growth step from ``p``: ``bend_substeps`` pieces of ``seg_nm`` whose
        direction turns from ``d`` to ``nd`` in equal angles (slerp), so a turn by angle a bends
        with radius ``bend_substeps * seg_nm / a``; one straight piece along ``nd`` by default."""
        k = self.p.bend_substeps
        if k == 1:
            return [p + nd * seg_nm]
        if d @ nd < -0.999999:  # a U-turn: bend through a fixed perpendicular
            e = np.zeros(3)
            e[int(np.argmin(np.abs(d)))] = 1.0
            mid = unit(np.cross(d, e))
            dirs = [_slerp(d, mid, 2 * i / k) if 2 * i <= k else _slerp(mid, nd, 2 * i / k - 1)
                    for i in range(1, k + 1)]
        else:
            dirs = [_slerp(d, nd, i / k) for i in range(1, k + 1)]
        return list(p + np.cumsum(np.array(dirs) * seg_nm, axis=0))

    def arc_radii(self, r: float, r_new: float) -> list[float]:
        """The radii at the ends of :meth:`arc`'s pieces (``r`` first), linear along the step."""
        k = self.p.bend_substeps
        return [r, *(r + (r_new - r) * i / k for i in range(1, k)), r_new]

    def inside_prefix(self, pts: list[np.ndarray]) -> list[np.ndarray]:
        """``pts`` up to and with the first one outside the volume (a cable stops where it leaves)."""
        for i, q in enumerate(pts):
            if not self.scene.inside(q):
                return pts[: i + 1]
        return pts

    def entering_cell(self, type_: str, r: float, *, comp: int, shell_nm: float = 0.0,
                      gap: float = 0.0, tries: int = 30, fragment: bool = False,
                      max_overlap_frac: float = 0.5) -> tuple[Cell, int, np.ndarray] | None:
        """Create a cell whose root lies on the volume surface, if a free entry point is found."""
        for _ in range(tries):
            p, d = self.entry()
            q = p + d * 300.0
            if self.scene.clear(p, q, r + shell_nm, r + shell_nm, -1, gap=gap,
                                max_overlap_frac=max_overlap_frac):
                cell = self.scene.new_cell(type_, fragment=fragment)
                sv = self.scene.new_sv(cell)
                cell.anchor_sv = sv
                root = self.scene.add_node(p, r, -1, cell, comp, sv, myelin=shell_nm > 0)
                return cell, root, d
        return None

    # ---------------------------------------------------------------- 1. somata
    def somata(self) -> None:
        P = self.p
        big = bool(np.all(self.shape * self.vs >= 5000.0))
        n = self.rng.poisson(P.somata_per_1000um3 * self.volume_um3 / 1000.0)
        n_inside = max(1, int(n)) if big else 0
        n_cut = 0 if big else int(self.rng.random() < 0.5)
        dims = self.scene.box_nm[1]
        placed = 0
        for k in range(n_inside + n_cut):
            inside = k < n_inside
            for _ in range(40):
                rs = self.u(P.soma_r_nm)
                if inside:
                    c = self.rng.uniform(0.2, 0.8, 3) * dims
                else:
                    c = self.rng.uniform(0.0, 1.0, 3) * dims
                    axis = int(self.rng.integers(3))
                    depth = dims[axis] * self.rng.uniform(0.12, 0.25)  # how far it reaches in
                    c[axis] = depth - rs if self.rng.random() < 0.5 else dims[axis] - depth + rs
                if not self.scene.clear(c, c, rs, rs, -1, gap=300.0):
                    continue
                self.add_soma(c, rs)
                placed += 1
                break

    def add_soma(self, c: np.ndarray, rs: float) -> None:
        P, rng, scene = self.p, self.rng, self.scene
        type_ = "excitatory" if rng.random() < 0.75 else "inhibitory"
        cell = scene.new_cell(type_)
        cell.soma_center_nm = tuple(float(v) for v in c)
        cell.soma_radius_nm = rs
        # supervoxel pieces: Voronoi cells of seeds inside the soma; the first lies in the volume
        lo, hi = scene.box_nm
        anchor = np.clip(c, lo + 3 * self.vs, hi - 3 * self.vs)
        towards = anchor - c
        dist = float(np.linalg.norm(towards))
        if dist > 0.5 * rs:
            anchor = c + towards / dist * 0.5 * rs
            if not scene.inside(anchor):
                anchor = np.clip(anchor, lo, hi)
        k = int(rng.integers(P.soma_sv_pieces[0], P.soma_sv_pieces[1] + 1))
        seeds = [anchor]
        while len(seeds) < k:
            s = c + random_unit(rng) * rs * rng.uniform(0.2, 0.7)
            seeds.append(s)
        sv0 = scene.new_sv(cell)
        cell.anchor_sv = sv0
        root = scene.add_node(c, rs, -1, cell, cp.SOMA, sv0)
        prim = scene.add_prim(c, c, rs, rs, cell.index, sv0, cp.SOMA, root, root)
        cell.soma_prim = prim
        for i, s in enumerate(seeds):
            self.soma_seeds.append((prim, s, sv0 if i == 0 else scene.new_sv(cell)))
        # primary dendrites and one axon, starting on the surface inside the volume
        n_dend = int(rng.integers(P.primary_dendrites[0], P.primary_dendrites[1] + 1))
        spiny = type_ == "excitatory"
        started = 0
        for _attempt in range(n_dend * 6):
            if started > n_dend:
                break
            d = random_unit(rng)
            is_axon = started == 0
            start = c + d * (rs - 60.0)
            if not scene.inside(start, margin=200.0):
                continue
            r0 = self.u(P.soma_dendrite_r_nm) if not is_axon else 250.0
            if not scene.clear(start, start + d * 300, r0, r0, cell.index,
                               exempt=set(scene.node_prims[root])):
                continue
            sv = scene.new_sv(cell)
            comp = cp.AXON if is_axon else cp.SHAFT
            n0 = scene.add_node(start, r0, root, cell, comp, sv)
            if is_axon:
                self.grow(cell, n0, d, r0, sv, comp=cp.AXON, seg_nm=250.0, sigma=0.15,
                          r_min=self.u(P.excitatory_axon_r_nm if spiny else P.inhibitory_axon_r_nm),
                          taper_per_um=0.35, branch_per_um=P.axon_branch_per_um)
            else:
                self.grow(cell, n0, d, r0, sv, comp=cp.SHAFT, seg_nm=350.0, sigma=0.12,
                          r_min=P.dendrite_r_min_nm, taper_per_um=0.12,
                          branch_per_um=P.dendrite_branch_per_um * 2)
            started += 1

    # ---------------------------------------------------------------- 2./3. cables
    def cables(self) -> None:
        P = self.p
        plan = [
            ("excitatory", "dendrite", self.n_cables(P.spiny_dendrite_frac, P.spiny_dendrite_r_nm), P.spiny_dendrite_r_nm),
            ("inhibitory", "dendrite", self.n_cables(P.smooth_dendrite_frac, P.smooth_dendrite_r_nm), P.smooth_dendrite_r_nm),
            ("excitatory", "myelinated", self.n_cables(P.myelinated_axon_frac, np.add(P.myelinated_axon_r_nm, np.mean(P.myelin_thickness_nm))), P.myelinated_axon_r_nm),
            ("excitatory", "axon", self.n_cables(P.excitatory_axon_frac, P.excitatory_axon_r_nm), P.excitatory_axon_r_nm),
            ("inhibitory", "axon", self.n_cables(P.inhibitory_axon_frac, P.inhibitory_axon_r_nm), P.inhibitory_axon_r_nm),
            ("modulatory", "axon", self.n_cables(P.modulatory_axon_frac, P.modulatory_axon_r_nm), P.modulatory_axon_r_nm),
        ]
        # at least one spiny and one smooth dendrite and a few axons of every kind
        mins = {("excitatory", "dendrite"): 1, ("inhibitory", "dendrite"): 1,
                ("excitatory", "axon"): 4, ("inhibitory", "axon"): 3, ("modulatory", "axon"): 1}
        max_len = 3.0 * float(np.linalg.norm(self.scene.box_nm[1]))
        jobs = []
        for type_, kind, n, r_range in plan:
            n = max(n, mins.get((type_, kind), 0))
            jobs.append([(type_, kind, r_range)] * n)
        # dendrites, then free spines, then myelinated axons, then the other axons interleaved
        axons = [j for group in jobs[3:] for j in group]
        axons = [axons[i] for i in self.rng.permutation(len(axons))]
        ordered = jobs[0] + jobs[1] + [("spines", "", (0, 0))] + jobs[2] + axons
        for type_, kind, r_range in ordered:
            if type_ == "spines":
                self.free_spines()
                self.synapse_sites()
                self.astrocytes(0.5)
                continue
            if True:
                r = self.u(r_range)
                if kind == "dendrite":
                    got = self.entering_cell(type_, r, comp=cp.SHAFT)
                    if got is None:
                        continue
                    cell, root, d = got
                    self.grow(cell, root, d, r, cell.anchor_sv, comp=cp.SHAFT, seg_nm=350.0,
                              sigma=0.12, r_min=P.dendrite_r_min_nm,
                              taper_per_um=P.dendrite_taper_per_um,
                              branch_per_um=P.dendrite_branch_per_um, max_len_nm=max_len)
                elif kind == "myelinated":
                    shell = self.u(P.myelin_thickness_nm)
                    got = self.entering_cell(type_, r, comp=cp.AXON, shell_nm=shell)
                    if got is None:
                        continue
                    cell, root, d = got
                    self.grow(cell, root, d, r, cell.anchor_sv, comp=cp.AXON, seg_nm=400.0,
                              sigma=0.05, r_min=r, shell_nm=shell, max_len_nm=max_len)
                else:
                    got = self.entering_cell(type_, r, comp=cp.AXON)
                    if got is None:
                        continue
                    cell, root, d = got
                    sigma = 0.3 if type_ == "modulatory" else 0.18
                    self.grow_axon(cell, root, d, r, sigma=sigma, max_len_nm=max_len)
        for site in self.sites:
            if not site["claimed"]:
                self.scene.kill_prim(site["prim"])

    # ---------------------------------------------------------------- 4. synapses
    def synapse_sites(self) -> None:
        """Reserve synapse sites on the dendrites before the axons grow.

        A site is a bouton sphere (not yet owned by any cell) pressing on a new spine head, a
        dendritic shaft or a soma. Axons then grow through the sites (:meth:`grow_axon`); a site
        that no axon reaches is removed again (its spine stays, as a spine without a partner).
        """
        P, rng, scene = self.p, self.rng, self.scene
        N, Pr = scene.nodes, scene.prims
        n_sites = rng.poisson(P.synapses_per_um3 * self.volume_um3 * 1.4)
        shafts = np.flatnonzero((Pr["comp"] == cp.SHAFT) & (Pr["kind"] == SOLID))
        somata = np.flatnonzero(Pr["comp"] == cp.SOMA)
        if len(shafts) == 0:
            return
        length = np.linalg.norm(Pr["b"][shafts] - Pr["a"][shafts], axis=1)
        spiny = np.array([scene.cells[c].type == "excitatory" for c in Pr["cell"][shafts]])
        weight = length * (Pr["ra"][shafts] + Pr["rb"][shafts]) * np.where(spiny, 2.5, 1.0)
        weight = weight / weight.sum()
        tries = 0
        made = 0
        while made < n_sites and tries < 30 * max(n_sites, 1):
            tries += 1
            use_soma = len(somata) and rng.random() < 0.08
            prim = int(somata[rng.integers(len(somata))]) if use_soma else int(rng.choice(shafts, p=weight))
            post = scene.cells[int(Pr["cell"][prim])]
            if post.fragment:
                continue
            t = float(rng.uniform(0.1, 0.9)) if not use_soma else 0.0
            q = scene.prim_point(prim, t)
            r_post = scene.prim_radius_at(prim, t)
            axis = unit(Pr["b"][prim] - Pr["a"][prim]) if not use_soma else random_unit(rng)
            n = perpendicular(axis, rng) if not use_soma else axis
            rb = self.u(P.bouton_r_nm)
            delta = self.u(P.contact_overlap_nm)
            spiny = post.type == "excitatory" and not use_soma
            if spiny and rng.random() < P.spine_synapse_frac:
                # a new spine from the nearest node, its head touched by the bouton
                base = int(Pr["node_a"][prim] if t < 0.5 else Pr["node_b"][prim])
                bpos, r_base = N["pos"][base], float(N["radius"][base])
                if not scene.inside(bpos):
                    continue
                rh, rn = self.u(P.spine_head_r_nm), self.u(P.spine_neck_r_nm)
                ln = self.u(P.spine_neck_len_nm)
                surf = bpos + n * r_base
                head = surf + n * (ln + rh)
                neck_end = head - n * rh * 0.5
                c = head + n * (rh + rb - delta)
                if not (scene.inside(c, margin=60.0) and scene.inside(head) and scene.inside(surf)):
                    continue
                dexempt = scene.exempt_prims(base, 3)
                if not (scene.clear(surf, neck_end, rn, rn, post.index, exempt=dexempt, gap=10.0)
                        and scene.clear(head, head, rh, rh, post.index, exempt=dexempt, gap=10.0)
                        and scene.clear(c, c, rb, rb, -2, gap=10.0,
                                        allow_cells={post.index: delta + 2.0})):
                    continue
                head_prim = self.add_spine(post, base, surf, neck_end, head, rn, rh)
                bp = scene.add_prim(c, c, rb, rb, -2, 0, cp.BOUTON, -1, -1)
                self.sites.append(dict(prim=bp, center=c, rb=rb, post=post, post_prim=head_prim,
                                       q=head, r_post=rh, n=n, comp_post=cp.SPINE_HEAD,
                                       accept={"excitatory"}, claimed=False,
                                       post_node=int(Pr["node_b"][head_prim])))
            else:
                c = q + n * (r_post + rb - delta)
                if not scene.inside(c, margin=60.0):
                    continue
                if not scene.clear(c, c, rb, rb, -2, gap=10.0, allow_cells={post.index: delta + 2.0}):
                    continue
                bp = scene.add_prim(c, c, rb, rb, -2, 0, cp.BOUTON, -1, -1)
                if use_soma:
                    accept = {"inhibitory"}
                elif post.type == "excitatory":
                    accept = {"inhibitory"} if rng.random() < 0.7 else {"excitatory"}
                else:
                    accept = {"excitatory", "inhibitory"}
                if rng.random() < 0.08:
                    accept = {"modulatory"}
                self.sites.append(dict(prim=bp, center=c, rb=rb, post=post, post_prim=prim, q=q,
                                       r_post=r_post, n=n,
                                       comp_post=cp.SOMA if use_soma else cp.SHAFT, accept=accept,
                                       claimed=False, post_node=int(Pr["node_b"][prim])))
            made += 1

    def _pick_site(self, cell: Cell, p: np.ndarray, d: np.ndarray, failed: set[int]) -> dict | None:
        best, best_d = None, 3200.0
        for k, site in enumerate(self.sites):
            if site["claimed"] or k in failed or cell.type not in site["accept"]:
                continue
            if site["post"].index == cell.index:
                continue
            v = site["center"] - p
            dist = float(np.linalg.norm(v))
            if dist < best_d and dist > 1.0 and (v @ d) / dist > 0.25:
                best, best_d = k, dist
        return None if best is None else {"k": best, "dist0": best_d}

    def grow_axon(self, cell: Cell, node: int, d: np.ndarray, r: float, *, sigma: float,
                  max_len_nm: float, seg_nm: float = 250.0) -> None:
        """Grow an axon that steers through free synapse sites and claims them as boutons."""
        P, rng, scene = self.p, self.rng, self.scene
        N = scene.nodes
        sv, acc, target_len = cell.anchor_sv, 0.0, self.u(P.sv_stretch_nm)
        failed: set[int] = set()
        tgt: dict | None = None
        length, since = 0.0, 0
        d = unit(d)
        step = seg_nm * P.bend_substeps
        while length < max_len_nm:
            p = N["pos"][node].copy()
            if tgt is None:
                tgt = self._pick_site(cell, p, d, failed)
                since = 0
            exempt: set[int] = set()
            bias = None
            if tgt is not None:
                site = self.sites[tgt["k"]]
                exempt = {site["prim"]}
                v = site["center"] - p
                dist = float(np.linalg.norm(v))
                if dist <= seg_nm * 1.3:
                    c = site["center"]
                    if scene.clear(p, c, r, r, cell.index, exempt=exempt, grow_from=node):
                        node = self._claim(cell, node, site, sv, r)
                        acc += dist
                        length += dist
                        failed.add(tgt["k"])
                        tgt = None
                        continue
                    failed.add(tgt["k"])
                    tgt = None
                    continue
                bias = v / dist
                since += 1
                if since > 4 + int(3 * tgt["dist0"] / seg_nm):
                    failed.add(tgt["k"])
                    tgt = None
                    continue
            ok = False
            for attempt in range(8):
                sig = sigma * (1.0 + 0.8 * attempt)
                base = d if bias is None else unit(0.35 * d + 0.65 * bias)
                nd = unit(base + rng.normal(0.0, sig, 3))
                pts = self.arc(p, d, nd, seg_nm)
                if all(scene.clear(a, q, r, r, cell.index, exempt=exempt, grow_from=node)
                       for a, q in zip([p, *pts[:-1]], pts, strict=True)):
                    ok = True
                    break
            if not ok:
                if tgt is not None:
                    failed.add(tgt["k"])
                    tgt = None
                    continue
                return
            acc += step
            if acc > target_len:
                sv, acc, target_len = scene.new_sv(cell), 0.0, self.u(P.sv_stretch_nm)
            # stop where the site comes within reach (claimed next round; the step still counts whole)
            if tgt is not None:
                near = [float(np.linalg.norm(self.sites[tgt["k"]]["center"] - q)) <= seg_nm * 1.3 for q in pts]
                pts = pts[: near.index(True) + 1] if True in near else pts
            a = p
            for q in self.inside_prefix(pts):
                parent, node = node, scene.add_node(q, r, node, cell, cp.AXON, sv)
                scene.add_prim(a, q, r, r, cell.index, sv, cp.AXON, parent, node)
                if tgt is None and scene.inside(q):
                    self.on_axon_node(cell, node)
                a, b = q, a
            d = nd if len(pts) == P.bend_substeps else unit(a - b)  # a cut arc goes on as it ends
            length += step
            if not scene.inside(a):
                return
            if rng.random() < P.axon_branch_per_um * step / 1000.0:
                ang = rng.uniform(0.6, 1.3)
                bd = unit(np.cos(ang) * d + np.sin(ang) * perpendicular(d, rng))
                self.grow(cell, node, bd, r * 0.9, sv, comp=cp.AXON, seg_nm=seg_nm, sigma=sigma,
                          r_min=r * 0.8, max_len_nm=max_len_nm / 2, on_node=self.on_axon_node)

    def _claim(self, cell: Cell, node: int, site: dict, sv: int, r: float) -> int:
        """The axon reaches a site: a bouton node at its centre owns the bouton sphere."""
        scene = self.scene
        N, Pr = scene.nodes, scene.prims
        c, rb, bp = site["center"], site["rb"], site["prim"]
        child = scene.add_node(c, rb, node, cell, cp.BOUTON, sv)
        scene.add_prim(N["pos"][node], c, r, r, cell.index, sv, cp.AXON, node, child)
        for key, val in (("cell", cell.index), ("sv", sv), ("node_a", child), ("node_b", child)):
            Pr.set(key, bp, val)
        scene.node_prims[child].append(bp)
        site["claimed"] = True
        self.add_synapse(cell, site["post"], bp, site["post_prim"], site["q"], site["r_post"], c,
                         rb, unit(c - site["q"]), site["comp_post"], cp.BOUTON, child,
                         site["post_node"])
        return child

    def on_axon_node(self, cell: Cell, node: int) -> None:
        """Called for every new axon node while the axon grows: maybe make a bouton here."""
        P, scene = self.p, self.scene
        N = scene.nodes
        if cell.fragment or not scene.inside(N["pos"][node], margin=300.0):
            return
        # path length since the last bouton, walking up the tree
        acc, u = 0.0, node
        while True:
            par = int(N["parent"][u])
            if par < 0 or N["comp"][u] in (cp.BOUTON, cp.TERMINAL_BOUTON) and u != node:
                break
            acc += float(np.linalg.norm(N["pos"][u] - N["pos"][par]))
            u = par
            if acc >= P.min_bouton_spacing_nm:
                break
        if acc < P.min_bouton_spacing_nm and int(N["parent"][u]) >= 0:
            return
        if not self.try_synapse(cell, node) and self.rng.random() < 0.5:
            self.try_terminal(cell, node)

    def synapses_pass(self) -> None:
        P, rng, scene = self.p, self.rng, self.scene
        N = scene.nodes
        axon_cells = [c for c in scene.cells if c.type in NEURON_TYPES]
        n_nodes = N.n
        order = np.arange(n_nodes)
        last_bouton: dict[int, float] = {}
        dist_root = self._path_lengths()
        for i in order:
            i = int(i)
            if i >= n_nodes:
                break
            if N["comp"][i] != cp.AXON or N["myelin"][i] or N["parent"][i] < 0:
                continue
            cell = scene.cells[int(N["cell"][i])]
            if cell not in axon_cells or cell.fragment:
                continue
            p = N["pos"][i].copy()
            if not scene.inside(p, margin=300.0):
                continue
            key = cell.index
            if abs(dist_root[i] - last_bouton.get(key, -1e9)) < P.min_bouton_spacing_nm:
                continue
            made = self.try_synapse(cell, i)
            if made:
                last_bouton[key] = dist_root[i]
        # terminal boutons: short branches from axons towards shafts and somata
        for i in range(n_nodes):
            if N["comp"][i] != cp.AXON or N["myelin"][i] or N["parent"][i] < 0:
                continue
            cell = scene.cells[int(N["cell"][i])]
            if cell.type not in NEURON_TYPES or cell.fragment:
                continue
            if abs(dist_root[i] - last_bouton.get(cell.index, -1e9)) < P.min_bouton_spacing_nm:
                continue
            if rng.random() > 0.25:
                continue
            if self.try_terminal(cell, i):
                last_bouton[cell.index] = dist_root[i]

    def _path_lengths(self) -> np.ndarray:
        N = self.scene.nodes
        out = np.zeros(N.n)
        for i in range(N.n):
            par = N["parent"][i]
            if par >= 0:
                out[i] = out[par] + float(np.linalg.norm(N["pos"][i] - N["pos"][par]))
        return out

    def try_synapse(self, cell: Cell, node: int) -> bool:
        """Try to make an en-passant bouton at axon ``node`` that touches a shaft, soma or spine.

        The bouton is a sphere whose centre may sit off the axon's axis towards the partner (a
        varicosity bulging to one side), by up to ``rb - r_axon`` towards and ``rb / 2`` away.
        """
        P, rng, scene = self.p, self.rng, self.scene
        N = scene.nodes
        p = N["pos"][node].copy()
        r_ax = float(N["radius"][node])
        exempt = scene.exempt_prims(node, 3)
        options = scene.nearest_on(p, 2600.0, cell.index, {cp.SHAFT, cp.SOMA})
        rng.shuffle(options)  # type: ignore[arg-type]
        t_ = cell.type
        for dist, prim, t in options[:10]:
            post_cell = scene.cells[int(scene.prims["cell"][prim])]
            if post_cell.type == "astrocyte" or post_cell.fragment:
                continue
            r_post = scene.prim_radius_at(prim, t)
            q = scene.prim_point(prim, t)
            delta = self.u(P.contact_overlap_nm)
            rb = self.u(P.bouton_r_nm)
            spiny = post_cell.type == "excitatory" and scene.prims["comp"][prim] == cp.SHAFT
            if t_ == "modulatory" and rng.random() < 0.7:
                continue
            if t_ == "excitatory" and spiny and rng.random() < 0.9:
                if self._spine_synapse(cell, node, p, r_ax, rb, delta, prim, t, post_cell, exempt):
                    return True
                continue
            if t_ == "excitatory" and spiny:
                pass  # an occasional shaft synapse on a spiny dendrite
            n = unit(p - q)
            # bouton centre c = p - n*s so that |c - q| = r_post + rb - delta
            s = dist - (r_post + rb - delta)
            if not (-0.5 * rb <= s <= rb - r_ax - 30.0):
                continue
            c = p - n * s
            if not scene.clear(c, c, rb, rb, cell.index, exempt=exempt,
                               allow_cells={post_cell.index: delta + 2.0}):
                continue
            bp = self.add_bouton(cell, node, rb, cp.BOUTON, center=c)
            comp_post = cp.SOMA if scene.prims["comp"][prim] == cp.SOMA else cp.SHAFT
            self.add_synapse(cell, post_cell, bp, prim, q, r_post, c, rb, n, comp_post,
                             cp.BOUTON, node, int(scene.prims["node_b"][prim]))
            return True
        return False

    def _spine_synapse(self, cell: Cell, node: int, p, r_ax: float, rb: float, delta: float,
                       prim: int, t: float, post_cell: Cell, exempt: set[int]) -> bool:
        """A new spine of ``post_cell`` grows from the dendrite node nearest ``p`` to a bouton."""
        P, scene = self.p, self.scene
        N = scene.nodes
        rh = self.u(P.spine_head_r_nm)
        rn = self.u(P.spine_neck_r_nm)
        na, nb = int(scene.prims["node_a"][prim]), int(scene.prims["node_b"][prim])
        base = na if t < 0.5 else nb
        bpos = N["pos"][base]
        r_base = float(N["radius"][base])
        n = unit(p - bpos)
        # shift the bouton along n (within the varicosity limits) to get a good neck length
        lo, hi = P.spine_neck_len_nm
        want = self.u((lo, hi))
        full = float(np.linalg.norm(p - bpos))
        s = full - (r_base + want + 2 * rh + rb - delta)  # c = p - n*s
        s = float(np.clip(s, -0.5 * rb, rb - r_ax - 30.0))
        c = p - n * s
        head = c - n * (rb + rh - delta)
        neck_len = float(np.linalg.norm(head - bpos)) - rh - r_base
        if not (lo * 0.5 <= neck_len <= hi):
            return False
        if not scene.clear(c, c, rb, rb, cell.index, exempt=exempt):
            return False
        neck_end = head - n * rh * 0.5
        dexempt = scene.exempt_prims(base, 3)
        surf = bpos + n * r_base
        if not (scene.inside(head) and scene.inside(surf) and scene.inside(bpos)):
            return False
        if not scene.clear(surf, neck_end, rn, rn, post_cell.index, exempt=dexempt):
            return False
        if not scene.clear(head, head, rh, rh, post_cell.index, exempt=dexempt,
                           allow_cells={cell.index: 0.0}):
            return False
        bp = self.add_bouton(cell, node, rb, cp.BOUTON, center=c)
        head_prim = self.add_spine(post_cell, base, surf, neck_end, head, rn, rh)
        self.add_synapse(cell, post_cell, bp, head_prim, head, rh, c, rb, n, cp.SPINE_HEAD,
                         cp.BOUTON, node, int(scene.prims["node_b"][head_prim]))
        return True

    def try_terminal(self, cell: Cell, node: int) -> bool:
        P, rng, scene = self.p, self.rng, self.scene
        N = scene.nodes
        p = N["pos"][node].copy()
        r_ax = float(N["radius"][node])
        options = scene.nearest_on(p, 2400.0, cell.index, {cp.SHAFT, cp.SOMA})
        if not options:
            return False
        rng.shuffle(options)  # type: ignore[arg-type]
        exempt = scene.exempt_prims(node, 3)
        for _dist, prim, t in options[:4]:
            post_cell = scene.cells[int(scene.prims["cell"][prim])]
            if post_cell.type == "astrocyte" or post_cell.fragment:
                continue
            comp_post = int(scene.prims["comp"][prim])
            if cell.type == "excitatory" and comp_post == cp.SOMA:
                continue
            r_post = scene.prim_radius_at(prim, t)
            q = scene.prim_point(prim, t)
            n = unit(p - q)
            # aim a little off-axis so branches do not all point straight at the target
            rb = self.u(P.bouton_r_nm) * 0.9
            delta = self.u(P.contact_overlap_nm)
            bc = q + n * (r_post + rb - delta)
            blen = float(np.linalg.norm(bc - p))
            lo, hi = P.terminal_branch_len_nm
            if not (lo <= blen - rb <= hi):
                continue
            if not scene.inside(bc, margin=200.0):
                continue
            if not scene.clear(p, bc - unit(bc - p) * rb * 0.5, r_ax, r_ax, cell.index,
                               exempt=exempt):
                continue
            if not scene.clear(bc, bc, rb, rb, cell.index, exempt=exempt,
                               allow_cells={post_cell.index: delta + 2.0}):
                continue
            sv = int(N["sv"][node])
            child = scene.add_node(bc, rb, node, cell, cp.TERMINAL_BOUTON, sv)
            scene.add_prim(p, bc, r_ax, r_ax, cell.index, sv, cp.AXON, node, child)
            bp = scene.add_prim(bc, bc, rb, rb, cell.index, sv, cp.TERMINAL_BOUTON, child, child)
            self.add_synapse(cell, post_cell, bp, prim, q, r_post, bc, rb, n,
                             cp.SPINE_HEAD if comp_post == cp.SPINE_HEAD else comp_post,
                             cp.TERMINAL_BOUTON, child, int(scene.prims["node_b"][prim]))
            return True
        return False

    def add_bouton(self, cell: Cell, node: int, rb: float, comp: int, center=None) -> int:
        scene = self.scene
        N = scene.nodes
        N.set("comp", node, comp)
        N.set("radius", node, rb)
        p = N["pos"][node] if center is None else np.asarray(center, float)
        return scene.add_prim(p, p, rb, rb, cell.index, int(N["sv"][node]), comp, node, node)

    def add_spine(self, cell: Cell, base: int, surf, neck_end, head, rn: float, rh: float) -> int:
        scene = self.scene
        N = scene.nodes
        own = self.rng.random() < self.p.spine_own_sv_p
        sv = scene.new_sv(cell) if own else int(N["sv"][base])
        n1 = scene.add_node(surf, rn, base, cell, cp.SPINE_NECK, sv)
        scene.add_prim(N["pos"][base], surf, rn, rn, cell.index, sv, cp.SPINE_NECK, base, n1)
        n2 = scene.add_node(neck_end, rn, n1, cell, cp.SPINE_NECK, sv)
        scene.add_prim(surf, neck_end, rn, rn, cell.index, sv, cp.SPINE_NECK, n1, n2)
        n3 = scene.add_node(head, rh, n2, cell, cp.SPINE_HEAD, sv)
        scene.add_prim(neck_end, head, rn, rn, cell.index, sv, cp.SPINE_NECK, n2, n3)
        hp = scene.add_prim(head, head, rh, rh, cell.index, sv, cp.SPINE_HEAD, n3, n3)
        self.spine_heads.append(hp)
        return hp

    def add_synapse(self, pre: Cell, post: Cell, pre_prim: int, post_prim: int, q, r_post: float,
                    b, rb: float, n, comp_post: int, comp_pre: int, pre_node: int,
                    post_node: int) -> None:
        """Record a synapse between the bouton sphere (centre b, radius rb) and the post element."""
        P, E = self.p, self.p.expansion_nm
        dist = float(np.linalg.norm(np.asarray(b) - np.asarray(q)))
        tc = (dist + r_post - rb) / 2.0
        center = np.asarray(q) + unit(np.asarray(b) - np.asarray(q)) * tc
        A, B = rb + E, r_post + E
        tp = (dist**2 + B**2 - A**2) / (2 * dist)
        rim = float(np.sqrt(max(B**2 - tp**2, 0.0)))
        radius = max(60.0, rim * float(self.rng.uniform(0.75, 0.95)))
        sign = 1 if pre.type == "excitatory" else -1
        self.synapses.append(
            dict(pre_cell=pre.index, post_cell=post.index, pre_prim=pre_prim, post_prim=post_prim,
                 center=center, normal=unit(np.asarray(b) - np.asarray(q)), radius=radius,
                 half=self.u(P.sj_half_thickness_nm), sign=sign, pre_comp=comp_pre,
                 post_comp=comp_post, pre_node=pre_node, post_node=post_node,
                 sym=float(self.rng.uniform(0.65, 0.92) if sign < 0 else self.rng.uniform(0.03, 0.15)))
        )
        self.boutons.append(dict(prim=pre_prim, cell=pre.index, center=np.asarray(b, float), r=rb,
                                 towards=unit(center - np.asarray(b)), contact=center,
                                 overlap=rb - float(np.linalg.norm(center - np.asarray(b)))))

    # ---------------------------------------------------------------- 5. others
    def free_spines(self) -> None:
        P, rng, scene = self.p, self.rng, self.scene
        N = scene.nodes
        n0 = N.n
        for i in range(n0):
            cell = scene.cells[int(N["cell"][i])]
            if cell.type != "excitatory" or N["comp"][i] != cp.SHAFT or N["parent"][i] < 0:
                continue
            par = int(N["parent"][i])
            seg = float(np.linalg.norm(N["pos"][i] - N["pos"][par]))
            if rng.random() > P.free_spines_per_um * seg / 1000.0:
                continue
            if not scene.inside(N["pos"][i], margin=100.0):
                continue
            d = unit(N["pos"][i] - N["pos"][par])
            for _ in range(4):
                n = unit(perpendicular(d, rng) + 0.3 * rng.normal(size=3))
                rn, rh = self.u(P.spine_neck_r_nm), self.u(P.spine_head_r_nm) * 0.85
                ln = self.u(P.spine_neck_len_nm)
                r_base = float(N["radius"][i])
                surf = N["pos"][i] + n * r_base
                neck_end = surf + n * ln
                head = neck_end + n * rh * 0.5
                if not (scene.inside(head) and scene.inside(surf)):
                    continue
                dexempt = scene.exempt_prims(i, 3)
                if not scene.clear(surf, neck_end, rn, rn, cell.index, exempt=dexempt, gap=10.0):
                    continue
                if not scene.clear(head, head, rh, rh, cell.index, exempt=dexempt, gap=10.0):
                    continue
                self.add_spine(cell, i, surf, neck_end, head, rn, rh)
                break

    def varicosities(self) -> None:
        """Boutons without a synapse on modulatory axons (volume transmission) with vesicles."""
        P, rng, scene = self.p, self.rng, self.scene
        N = scene.nodes
        dist_root = self._path_lengths()
        last: dict[int, float] = {}
        for i in range(N.n):
            cell = scene.cells[int(N["cell"][i])]
            if cell.type != "modulatory" or N["comp"][i] != cp.AXON or N["parent"][i] < 0:
                continue
            if abs(dist_root[i] - last.get(cell.index, -1e9)) < 1500.0:
                continue
            if not scene.inside(N["pos"][i], margin=300.0) or rng.random() > 0.5:
                continue
            rb = self.u(P.varicosity_r_nm)
            if not scene.clear(N["pos"][i], N["pos"][i], rb, rb, cell.index,
                               exempt=scene.exempt_prims(i, 3)):
                continue
            bp = self.add_bouton(cell, i, rb, cp.BOUTON)
            self.boutons.append(dict(prim=bp, cell=cell.index, center=N["pos"][i].copy(), r=rb,
                                     towards=random_unit(rng), contact=None, overlap=0.0))
            last[cell.index] = dist_root[i]

    def fragments(self) -> None:
        P = self.p
        n = int(round(P.fragments_per_1000um2 * self.surface_um2 / 1000.0))
        for k in range(max(2, n)):
            type_ = ("excitatory", "inhibitory", "astrocyte")[k % 3]
            r = self.u((50.0, 120.0))
            got = self.entering_cell(type_, r, comp=cp.ASTROCYTE if type_ == "astrocyte" else cp.AXON,
                                     fragment=True)
            if got is None:
                continue
            cell, root, d = got
            self.grow(cell, root, d, r, cell.anchor_sv,
                      comp=cp.ASTROCYTE if type_ == "astrocyte" else cp.AXON, seg_nm=120.0,
                      sigma=0.2, r_min=r, max_len_nm=float(self.rng.uniform(150, 450)))

    def astrocytes(self, share: float) -> None:
        """Grow astrocytes: thin, tortuous, much-branched processes that may press a little into
        neurons (so they touch many of them). Called twice: before the axons (creating the cells,
        ``share`` of the cable budget) and at the end (the rest, filling the gaps)."""
        P = self.p
        r_um = np.mean(P.astrocyte_r_nm) / 1000.0
        total_len = P.astrocyte_frac * self.volume_um3 / (np.pi * r_um**2) * 1000.0
        if not self.astro:
            n = max(1, int(np.ceil(self.volume_um3 / 120.0)))
            for _ in range(n):
                got = self.entering_cell("astrocyte", P.astrocyte_r_nm[1], comp=cp.ASTROCYTE,
                                         gap=-25.0, max_overlap_frac=0.25, tries=200)
                if got is not None:
                    self.astro.append([got[0], got[1], got[2], 0.0])
        for entry in self.astro:
            cell, root, d, grown = entry
            budget = share * total_len / len(self.astro)
            done = 0.0
            # re-seed branches from random nodes of this astrocyte until the budget is used
            for _round in range(60):
                nodes = np.flatnonzero(self.scene.nodes["cell"] == cell.index)
                first = grown == 0.0 and _round == 0
                start = root if first else int(nodes[self.rng.integers(len(nodes))])
                if not self.scene.inside(self.scene.nodes["pos"][start]):
                    continue
                par = int(self.scene.nodes["parent"][start])
                if first or par < 0:
                    direction = d
                else:
                    axis = unit(self.scene.nodes["pos"][start] - self.scene.nodes["pos"][par])
                    direction = perpendicular(axis, self.rng)
                done += self.grow(
                    cell, start, direction, float(self.scene.nodes["radius"][start]),
                    int(self.scene.nodes["sv"][start]), comp=cp.ASTROCYTE, seg_nm=200.0,
                    sigma=0.45, r_min=P.astrocyte_r_nm[0], branch_per_um=P.astrocyte_branch_per_um,
                    branch_factor=0.8, gap=-25.0, max_overlap_frac=0.25, jitter=0.2,
                    max_total_nm=budget - done, attempts=10)
                if done >= budget:
                    break
            entry[3] = grown + done

    # ---------------------------------------------------------------- 6. organelles
    def organelles(self) -> dict[str, dict[str, np.ndarray]]:
        P, rng, scene = self.p, self.rng, self.scene
        N = scene.nodes
        mitos: list[tuple[np.ndarray, np.ndarray, float, int]] = []

        def mito_ok(a, b, r, cell_index, margin_other=60.0) -> bool:
            if mitos:
                A = np.array([m[0] for m in mitos])
                B = np.array([m[1] for m in mitos])
                R = np.array([m[2] for m in mitos])
                d, _, _ = segment_segment(a, b, A, B)
                if np.any(d < R + r + 80.0):
                    return False
            cand = scene.candidates(np.minimum(a, b) - r - 200, np.maximum(a, b) + r + 200)
            if len(cand):
                other = cand[scene.prims["cell"][cand] != cell_index]
                if len(other):
                    pr = scene.prims
                    d, s, t = segment_segment(a, b, pr["a"][other], pr["b"][other])
                    rr = np.maximum(pr["ra"][other], pr["rb"][other])
                    if np.any(d < r + rr + margin_other):
                        return False
            return True

        # chains of shaft nodes (dendrites) and myelinated axon nodes
        children = scene.children
        for cell in scene.cells:
            if cell.type == "astrocyte" or cell.fragment:
                continue
            nodes = np.flatnonzero(N["cell"] == cell.index)
            for start in nodes:
                start = int(start)
                comp = int(N["comp"][start])
                par = int(N["parent"][start])
                is_chain_start = par < 0 or int(N["comp"][par]) != comp or len(children[par]) != 1
                if comp not in (cp.SHAFT, cp.AXON) or not is_chain_start:
                    continue
                if comp == cp.AXON and not N["myelin"][start]:
                    continue
                chain = [start]
                while True:
                    ch = [c for c in children.get(chain[-1], ()) if N["comp"][c] == comp]
                    if len(ch) != 1:
                        break
                    chain.append(ch[0])
                pos = N["pos"][chain]
                rad = N["radius"][chain]
                seg = np.linalg.norm(np.diff(pos, axis=0), axis=1)
                s_of = np.concatenate([[0.0], np.cumsum(seg)])
                margin = 60.0 if comp == cp.AXON else 190.0
                s = self.u(P.mito_gap_nm) * 0.5
                while s < s_of[-1]:
                    i = int(np.searchsorted(s_of, s))
                    length = self.u(P.mito_len_nm)
                    j = int(np.searchsorted(s_of, s + length))
                    j = min(j, len(chain) - 1)
                    placed = False
                    while j > i:
                        a, b = pos[i], pos[j]
                        rmin = float(rad[i : j + 1].min())
                        r = min(self.u(P.mito_r_nm), 0.5 * rmin, rmin - margin)
                        dd, _ = point_segment_many(pos[i : j + 1], a, b)
                        inside = scene.inside(a) and scene.inside(b)
                        while r >= 95.0 and inside:
                            if np.all(dd + r <= rad[i : j + 1] - margin) and mito_ok(
                                a, b, r, cell.index
                            ):
                                mitos.append((a.copy(), b.copy(), r, cell.index))
                                placed = True
                                break
                            r *= 0.8
                        if placed:
                            break
                        j -= 1
                    s = (s_of[j] if placed else s + 200.0) + self.u(P.mito_gap_nm)
        # somata
        for cell in scene.cells:
            if cell.soma_center_nm is None:
                continue
            c = np.array(cell.soma_center_nm)
            rs = cell.soma_radius_nm
            frac_in = _sphere_box_fraction(c, rs, scene.box_nm, rng)
            target = P.soma_mito_fill * (4 / 3) * np.pi * rs**3 * frac_in
            got = 0.0
            for _ in range(3000):
                if got >= target:
                    break
                r = self.u(P.mito_r_nm)
                ln = self.u(P.mito_len_nm) * 0.8
                d = random_unit(rng)
                m = c + random_unit(rng) * rs * rng.uniform(0.5, 0.85)
                a, b = m - d * ln / 2, m + d * ln / 2
                if max(np.linalg.norm(a - c), np.linalg.norm(b - c)) + r > rs - 300.0:
                    continue
                if min(np.linalg.norm(a - c), np.linalg.norm(b - c)) - r < 0.45 * rs:
                    continue  # the nucleus
                if not (scene.inside(a, margin=r) and scene.inside(b, margin=r)):
                    continue
                if not mito_ok(a, b, r, cell.index):
                    continue
                mitos.append((a, b, r, cell.index))
                got += np.pi * r**2 * ln + 4 / 3 * np.pi * r**3
        # boutons: vesicle clouds towards the junction, sometimes a mitochondrion behind them
        vcs: list[tuple[np.ndarray, float, int]] = []
        for bt in self.boutons:
            rb, bc, n = bt["r"], bt["center"], bt["towards"]
            keep = rb - bt["overlap"] - 45.0
            rv = min(rb * rng.uniform(0.5, 0.65), keep - 10.0)
            # a mitochondrion behind the vesicles in half of the larger boutons
            mito = None
            if rb >= 300.0 and rng.random() < 0.5:
                r = 100.0
                side = perpendicular(n, rng)
                m = bc - n * (rb - 60.0 - r)
                half = min(90.0, float(np.sqrt(max((rb - 60.0) ** 2 - (rb - 60.0 - r) ** 2, 0))) - r)
                if half > 20.0:
                    a, b = m - side * half, m + side * half
                    if scene.inside(m, margin=150.0) and mito_ok(a, b, r, bt["cell"], margin_other=40.0):
                        mito = (a, b, r, bt["cell"])
            jit = rng.uniform(0.0, 25.0)
            if mito is not None:
                # the cloud (towards the junction) stays 25 nm clear of the mitochondrion behind
                # it: its far surface keep - 2 rv - jit >= -(rb - 60 - 2 r) + 25
                fit = (keep + rb - 60.0 - 2 * mito[2] - 25.0 - jit) / 2.0
                if fit >= 100.0:
                    rv = min(rv, fit)
                else:
                    mito = None
            off = max(0.0, keep - rv - jit)
            vc_c = bc + n * off
            if rv < 90.0:
                continue
            vcs.append((vc_c, rv, bt["cell"]))
            if mito is not None:
                mitos.append(mito)
        mi = _org_table([(m[0], m[1], m[2], 0.0, m[3], 0.0) for m in mitos])
        vc = _org_table([(v[0], v[0], v[1], 0.0, v[2], 0.0) for v in vcs])
        sj = _org_table([(s["center"], s["normal"], s["radius"], s["half"], s["pre_cell"], s["sym"])
                         for s in self.synapses])
        if len(self.synapses):
            sj["cell2"] = np.array([s["post_cell"] for s in self.synapses], np.int32)
        else:
            sj["cell2"] = np.zeros(0, np.int32)
        return {"mi": mi, "vc": vc, "sj": sj}

    def speckle(self) -> dict[str, np.ndarray]:
        rng = self.rng
        layers, pos, rad, peak = [], [], [], []
        for layer, rate in sorted(self.p.speckle().items()):
            n = rng.poisson(rate * self.volume_um3)
            code = {"mi": 0, "vc": 1, "sj": 2}[layer]
            rr = {"mi": (25.0, 40.0), "vc": (20.0, 32.0), "sj": (15.0, 25.0)}[layer]
            for _ in range(n):
                layers.append(code)
                pos.append(rng.uniform(0, 1, 3) * self.scene.box_nm[1])
                rad.append(self.u(rr))
                peak.append(float(rng.uniform(0.3, 0.75)))
        return {
            "layer": np.array(layers, np.uint8),
            "pos": np.array(pos, np.float64).reshape(-1, 3),
            "r": np.array(rad, np.float64),
            "peak": np.array(peak, np.float64),
        }


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The unit vector a fraction ``t`` of the way from unit ``a`` to unit ``b`` (not opposite)."""
    ang = float(np.arccos(np.clip(a @ b, -1.0, 1.0)))
    if ang < 1e-9:
        return b
    return unit((np.sin((1 - t) * ang) * a + np.sin(t * ang) * b) / np.sin(ang))


def point_segment_many(pts: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances of points (M, 3) to one segment a-b."""
    ab = b - a
    ll = float(ab @ ab)
    t = np.clip(((pts - a) @ ab) / ll, 0, 1) if ll > 0 else np.zeros(len(pts))
    return np.linalg.norm(pts - (a + t[:, None] * ab), axis=1), t


def _sphere_box_fraction(c, r, box, rng, n: int = 4000) -> float:
    pts = c + np.array([random_unit(rng) * r * rng.random() ** (1 / 3) for _ in range(200)])
    inside = np.all((pts >= box[0]) & (pts <= box[1]), axis=1)
    del n
    return float(inside.mean())


def _org_table(rows: list[tuple]) -> dict[str, np.ndarray]:
    return {
        "a": np.array([r[0] for r in rows], np.float64).reshape(-1, 3),
        "b": np.array([r[1] for r in rows], np.float64).reshape(-1, 3),
        "r": np.array([r[2] for r in rows], np.float64),
        "h": np.array([r[3] for r in rows], np.float64),
        "cell": np.array([r[4] for r in rows], np.int32),
        "value": np.array([r[5] for r in rows], np.float64),
    }


def build_tissue(
    shape_xyz: tuple[int, int, int],
    voxel_size_nm: tuple[float, float, float],
    seed: int,
    params: SynthParams | None = None,
) -> Tissue:
    """Build the geometry of the demo tissue for one seed (deterministic, no I/O)."""
    params = params or SynthParams()
    b = _Builder(shape_xyz, voxel_size_nm, seed, params)
    b.somata()
    b.cables()
    b.varicosities()
    b.fragments()
    b.astrocytes(0.5)
    org = b.organelles()
    speckle = b.speckle()
    scene = b.scene
    cells = scene.cells
    soma = np.array([c.soma_center_nm if c.soma_center_nm else (np.nan,) * 3 for c in cells],
                    np.float64).reshape(-1, 3)
    seeds = b.soma_seeds
    syn = b.synapses
    return Tissue(
        shape_xyz=tuple(int(v) for v in shape_xyz),  # type: ignore[arg-type]
        voxel_size_nm=tuple(float(v) for v in voxel_size_nm),  # type: ignore[arg-type]
        seed=int(seed),
        expansion_nm=params.expansion_nm,
        astrocyte_fill_nm=params.astrocyte_fill_nm,
        astrocyte_fill=params.astrocyte_fill,
        prims=scene.prims.freeze(),
        nodes=scene.nodes.freeze(),
        cells={
            "type": np.array([CELL_TYPES.index(c.type) for c in cells], np.int8),
            "fragment": np.array([c.fragment for c in cells], bool),
            "n_sv": np.array([c.n_sv for c in cells], np.int64),
            "anchor_sv": np.array([c.anchor_sv for c in cells], np.int64),
            "soma": soma,
            "soma_r": np.array([c.soma_radius_nm for c in cells], np.float64),
        },
        soma_seeds={
            "prim": np.array([s[0] for s in seeds], np.int64),
            "pos": np.array([s[1] for s in seeds], np.float64).reshape(-1, 3),
            "sv": np.array([s[2] for s in seeds], np.int64),
        },
        organelles=org,
        synapses={
            "pre_cell": np.array([s["pre_cell"] for s in syn], np.int64),
            "post_cell": np.array([s["post_cell"] for s in syn], np.int64),
            "pre_prim": np.array([s["pre_prim"] for s in syn], np.int64),
            "post_prim": np.array([s["post_prim"] for s in syn], np.int64),
            "center": np.array([s["center"] for s in syn], np.float64).reshape(-1, 3),
            "sign": np.array([s["sign"] for s in syn], np.int8),
            "pre_comp": np.array([s["pre_comp"] for s in syn], np.uint8),
            "post_comp": np.array([s["post_comp"] for s in syn], np.uint8),
        },
        speckle=speckle,
    )


__all__ = ["CELL_TYPES", "SOLID", "Tissue", "build_tissue"]
