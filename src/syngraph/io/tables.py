"""Reading a user's table file (csv/tsv or parquet), every failure one :class:`InputError`."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa


def read_table_file(path: str | Path, what: str) -> pa.Table:
    """The table in ``path`` (``.parquet``, else csv); ``what`` names it in errors (e.g. "--labels")."""
    from syngraph.errors import InputError

    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"{what} {p}: no such file; check the path (relative paths are taken from {Path.cwd()})")
    try:
        if p.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(p)
        import pyarrow.csv as pcsv

        parse = pcsv.ParseOptions(delimiter="\t") if p.suffix.lower() == ".tsv" else None
        return pcsv.read_csv(p, parse_options=parse)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(
            f"{what} {p}: cannot read it as a {'parquet' if p.suffix.lower() == '.parquet' else 'csv'} "
            f"table ({type(exc).__name__}: {exc}); write it again (csv with a header row, or parquet)"
        ) from exc
