"""Fit the compartment model: from a user's labelled points (``syngraph train compartments``) or
from demo tissue truth (``python -m syngraph.steps.compartments.train WD ...``, how the shipped
model was made; see docs/compartments.md).

Both stages are fitted per variant (``full`` with organelle features when every working
directory has them, and ``shape``). The context stage learns from out-of-fold first-stage
probabilities (two folds over working directories, or over cells when there is one), so it
sees the first stage's errors as they will be at prediction time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syngraph import compartments as cp
from syngraph.errors import InputError
from syngraph.models.compartments import (
    CLASSES,
    CONTEXT_FEATURES,
    CompartmentModel,
    TwoStage,
    feature_names,
    fit_stage,
    model_columns,
)
from syngraph.models.domain import Domain
from syngraph.steps.compartments.features import Tree, context_features

MIN_PER_CLASS = 5
MIN_SOMA_RADIUS_NM = 400.0
"""Demo truth: soma nodes thinner than this are left unlabelled: they lie in the caps of somata
cut by the volume border, which look like neurites to any shape feature (the demo's 256^3 volumes
hold mostly such caps); training on them teaches the model that somata are thin."""


@dataclass(frozen=True)
class CellData:
    """One cell's tree, first-stage features (full columns) and labels (0 = unlabelled)."""

    tree: Tree
    x: np.ndarray
    y: np.ndarray


