"""Post-processing of one joined cell skeleton: thinning, dust and tick removal, tree order.

Order as in the reference (thin per block, then dust and ticks on the merged skeleton): thinning
keeps every tip and branch point, so tick and dust lengths are measured on the same cable.
All functions are pure on a :class:`~syngraph.skeleton.Forest` (nodes in nm) and never add edges between
nodes that were not already connected by a path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from syngraph.skeleton import Forest, components, degrees, edge_lengths, orient

HOOK = 1.5  # a tip whose path to a covering node is this much longer than the straight line is a hook


def _adjacency(n: int, edges: np.ndarray) -> list[list[int]]:
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in np.asarray(edges, np.int64).reshape(-1, 2).tolist():
        adj[a].append(b)
        adj[b].append(a)
    return adj


def _walk_from_tip(adj: list[list[int]], deg: np.ndarray, pts: list[list[float]], t: int,
                   max_nm: float = math.inf, alive: np.ndarray | None = None) -> Iterator[tuple[int, float]]:
    """``(node, path length from t in nm)`` along the path from tip ``t`` (only through nodes where
    ``alive``), up to and including the first branch point (degree >= 3), or the first node at
    ``>= max_nm``; it also ends where the path does not go on in exactly one way."""
    prev, cur, length = -1, t, 0.0
    while length < max_nm:
        nxt = [w for w in adj[cur] if w != prev and (alive is None or alive[w])]
        if len(nxt) != 1:
            return
        prev, cur = cur, nxt[0]
        length += math.dist(pts[cur], pts[prev])
        yield cur, length
        if deg[cur] >= 3:
            return


def smooth(forest: Forest, iterations: int, weight: float = 0.25, max_edge_nm: float = np.inf) -> Forest:
    """Smooth node positions along the paths; tips and branch points stay where they are.

    Each iteration moves every node of degree two to ``w * prev + (1 - 2 w) * self + w * next``
    (``w = weight``; 0.25 is the (1, 2, 1) / 4 kernel), which flattens the staircase of a path
    traced through voxels (it adds about 8 % of length to a line at 26.6 degrees to a grid
    axis) while moving a smooth path by much less than a voxel; it also cuts into real bends,
    so a lighter weight trades staircase for corner cutting. Only nodes whose two edges are at
    most ``max_edge_nm`` long move (voxel steps: a long edge, such as the one kimimaro draws from
    a soma's centre to a path it trimmed, is no staircase, and a node pulled along it can leave
    the cell).

    >>> f = Forest(np.array([[0.0, 0, 0], [1, 1, 0], [2, 0, 0]]), np.array([[0, 1], [1, 2]]),
    ...            np.ones(3, np.float32), {})
    >>> smooth(f, 1).nodes_nm[1].tolist()
    [1.0, 0.5, 0.0]
    """
    if len(forest) < 3 or iterations <= 0:
        return forest
    mid, a, b = _movable(forest, max_edge_nm)
    pos = forest.nodes_nm.astype(np.float64, copy=True)
    for _ in range(iterations):
        pos[mid] = weight * pos[a] + (1.0 - 2.0 * weight) * pos[mid] + weight * pos[b]
    return Forest(pos, forest.edges, forest.radius_nm, forest.attrs)


def _movable(forest: Forest, max_edge_nm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes of degree two whose both edges are at most ``max_edge_nm`` long, and their two
    neighbours."""
    e = forest.edges
    mid = np.flatnonzero(degrees(len(forest), e) == 2)
    both = np.concatenate([e, e[:, ::-1]])
    both = both[np.argsort(both[:, 0], kind="stable")]
    start = np.searchsorted(both[:, 0], mid)
    a, b = both[start, 1], both[start + 1, 1]
    pos = forest.nodes_nm
    short = ((np.linalg.norm(pos[a] - pos[mid], axis=1) <= max_edge_nm)
             & (np.linalg.norm(pos[b] - pos[mid], axis=1) <= max_edge_nm))
    return mid[short], a[short], b[short]


