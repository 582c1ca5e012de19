"""Reading tables (Parquet first, CSV; local paths or any fsspec URL) and digesting them.

Reads never write: raw data is opened read-only and never modified. Every failure becomes
a `DataError` that says which file, what went wrong and how to fix it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from loopml.errors import DataError

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
    """Read a whole table; raise `DataError` for a missing, corrupt or empty file."""
    path = str(path)
    fmt = table_format(path)
    if not is_url(path) and not Path(path).exists():
        raise DataError(
            f"{path}: data file not found; check data.path in loopml.yaml "
            "or run the prepare stage (`loopml run`) that creates it"
        )
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path, columns=columns)
        else:
            frame = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", usecols=columns)
    except (OSError, ValueError, ImportError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read it as {fmt} ({reason}); is the file complete and really {fmt}?") from None
    if frame.empty:
        raise DataError(f"{path}: the dataset is empty ({len(frame.columns)} columns, 0 rows)")
    return frame


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