def _stack(cells: list[CellData], variant: str, ctx: list[np.ndarray] | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for i, c in enumerate(cells):
        m = c.y > 0
        x = model_columns(c.x, variant)[m]
        xs.append(np.c_[x, ctx[i][m]] if ctx is not None else x)
        ys.append(c.y[m])
    return np.concatenate(xs), np.concatenate(ys)


def _folds(groups: list[list[CellData]]) -> list[list[CellData]]:
    if len(groups) >= 2:
        return [sum(groups[0::2], []), sum(groups[1::2], [])]
    cells = groups[0]
    return [cells[0::2], cells[1::2]]


def fit_two_stage(groups: list[list[CellData]], variant: str) -> TwoStage:
    """Both stages on ``groups`` (lists of cells, one per working directory)."""
    names = feature_names(variant)
    folds = [f for f in _folds(groups) if f]
    ctx_cells, ctx = [], []
    for k, held in enumerate(folds):
        train = sum((f for j, f in enumerate(folds) if j != k), [])
        if not train:
            train = held
        stage = fit_stage(*_stack(train, variant), names)
        cut = np.cumsum([len(c.y) for c in held])[:-1]
        p1 = np.split(stage.predict_proba(np.concatenate([model_columns(c.x, variant) for c in held])), cut)
        ctx_cells += held
        ctx += [context_features(c.tree, p) for c, p in zip(held, p1, strict=True)]
    local = fit_stage(*_stack(sum(folds, []), variant), names)
    context = fit_stage(*_stack(ctx_cells, variant, ctx), names + CONTEXT_FEATURES)
    return TwoStage(local, context)


def predict(model: TwoStage, cells: list[CellData], variant: str) -> list[np.ndarray]:
    from syngraph.steps.compartments.run import predict_cells

    return predict_cells([c.tree for c in cells], [model_columns(c.x, variant) for c in cells], model)


def cross_validate(groups: list[list[CellData]], variant: str, params: object) -> list[dict[str, float]]:
    """Leave-one-working-directory-out scores of the smoothed labels (``evaluate`` metrics)."""
    from syngraph.evaluate.compartments import node_scores
    from syngraph.steps.compartments.run import label_cell

    out = []
    for k in range(len(groups)):
        model = fit_two_stage([g for j, g in enumerate(groups) if j != k], variant)
        truth, pred = [], []
        for c, prob in zip(groups[k], predict(model, groups[k], variant), strict=True):
            _, smooth = label_cell(c.tree, prob, params)  # type: ignore[arg-type]
            truth.append(c.y)
            pred.append(smooth)
        out.append(node_scores(np.concatenate(truth), np.concatenate(pred)))
    return out


def fit_model(groups: list[list[CellData]], organelles: bool, info: dict[str, str],
              domain_cells: list[CellData] | None = None) -> CompartmentModel:
    """Both variants (``full`` only with ``organelles``), each with the domain of its features
    over every node of ``domain_cells`` (default: the training cells), labelled or not."""
    variants = ("full", "shape") if organelles else ("shape",)
    cells = domain_cells or sum(groups, [])
    domains = {v: Domain.fit(np.concatenate([model_columns(c.x, v) for c in cells]), feature_names(v)) for v in variants}
    return CompartmentModel({v: fit_two_stage(groups, v) for v in variants}, info, domains)


# ---------------------------------------------------------------------------- data


def workdir_cells(workdir: str | Path, organelles: bool) -> tuple[np.ndarray, list[CellData]]:
    """(cell ids, unlabelled :class:`CellData`) of every neuron skeleton in ``workdir``."""
    from syngraph import skeleton_io
    from syngraph.io.volume import open_layer
    from syngraph.steps.compartments.run import cell_features, load_organelles
    from syngraph.steps.skeletons.run import astrocyte_ids

    wd = Path(workdir)
    if not (wd / "tables" / "skeletons.parquet").exists():
        raise InputError(f"{wd / 'tables' / 'skeletons.parquet'} does not exist: training labels skeleton "
                         f"nodes; run `syngraph run skeletons` first")
    ids = np.setdiff1d(skeleton_io.cell_ids(wd).astype(np.uint64), astrocyte_ids(wd))
    voxel = np.asarray(open_layer(wd, "sv").info.voxel_size_nm, np.float64)
    orgs = load_organelles(wd, ids, voxel) if organelles else {}
    cells = []
    for c in ids.tolist():
        s = skeleton_io.read_skeleton(wd, int(c))
        tree = Tree(s.nodes_nm.astype(np.float64), s.parent_id, s.radius_nm.astype(np.float64))
        x = cell_features(tree, s.attributes.get("myelin"), orgs.get(int(c), {}) if organelles else None)
        cells.append(CellData(tree, x, np.zeros(len(s), np.uint8)))
    return ids, cells


def demo_cells(workdir: str | Path, organelles: bool = True) -> list[CellData]:
    """Neuron cells of a demo working directory, every node labelled from ``gt_compartments``
    (but see :data:`MIN_SOMA_RADIUS_NM`)."""
    from syngraph.evaluate.compartments import voxel_labels
    from syngraph.io.volume import open_layer

    _, cells = workdir_cells(workdir, organelles)
    layer = open_layer(workdir, "gt_compartments")
    gt, vox = layer.read(), np.asarray(layer.info.voxel_size_nm, np.float64)
    out = []
    for c in cells:
        y = voxel_labels(gt, c.tree.nodes_nm, vox)
        y = np.where(np.isin(y, CLASSES), y, 0).astype(np.uint8)
        y[(y == cp.SOMA) & (c.tree.radius_nm < MIN_SOMA_RADIUS_NM)] = 0
        out.append(CellData(c.tree, c.x, y))
    return out


def read_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(points nm (n, 3), codes) from a csv / parquet with x_nm, y_nm, z_nm, label (names)."""
    from syngraph.io.tables import read_table_file

    t = read_table_file(path, "--labels")
    missing = [c for c in ("x_nm", "y_nm", "z_nm", "label") if c not in t.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; a label file needs x_nm, y_nm, z_nm, label")
    names = [str(v).strip() for v in t.column("label").to_pylist()]
    allowed = {cp.name(c) for c in CLASSES}
    for row, v in enumerate(names):
        if v not in allowed:
            raise InputError(f"{path}: row {row + 2}: unknown label {v!r}; use one of "
                             f"{', '.join(sorted(allowed))}")
    xyz = np.stack([np.asarray(t.column(c).to_pylist(), np.float64) for c in ("x_nm", "y_nm", "z_nm")], 1)
    return xyz, np.array([cp.CODES[v] for v in names], np.uint8)


def label_nodes(workdir: Path, path: Path, xyz: np.ndarray, codes: np.ndarray,
                ids: np.ndarray, cells: list[CellData], snap_nm: float = 250.0) -> list[CellData]:
    """Put each point's label on the nearest skeleton node of the cell the point lies in (or,
    for a point on no skeletonized neuron's voxel, the nearest node within ``snap_nm``)."""
    from scipy.spatial import cKDTree

    from syngraph.steps.compartments.spines import cell_at_points

    owner = cell_at_points(workdir, xyz)
    pos = {int(c): i for i, c in enumerate(ids.tolist())}
    which = np.repeat(np.arange(len(cells)), [len(c.y) for c in cells])
    first = np.r_[0, np.cumsum([len(c.y) for c in cells])[:-1]]
    every = cKDTree(np.concatenate([c.tree.nodes_nm for c in cells])) if cells else None
    ys = [c.y.copy() for c in cells]
    for row, (p, c, k) in enumerate(zip(xyz, owner.tolist(), codes.tolist(), strict=True)):
        if int(c) in pos:
            i = pos[int(c)]
            node = int(np.argmin(np.linalg.norm(cells[i].tree.nodes_nm - p, axis=1)))
        else:
            d, j = every.query(p) if every is not None else (np.inf, 0)
            if d > snap_nm:
                raise InputError(
                    f"{path}: row {row + 2}: point ({p[0]:.0f}, {p[1]:.0f}, {p[2]:.0f}) nm lies in no "
                    f"skeletonized neuron (astrocytes excluded), and no neuron's node is within {snap_nm:.0f} nm; check the "
                    f"units are nm and the axes XYZ, or drop the row")
            i, node = int(which[j]), int(j - first[which[j]])
        ys[i][node] = k
    counts = np.bincount(np.concatenate(ys), minlength=len(cp.NAMES))
    few = [f"{cp.name(k)} ({int(counts[k])})" for k in np.unique(codes) if counts[k] < MIN_PER_CLASS]
    if few or (counts[list(CLASSES)] > 0).sum() < 2:
        raise InputError(f"{path}: too few labelled nodes per class: {', '.join(few) or 'one class only'}; "
                         f"label >= {MIN_PER_CLASS} points (on distinct nodes) of each class you use, "
                         f"and at least two classes")
    return [CellData(c.tree, c.x, y) for c, y in zip(cells, ys, strict=True)]


def train_compartments(workdir: str | Path, labels: str | Path, out: str | Path | None = None
                       ) -> tuple[Path, dict[str, float]]:
    """``syngraph train compartments``: fit on labelled points; returns (model path, 2-fold
    cross-validated scores over cells)."""
    from syngraph.config import load_config
    from syngraph.steps.compartments.run import has_organelles

    wd = Path(workdir)
    path = Path(labels)
    xyz, codes = read_points(path)
    organelles = has_organelles(wd)
    ids, cells = workdir_cells(wd, organelles)
    every = cells
    cells = [c for c in label_nodes(wd, path, xyz, codes, ids, cells) if (c.y > 0).any()]
    variant = "full" if organelles else "shape"
    halves = [cells[0::2], cells[1::2]]
    scores: dict[str, float] = {}
    if all(len(h) for h in halves):
        try:
            cv = cross_validate(halves, variant, load_config(wd).compartments)
            scores = {k: float(np.nanmean([c[k] for c in cv])) for k in cv[0]}
        except ValueError:  # a half without two classes: no cross-validation
            scores = {}
    model = fit_model([cells], organelles, {"trained_on": str(path.resolve()), "points": str(len(codes))},
                      domain_cells=every)
    target = Path(out) if out is not None else wd / "models" / "compartments.npz"
    return model.save(target), scores


def main(argv: list[str] | None = None) -> int:
    """Train the shipped model on demo working directories (skeletons step done) and print the
    leave-one-directory-out scores. ``python -m syngraph.steps.compartments.train WD [WD ...]
    [--out PATH] [--cv [full] [shape]]``."""
    import argparse

    from syngraph.config import CompartmentParams
    from syngraph.models.compartments import DEFAULT_MODEL_PATH

    ap = argparse.ArgumentParser(prog="python -m syngraph.steps.compartments.train", description=main.__doc__)
    ap.add_argument("workdirs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    ap.add_argument("--cv", nargs="*", default=["full", "shape"], choices=["full", "shape"],
                    help="variants to cross-validate (leave one working directory out); none: skip")
    args = ap.parse_args(argv)
    groups = [demo_cells(wd) for wd in args.workdirs]
    for wd, g in zip(args.workdirs, groups, strict=True):
        y = np.concatenate([c.y for c in g])
        print(f"{wd}: {len(g)} cells, {y.size} nodes, per class "
              f"{ {cp.name(k): int((y == k).sum()) for k in CLASSES} }")
    info = {"trained_on": " ".join(str(w) for w in args.workdirs)}
    if len(groups) > 1:
        for v in args.cv:
            cv = cross_validate(groups, v, CompartmentParams())
            for wd, s in zip(args.workdirs, cv, strict=True):
                print(f"cv {v} held-out {wd.name}: " + ", ".join(f"{k} {x:.3f}" for k, x in s.items()))
            mean = {k: float(np.nanmean([c[k] for c in cv])) for k in cv[0] if k != "n_nodes"}
            print(f"cv {v} mean: " + ", ".join(f"{k} {x:.3f}" for k, x in mean.items()))
            info |= {f"cv_{v}_{k}": f"{x:.4f}" for k, x in mean.items()}
    fit_model(groups, True, info).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