def straighten(forest: Forest, half_box_nm: np.ndarray, iterations: int = 200,
               max_edge_nm: float = np.inf) -> Forest:
    """Pull each path taut inside its voxels: a discrete minimum-length polygon.

    Every node of degree two moves to the midpoint of its neighbours, clipped to the box of
    ``+- half_box_nm`` (XYZ, half a skeleton voxel) around where it started; ``iterations``
    rounds (Jacobi, all paths at once) settle the string. The voxel staircase goes (a straight
    neurite at any angle fits inside its voxels) but no node leaves its voxel, so a bend of the
    axis wider than a voxel is kept: unlike a fixed kernel, it cannot cut corners. Tips, branch
    points and nodes next to an edge longer than ``max_edge_nm`` stay put.

    >>> f = Forest(np.array([[0.0, 0, 0], [1, 1, 0], [2, 0, 0]]), np.array([[0, 1], [1, 2]]),
    ...            np.ones(3, np.float32), {})
    >>> straighten(f, np.array([0.5, 0.5, 0.5])).nodes_nm[1].tolist()
    [1.0, 0.5, 0.0]
    """
    if len(forest) < 3 or iterations <= 0:
        return forest
    mid, a, b = _movable(forest, max_edge_nm)
    pos = forest.nodes_nm.astype(np.float64, copy=True)
    lo, hi = pos[mid] - half_box_nm, pos[mid] + half_box_nm
    for _ in range(iterations):
        pos[mid] = np.clip(0.5 * (pos[a] + pos[b]), lo, hi)
    return Forest(pos, forest.edges, forest.radius_nm, forest.attrs)


def _deviates(pts: list[list[float]], par: list[int], a: int, p: int, v: int, tol2: float) -> bool:
    """Whether a node between ``a`` and ``v`` (``p`` and its ancestors below ``a``) lies farther
    than ``sqrt(tol2)`` from the segment ``a``-``v`` (pure Python: the runs are a few nodes)."""
    ax, ay, az = pts[a]
    cx, cy, cz = pts[v][0] - ax, pts[v][1] - ay, pts[v][2] - az
    c2 = cx * cx + cy * cy + cz * cz
    u = p
    while u != a:
        rx, ry, rz = pts[u][0] - ax, pts[u][1] - ay, pts[u][2] - az
        if c2 > 0:
            t = min(1.0, max(0.0, (rx * cx + ry * cy + rz * cz) / c2))
            rx, ry, rz = rx - t * cx, ry - t * cy, rz - t * cz
        if rx * rx + ry * ry + rz * rz > tol2:
            return True
        u = par[u]
    return False


def thin(forest: Forest, spacing_nm: float, max_deviation_nm: float = np.inf) -> Forest:
    """Keep tips, branch points and about one node per ``spacing_nm`` of cable in between.

    Walking each tree from its root, a node is kept when it is a root, tip or branch point,
    when the path length since the last kept node reaches ``spacing_nm``, or when leaving out
    the nodes since the last kept one would move the skeleton by more than
    ``max_deviation_nm`` (so bends keep their nodes and near-collinear nodes go); kept nodes
    are joined to their nearest kept ancestor. Node positions are unchanged.

    >>> f = Forest(np.c_[np.arange(11.0), np.zeros(11), np.zeros(11)],
    ...            np.c_[np.arange(10), np.arange(1, 11)], np.ones(11, np.float32), {})
    >>> thin(f, 4.0).nodes_nm[:, 0].tolist()
    [0.0, 4.0, 8.0, 10.0]
    """
    n = len(forest)
    if n == 0 or spacing_nm <= 0:
        return forest
    nodes = forest.nodes_nm
    order, parent = orient(forest, priority=-np.arange(n, dtype=np.float64))
    deg = degrees(n, forest.edges)
    step = np.zeros(n)
    has_p = parent >= 0
    step[has_p] = np.linalg.norm(nodes[has_p] - nodes[parent[has_p]], axis=1)
    new_parent = np.full(n, -1, np.int64)
    par = parent.tolist()
    st = step.tolist()
    kp = ((deg != 2) | ~has_p).tolist()
    acc = [0.0] * n
    ka = list(range(n))  # nearest kept node at or above each node
    check = bool(np.isfinite(max_deviation_nm))
    tol2 = float(max_deviation_nm) ** 2 if check else 0.0
    pts = nodes.tolist()
    for v in order.tolist():
        p = par[v]
        if p < 0:
            continue
        if check and not kp[p] and _deviates(pts, par, ka[p], p, v, tol2):
            kp[p] = True  # p has one child (v), so nothing else depends on it yet
            new_parent[p] = ka[p]
            ka[p] = p
        run_len = (0.0 if kp[p] else acc[p]) + st[v]
        acc[v] = run_len
        if not kp[v] and run_len >= spacing_nm:
            kp[v] = True
        if kp[v]:
            new_parent[v] = ka[p]
            ka[v] = v
        else:
            ka[v] = ka[p]
    keep = np.array(kp, bool)
    child = np.flatnonzero(keep & (new_parent >= 0))
    edges = np.stack([child, new_parent[child]], 1)
    return forest.subset(keep, edges)


