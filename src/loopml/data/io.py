"""Reading tables (Parquet first, CSV; local paths or any fsspec URL) and digesting them.

Reads never write: raw data is opened read-only and never modified. Every failure becomes
a `DataError` that says which file, what went wrong and how to fix it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.data.columns import names
from loopml.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

READERS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv"}


def is_url(path: str) -> bool:
    return "://" in path


def table_format(path: str) -> str:
    suffix = Path(path.split("?")[0]).suffix.lower()
    if suffix not in READERS:
        raise DataError(
            f"{path}: cannot tell the format from the suffix {suffix or '(none)'!r}; "
            f"expected one of {', '.join(sorted(READERS))}"
        )
    return READERS[suffix]


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a whole table into pandas; raise `DataError` for a missing, corrupt or empty file."""

    def read(path: str, fmt: str) -> pd.DataFrame:
        import pandas as pd

        if fmt == "parquet":
            return pd.read_parquet(path, columns=columns)
        return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", usecols=columns)

    return _read(str(path), read)


def read_arrow(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read a table (or some of its columns) into Arrow, text as dictionaries (Parquet stores it
    so: no Python string per row, and counting it is counting small integers); `DataError` like
    `read_table`. What `loopml drift` reads with: it never converts to pandas."""
    return _read(str(path), lambda path, fmt: _read_arrow(path, fmt, columns))


def _read(path: str, reader: Callable[[str, str], Any]) -> Any:
    fmt = table_format(path)
    if not is_url(path) and not Path(path).exists():
        raise DataError(
            f"{path}: data file not found; check data.path in loopml.yaml "
            "or run the prepare stage (`loopml run`) that creates it"
        )
    try:
        table = reader(path, fmt)
    except (OSError, ValueError, ImportError) as exc:
        raise _unreadable(path, fmt, exc) from None
    width = len(names(table))
    if len(table) == 0 or width == 0:
        raise DataError(f"{path}: the dataset is empty ({width} columns, {len(table)} rows)")
    return table


def parquet_columns(path: str) -> list[str]:
    """The column names a local Parquet file holds (from its footer); `DataError` like `read_table`."""
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).names
    except (OSError, ValueError) as exc:
        raise _unreadable(path, "parquet", exc) from None


def _unreadable(path: str, fmt: str, exc: Exception) -> DataError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return DataError(f"{path}: cannot read it as {fmt} ({reason}); is the file complete and really {fmt}?")


def _read_arrow(path: str, fmt: str, columns: list[str] | None) -> pa.Table:
    import pyarrow as pa

    source: Any = path
    if is_url(path):  # local files go to Arrow's own readers: a Python file object is much slower
        import fsspec

        source = fsspec.open(path, "rb").open()
    try:
        if fmt != "parquet":
            from pyarrow import csv

            # "", "NA", "null"...: nulls, as in pandas
            options = csv.ConvertOptions(strings_can_be_null=True, include_columns=columns)
            parse = csv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")
            return csv.read_csv(source, parse_options=parse, convert_options=options)
        import pyarrow.parquet as pq

        schema = pq.read_schema(source)
        text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        if columns is not None:
            text = [name for name in text if name in columns]
        if not isinstance(source, str):
            source.seek(0)
        # ParquetFile, not pq.read_table: the same threaded reader without the dataset layer, whose
        # import pulls in pandas (0.3 s)
        return pq.ParquetFile(source, read_dictionary=text).read(columns=columns)
    finally:
        if not isinstance(source, str):
            source.close()


def file_digest(path: str | Path) -> str:
    """MD5 of the file's bytes: the same digest DVC records for a file in dvc.lock."""
    digest = hashlib.md5()
    if is_url(str(path)):
        import fsspec

        opener = fsspec.open(str(path), "rb")
    else:
        opener = open(path, "rb")  # noqa: SIM115 - closed by the with below
    with opener as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
