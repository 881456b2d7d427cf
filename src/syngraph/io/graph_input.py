"""Reading a supervoxel graph the way labs have it, with validation that names file and rows.

Accepted inputs (``config.rag`` or ``run_rag(..., rag=PATH)``):

- an edge list of supervoxel id pairs: ``.csv`` / ``.tsv`` / ``.txt`` (two integer columns,
  optional header ``sv_a,sv_b``), ``.npy`` (an ``(m, 2)`` integer array), ``.parquet`` (columns
  ``sv_a``, ``sv_b``);
- an agglomeration (supervoxel -> cell table, e.g. exported from a proofreading tool): ``.csv``
  or ``.parquet`` with columns ``sv_id``, ``cell_id``. It becomes a chain of edges per cell
  (same components, ``n - 1`` edges per cell).

Self edges and duplicate edges (also ``(b, a)`` after ``(a, b)``) are dropped with a warning
that names the file and the first rows; negative ids, non-integer values and wrong columns
raise :class:`GraphInputError`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from syngraph.errors import InputError

EDGE_COLUMNS = ("sv_a", "sv_b")
AGGLO_COLUMNS = ("sv_id", "cell_id")


class GraphInputError(InputError):
    """A supervoxel graph file cannot be used as given."""


class GraphInputWarning(UserWarning):
    """Rows of a supervoxel graph file were dropped (self edges, duplicates, unknown ids)."""


@dataclass(frozen=True)
class GraphInput:
    """A validated supervoxel graph: ``edges`` is ``(m, 2)`` uint64 with ``a < b``, unique, sorted."""

    path: str
    kind: Literal["edges", "agglomeration"]
    edges: np.ndarray
    n_rows: int
    n_self: int
    n_duplicate: int


def _rows(idx: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(i)) for i in idx[:limit])
    return shown + (f" ... ({idx.size} rows)" if idx.size > limit else "")


def _as_ids(values: np.ndarray, path: str, column: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.floor(arr)))
        if bad.size:
            raise GraphInputError(
                f"{path}: column {column} has non-integer values in rows {_rows(bad)} "
                f"(e.g. {arr[bad[0]]!r}); supervoxel ids must be non-negative integers"
            )
        if arr.size and arr.max() >= 2**53:
            raise GraphInputError(
                f"{path}: column {column} is floating point with ids >= 2**53 that lost precision; "
                f"write the ids as integers (uint64)"
            )
    elif arr.dtype.kind not in "iu":
        raise GraphInputError(
            f"{path}: column {column} has dtype {arr.dtype}, expected integer supervoxel ids (uint64)"
        )
    if arr.dtype.kind in "if" and arr.size:
        neg = np.flatnonzero(arr < 0)
        if neg.size:
            raise GraphInputError(
                f"{path}: column {column} has negative ids in rows {_rows(neg)} (e.g. {arr[neg[0]]}); "
                f"supervoxel ids must be non-negative"
            )
    return arr.astype(np.uint64)


def _read_csv(path: Path) -> tuple[dict[str, np.ndarray], bool]:
    """Columns of a delimited text file; returns (columns, had_header)."""
    import pyarrow.csv as pcsv

    text_head = path.open("r").readline()
    delim = "\t" if "\t" in text_head else ("," if "," in text_head else " ")
    first = [t.strip() for t in text_head.strip().split(delim) if t.strip()]
    has_header = bool(first) and not all(t.lstrip("-").replace(".", "", 1).isdigit() for t in first)
    read_opts = pcsv.ReadOptions(autogenerate_column_names=not has_header)
    parse = pcsv.ParseOptions(delimiter=delim)
    try:
        table = pcsv.read_csv(path, read_options=read_opts, parse_options=parse)
    except pa.ArrowInvalid as exc:
        raise GraphInputError(f"{path}: cannot parse as a {delim!r}-delimited table: {exc}") from exc
    cols = {name: table.column(name).to_numpy() for name in table.column_names}
    if not has_header:
        names = list(cols)
        if len(names) != 2:
            raise GraphInputError(
                f"{path}: a headerless edge list needs exactly 2 columns (sv_a, sv_b), found {len(names)}"
            )
        cols = {"sv_a": cols[names[0]], "sv_b": cols[names[1]]}
    return cols, has_header


def _read_columns(path: Path) -> dict[str, np.ndarray]:
    try:
        return _read_columns_unchecked(path)
    except (ValueError, OSError, EOFError, pa.ArrowException) as exc:
        if isinstance(exc, GraphInputError | FileNotFoundError):
            raise
        raise GraphInputError(
            f"{path}: cannot read it as a {path.suffix or 'graph'} file ({type(exc).__name__}: {exc}); "
            f"the file is damaged or not in that format: write it again (csv, npy or parquet)"
        ) from exc


def _read_columns_unchecked(path: Path) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise GraphInputError(
                f"{path}: an .npy edge list must have shape (m, 2), found {arr.shape}"
            )
        return {"sv_a": arr[:, 0], "sv_b": arr[:, 1]}
    if suffix == ".parquet":
        table = pq.read_table(path)
        return {name: table.column(name).to_numpy() for name in table.column_names}
    if suffix in (".csv", ".tsv", ".txt"):
        return _read_csv(path)[0]
    raise GraphInputError(
        f"{path}: unknown graph format '{suffix}'; use .csv/.tsv/.txt, .npy or .parquet"
    )


def agglomeration_edges(sv_id: np.ndarray, cell_id: np.ndarray) -> np.ndarray:
    """Chain edges (consecutive sorted members) that give the same components as a sv->cell table.

    >>> agglomeration_edges(np.array([5, 1, 3, 9], np.uint64), np.array([7, 7, 7, 9], np.uint64)).tolist()
    [[1, 3], [3, 5]]
    """
    order = np.lexsort((sv_id, cell_id))
    s, c = sv_id[order], cell_id[order]
    same = c[1:] == c[:-1]
    return np.stack([s[:-1][same], s[1:][same]], axis=1).astype(np.uint64)


def read_graph(path: str | Path) -> GraphInput:
    """Read and validate an edge list or agglomeration table (see the module docstring)."""
    p = Path(path)
    if not p.exists():
        raise GraphInputError(
            f"supervoxel graph file {p} does not exist; set `rag` in syngraph.toml to an edge list "
            f"(csv, npy, parquet) or a sv_id/cell_id table, or leave it empty"
        )
    cols = _read_columns(p)
    names = set(cols)
    if set(EDGE_COLUMNS) <= names:
        kind: Literal["edges", "agglomeration"] = "edges"
        a = _as_ids(cols["sv_a"], str(p), "sv_a")
        b = _as_ids(cols["sv_b"], str(p), "sv_b")
    elif set(AGGLO_COLUMNS) <= names:
        kind = "agglomeration"
        sv = _as_ids(cols["sv_id"], str(p), "sv_id")
        cell = _as_ids(cols["cell_id"], str(p), "cell_id")
        order = np.argsort(sv, kind="stable")
        dup = np.flatnonzero(sv[order][1:] == sv[order][:-1])
        if dup.size:
            conflict = dup[cell[order][dup + 1] != cell[order][dup]]
            if conflict.size:
                rows = order[conflict + 1]
                raise GraphInputError(
                    f"{p}: supervoxels assigned to more than one cell in rows {_rows(rows)} "
                    f"(e.g. sv {sv[rows[0]]}); each sv_id must appear with one cell_id"
                )
        edges = agglomeration_edges(sv, cell)
        return GraphInput(str(p), kind, _unique(edges), len(sv), 0, 0)
    else:
        raise GraphInputError(
            f"{p}: columns {sorted(names)} are neither an edge list ({', '.join(EDGE_COLUMNS)}) "
            f"nor an agglomeration ({', '.join(AGGLO_COLUMNS)}); rename the columns"
        )
    return _validate_edges(str(p), kind, a, b)


def _unique(e: np.ndarray) -> np.ndarray:
    from syngraph.graph import normalize_edges

    return normalize_edges(e)


def _validate_edges(path: str, kind: Literal["edges", "agglomeration"], a: np.ndarray, b: np.ndarray) -> GraphInput:
    n = a.size
    self_rows = np.flatnonzero(a == b)
    if self_rows.size:
        warnings.warn(
            f"{path}: dropped {self_rows.size} self edges (rows {_rows(self_rows)})",
            GraphInputWarning,
            stacklevel=3,
        )
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    rows = np.flatnonzero(keep)
    lo, hi = lo[keep], hi[keep]
    order = np.lexsort((hi, lo))
    dup_sorted = np.flatnonzero((lo[order][1:] == lo[order][:-1]) & (hi[order][1:] == hi[order][:-1]))
    dup_rows = np.sort(rows[order[dup_sorted + 1]])
    if dup_rows.size:
        warnings.warn(
            f"{path}: dropped {dup_rows.size} duplicate edges (rows {_rows(dup_rows)})",
            GraphInputWarning,
            stacklevel=3,
        )
    edges = np.stack([lo[order], hi[order]], axis=1)
    uniq = np.ones(edges.shape[0], bool)
    uniq[dup_sorted + 1] = False
    return GraphInput(path, kind, edges[uniq], n, int(self_rows.size), int(dup_rows.size))


def check_known(graph: GraphInput, known_ids: np.ndarray, *, drop_unknown: bool) -> np.ndarray:
    """Edges whose both ends are in ``known_ids`` (sorted uint64); unknown ids raise unless dropped."""
    e = graph.edges
    if e.size == 0:
        return e
    pos = np.searchsorted(known_ids, e)
    pos = np.minimum(pos, max(known_ids.size - 1, 0))
    found = known_ids[pos] == e if known_ids.size else np.zeros(e.shape, bool)
    ok = found.all(axis=1)
    if ok.all():
        return e
    unknown = np.unique(e[~found])
    msg = (
        f"{graph.path}: {unknown.size} supervoxel ids are not in the sv layer "
        f"(e.g. {', '.join(str(int(u)) for u in unknown[:10])}), in {int((~ok).sum())} edges"
    )
    if not drop_unknown:
        raise GraphInputError(
            msg + "; fix the edge list or pass --drop-unknown (Python: drop_unknown=True) to drop those edges"
        )
    warnings.warn(msg + "; dropped them (drop_unknown)", GraphInputWarning, stacklevel=2)
    return e[ok]