def on_volume_border(nodes_nm: np.ndarray, spacing_nm: tuple[float, float, float],
                     volume_shape_vx: tuple[int, int, int] | None, planes: int = 1) -> np.ndarray:
    """True for nodes on the first or last ``planes`` voxel planes of the volume (skeleton
    resolution)."""
    if volume_shape_vx is None or len(nodes_nm) == 0:
        return np.zeros(len(nodes_nm), bool)
    v = np.rint(np.asarray(nodes_nm) / np.asarray(spacing_nm)).astype(np.int64)
    return np.any((v <= planes - 1) | (v >= np.asarray(volume_shape_vx) - planes), axis=1)


def retract_tips(forest: Forest, fixed: np.ndarray, tol_nm: float) -> Forest:
    """Move every tip back from the surface to the centre of its end cap.

    TEASAR paths end on the object's surface; the axis of a neurite ends at the centre of the
    sphere that caps it. Walking in from a tip ``t``, the new tip is the last node ``q`` whose
    inscribed sphere contains the tip's (``|q - t| + radius[t] <= radius[q] + tol_nm``,
    ``tol_nm`` about a voxel and a half for the discretisation of the distance field); the
    nodes before it are removed. A tip already at a cap centre stays (its own sphere is as
    large as its neighbours'). The walk ends at a branch point, which may itself be that
    node: a bump on the surface (a branch no longer than the radius of the branch it sits on)
    then disappears. A tree's last node is never removed. Tips where ``fixed`` is true (ends on
    the volume border, where the neurite leaves the volume) stay, and no walk passes them.

    >>> x = np.arange(0.0, 101.0, 10.0)
    >>> f = Forest(np.c_[x, np.zeros(11), np.zeros(11)], np.c_[np.arange(10), np.arange(1, 11)],
    ...            np.minimum(np.minimum(x, 100 - x) + 5, 30).astype(np.float32), {})
    >>> retract_tips(f, np.zeros(11, bool), 0.0).nodes_nm[:, 0].tolist()
    [20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]
    """
    n = len(forest)
    if n < 2:
        return forest
    deg = degrees(n, forest.edges)
    adj = _adjacency(n, forest.edges)
    nodes = forest.nodes_nm
    pts = nodes.tolist()
    radius = forest.radius_nm.astype(np.float64)
    reach = radius + tol_nm
    alive = np.ones(n, bool)
    # in a cap, |q - t| and radius[q] grow together, with the noise of a few voxel steps
    margin = 3.0 * float(np.median(edge_lengths(nodes, forest.edges))) if len(forest.edges) else 0.0
    fixed = np.asarray(fixed, bool)
    for t in np.flatnonzero((deg == 1) & ~fixed).tolist():
        if not alive[t]:
            continue
        path = [t]
        last = 0  # index in path of the last node whose sphere reaches t
        far = reach[t]
        for w, _ in _walk_from_tip(adj, deg, pts, t, alive=alive):
            if fixed[w]:  # never walk through an end on the volume border
                break
            d = math.dist(pts[w], pts[t])
            far = max(far, reach[w])
            if d > far + margin:  # farther than any sphere on the way can reach
                break
            path.append(w)
            if d + radius[t] <= reach[w]:
                last = len(path) - 1
        if last == 0:
            continue
        drop = path[:last]  # all of it if the branch lies in the branch point's sphere
        if len(drop) >= int(alive.sum()):
            drop = drop[:-1]
        alive[drop] = False
        if deg[path[last]] >= 3:
            deg[path[last]] -= 1
    return forest.subset(alive)


def peel_face_ridges(forest: Forest, ridge: np.ndarray, on_face: np.ndarray) -> Forest:
    """Peel the paths that run along a volume face on its distance ridge (sliver paths).

    A tip where ``ridge`` is true (within a voxel of the volume border, on a sliver's ridge:
    :func:`.teasar.face_ridge`) whose neighbour is also near a face (``on_face``) is removed, and so on from the tip it leaves. What runs along the face on the ridge is the
    sliver of a neurite whose axis lies outside the volume (its true tree is outside); where
    an axis crosses the face, the path leaves the face at once, so an exit (a ridge tip joined
    to a node inside) stays, and a path that runs along the face past where its axis left
    is cut back to the crossing. Paths joining two parts of the tree stay (no tree is split),
    and a tree's last node is never removed.

    >>> x = np.arange(5.0)
    >>> f = Forest(np.c_[x, np.zeros(5), np.zeros(5)], np.c_[np.arange(4), np.arange(1, 5)],
    ...            np.ones(5, np.float32), {})
    >>> len(peel_face_ridges(f, x >= 2, x >= 1))
    2
    """
    n = len(forest)
    ridge = np.asarray(ridge, bool)
    if n < 2 or not ridge.any():
        return forest
    on_face = np.asarray(on_face, bool)
    adj = _adjacency(n, forest.edges)
    deg = degrees(n, forest.edges)
    alive = np.ones(n, bool)
    stack = np.flatnonzero((deg == 1) & ridge).tolist()
    left = n
    while stack:
        t = stack.pop()
        if not alive[t] or deg[t] != 1 or left <= 1:
            continue
        w = next(v for v in adj[t] if alive[v])
        if not on_face[w]:
            continue
        alive[t] = False
        left -= 1
        deg[w] -= 1
        if deg[w] == 1 and ridge[w]:
            stack.append(w)
    return forest.subset(alive)


def exit_tips(forest: Forest, border: np.ndarray, step_nm: float) -> np.ndarray:
    """True for the tips on the volume border (``border``) where a neurite leaves the volume.

    Where the axis meets the border, the inscribed ball keeps the neurite's radius (the border
    is no boundary of the distance field); a TEASAR path that runs along a cut face to its rim
    ends with a ball much smaller than those a few voxels in. So a border tip is an exit when
    its radius is at least half the largest radius within ``2 * radius + 2 * step_nm`` of path
    back from it (up to the first branch point).

    >>> x = np.arange(0.0, 100.0, 10.0)
    >>> f = Forest(np.c_[x, np.zeros(10), np.zeros(10)], np.c_[np.arange(9), np.arange(1, 10)],
    ...            np.r_[np.full(9, 40.0), 40.0].astype(np.float32), {})
    >>> exit_tips(f, x >= 90, 10.0).nonzero()[0].tolist()
    [9]
    >>> f = Forest(f.nodes_nm, f.edges, np.r_[np.full(6, 40.0), 30, 20, 10, 5].astype(np.float32), {})
    >>> exit_tips(f, x >= 60, 10.0).nonzero()[0].tolist()
    []
    """
    n = len(forest)
    out = np.zeros(n, bool)
    border = np.asarray(border, bool)
    if n < 2 or not border.any():
        return border.copy() if n == 1 else out
    deg = degrees(n, forest.edges)
    adj = _adjacency(n, forest.edges)
    pts, radius = forest.nodes_nm.tolist(), forest.radius_nm.astype(np.float64)
    for t in np.flatnonzero((deg == 1) & border).tolist():
        reach = 2.0 * radius[t] + 2.0 * step_nm
        r_in = radius[t]
        for w, length in _walk_from_tip(adj, deg, pts, t):
            if length > reach:
                break
            r_in = max(r_in, radius[w])
        out[t] = radius[t] >= 0.5 * r_in
    return out


def extend_exits(forest: Forest, fixed: np.ndarray, volume_hi_nm: np.ndarray, back_nm: float,
                 face_nm: np.ndarray) -> Forest:
    """Move every tip on the volume border (``fixed``) to where its axis meets the border plane.

    The skeleton grid's last plane can lie inside the volume's (striding), and a neurite that
    leaves obliquely is cut by it before its axis reaches the face. The axis direction is the
    line from the node ``max(back_nm, radius)`` of path back to the tip; the tip moves along it
    onto the plane of each volume face (voxel centres ``0`` and ``volume_hi_nm``) that it lies
    within ``face_nm`` of and points out of, if that plane lies within the tip's radius along
    it (else the path grazes the face, and moving it would run it along the face, out of its
    cell).

    >>> f = Forest(np.array([[50.0, 50, 50], [30, 40, 50], [10, 30, 50]]), np.array([[0, 1], [1, 2]]),
    ...            np.full(3, 100, np.float32), {})
    >>> hi = np.array([200.0, 200, 200])
    >>> extend_exits(f, np.array([False, False, True]), hi, 60.0, np.full(3, 10.0)).nodes_nm[2].tolist()
    [0.0, 25.0, 50.0]
    >>> extend_exits(f, np.array([False, False, True]), hi, 60.0, np.full(3, 5.0)).nodes_nm[2].tolist()
    [10.0, 30.0, 50.0]
    >>> g = Forest(np.array([[190.0, 0, 50], [191, 40, 50], [192, 80, 50]]), f.edges, f.radius_nm, {})
    >>> extend_exits(g, np.array([False, False, True]), hi, 60.0, np.full(3, 10.0)).nodes_nm[2].tolist()
    [192.0, 80.0, 50.0]
    """
    n = len(forest)
    fixed = np.asarray(fixed, bool)
    if n < 2 or not fixed.any():
        return forest
    deg = degrees(n, forest.edges)
    adj = _adjacency(n, forest.edges)
    nodes = forest.nodes_nm.copy()
    hi = np.asarray(volume_hi_nm, np.float64)
    face = np.asarray(face_nm, np.float64)
    pts = forest.nodes_nm.tolist()
    for t in np.flatnonzero((deg == 1) & fixed).tolist():
        cur = t  # the node max(back_nm, radius) of path back, or the branch point before it
        for w, _ in _walk_from_tip(adj, deg, pts, t, max(back_nm, float(forest.radius_nm[t]))):
            cur = w
        d = nodes[t] - nodes[cur]
        norm = float(np.linalg.norm(d))
        if norm == 0:
            continue
        d /= norm
        x = nodes[t]
        out_lo = (x <= face) & (d < 0)
        out_hi = (x >= hi - face) & (d > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            steps = np.where(out_lo, -x / d, np.where(out_hi, (hi - x) / d, np.inf))
        step = float(np.min(np.maximum(steps, 0.0)))
        if step <= float(forest.radius_nm[t]):  # farther: a path grazing the face, not an exit
            nodes[t] = x + d * step
    return Forest(nodes, forest.edges, forest.radius_nm, forest.attrs)

def remove_dust(forest: Forest, dust_nm: float, tree_vx: np.ndarray | None = None,
                dust_vx: int = 0, fixed: np.ndarray | None = None) -> Forest:
    """Drop trees with cable length < ``dust_nm`` or (if given) fewer than ``dust_vx`` voxels.

    Trees with a node where ``fixed`` is true (on the volume border: the stub of a neurite that
    leaves the volume, whose in-volume part can be small however large it is) are never
    dropped. If that would drop every tree, the largest
    tree (by voxels, then cable) is kept, so every non-empty cell keeps a skeleton (a piece of
    one voxel keeps its single node).
    """
    n = len(forest)
    if n == 0:
        return forest
    comp = components(n, forest.edges)
    ncomp = int(comp.max()) + 1
    cable = np.zeros(ncomp)
    if len(forest.edges):
        np.add.at(cable, comp[forest.edges[:, 0]], edge_lengths(forest.nodes_nm, forest.edges))
    vx = np.zeros(ncomp, np.int64)
    if tree_vx is not None:
        vx[comp] = tree_vx
    ok = (cable >= dust_nm) & (vx >= dust_vx)
    if fixed is not None:
        ok[comp[np.asarray(fixed, bool)]] = True
    if not ok.any():
        ok[np.lexsort((-cable, -vx))[0]] = True
    return forest.subset(ok[comp])


def _tip_branches(n: int, e: np.ndarray, alive: np.ndarray, nodes: np.ndarray,
                  max_len: float) -> dict[int, list[tuple[float, list[int]]]]:
    """Tip branches (tip .. node before the branch point) up to ``max_len``, per branch point."""
    deg = degrees(n, e)
    adj = _adjacency(n, e)
    pts = nodes.tolist()
    out: dict[int, list[tuple[float, list[int]]]] = {}
    for tip in np.flatnonzero(alive & (deg == 1)).tolist():
        path = [tip]
        for w, length in _walk_from_tip(adj, deg, pts, tip, max_len):
            if length >= max_len:
                break
            if deg[w] >= 3:
                out.setdefault(w, []).append((length, path))
                break
            path.append(w)
    return out


def _prune(forest: Forest, max_len: float, removable, order_key) -> Forest:  # type: ignore[no-untyped-def]
    """Remove tip branches for which ``removable(path, alive)`` holds, in ``order_key`` order.

    Candidates are re-tested against the current tree one at a time, and at most one branch
    per branch point goes per round (after that it may no longer be a branch point).
    """
    n = len(forest)
    alive = np.ones(n, bool)
    edges = forest.edges
    while True:
        e = edges[alive[edges[:, 0]] & alive[edges[:, 1]]] if len(edges) else edges
        branches = _tip_branches(n, e, alive, forest.nodes_nm, max_len)
        cands = [(order_key(length, path), bp, path) for bp, c in branches.items() for length, path in c]
        cands.sort(key=lambda c: (c[0], c[2][0]))
        done: set[int] = set()
        for _, bp, path in cands:
            if bp in done or not removable(path, alive):
                continue
            alive[path] = False
            done.add(bp)
        if not done:
            break
    return forest.subset(alive)


def remove_ticks(forest: Forest, tick_nm: float, fixed: np.ndarray | None = None) -> Forest:
    """Remove branches from a tip to a branch point shorter than ``tick_nm``, shortest first.

    At each branch point only the shortest tick is removed per round; the branch point may then
    become an ordinary node and its remaining branches merge into longer ones, as in
    ``kimimaro.postprocess.remove_ticks``. A tree that is a single path is never shortened.
    Tips where ``fixed`` is true (on the volume border: a neurite leaving the volume, not a bump
    on a surface) are never removed.
    """
    if len(forest) == 0 or tick_nm <= 0:
        return forest
    keep = np.zeros(len(forest), bool) if fixed is None else np.asarray(fixed, bool)
    return _prune(forest, tick_nm, lambda path, alive: not keep[path[0]], lambda length, path: length)


def remove_redundant_branches(forest: Forest, tol_nm: float) -> Forest:
    """Peel tips that lie inside the lumen of a part of the tree they are not locally joined to.

    Where a block face runs along a neurite, the thin sliver on the far side of the face gets
    its own path, parallel to the neurite's axis and inside it. A tip node ``t`` is peeled when
    some other node ``m`` has ``t`` inside its radius (``|t - m| <= radius[m] + tol_nm``) while
    the path from ``t`` to ``m`` along the tree is longer than ``|t - m| + radius[m] + tol_nm``
    or than ``1.5 |t - m| + 2 tol_nm`` (so ``m`` is not just ``t``'s own neighbourhood; the
    second bound catches a path that hooks back into the neurite at its end, as a sliver path
    does where a block face cuts a neurite's end cap). Thinner tips go first; peeling a tip may
    expose the next one. Two neurites of one cell that run side by side are not touched: their
    axes are farther apart than either radius.
    """
    import heapq

    from scipy.spatial import cKDTree

    n = len(forest)
    if n < 3:
        return forest
    nodes = forest.nodes_nm
    pts = nodes.tolist()
    radius = forest.radius_nm.astype(np.float64)
    reach = radius + tol_nm
    tree = cKDTree(nodes)
    adj = _adjacency(n, forest.edges)
    alive = np.ones(n, bool)
    deg = degrees(n, forest.edges)
    heap = [(radius[t], t) for t in np.flatnonzero(deg == 1).tolist()]
    heapq.heapify(heap)
    rmax = float(reach.max())

    def covered(t: int) -> bool:
        cand = [m for m in tree.query_ball_point(nodes[t], rmax) if alive[m] and m != t]
        de = {m: math.dist(pts[m], pts[t]) for m in cand}
        cand = [m for m in cand if de[m] <= reach[m]]
        if not cand:
            return False
        limit = max(de[m] + reach[m] for m in cand)
        dist = {t: 0.0}
        pq = [(0.0, t)]
        while pq:
            d, u = heapq.heappop(pq)
            if d > dist.get(u, np.inf) or d > limit:
                continue
            for w in adj[u]:
                if not alive[w]:
                    continue
                nd = d + math.dist(pts[w], pts[u])
                if nd < dist.get(w, np.inf) and nd <= limit:
                    dist[w] = nd
                    heapq.heappush(pq, (nd, w))
        return any(dist.get(m, np.inf) > min(de[m] + reach[m], HOOK * de[m] + 2 * tol_nm) for m in cand)

    while heap:
        _, t = heapq.heappop(heap)
        if not alive[t] or deg[t] != 1 or not covered(t):
            continue
        alive[t] = False
        for w in adj[t]:
            if alive[w]:
                deg[w] -= 1
                if deg[w] == 1:
                    heapq.heappush(heap, (radius[w], w))
    return forest.subset(alive)
