"""Reading tables (Parquet first, CSV; local paths or any fsspec URL) and digesting them.

Reads never write: raw data is opened read-only and never modified. A CSV's encoding (UTF-8, else
the legacy encoding its bytes fit), delimiter and decimal mark are detected unless given, and said;
duplicate header names are refused (pandas would rename them silently). Every failure becomes a
`DataError` that says which file, what went wrong and how to fix it.
"""

from __future__ import annotations

import csv
import hashlib
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.data.columns import names
from loopml.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

READERS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv", ".txt": "csv"}
SNIFF_BYTES = 1 << 16
LEGACY_ENCODINGS = ("cp1252", "latin-1")  # latin-1 decodes any byte: the last resort


@dataclass(frozen=True)
class CsvOptions:
    """How to read a CSV: what the user set (None or "auto": detect)."""

    encoding: str = "auto"
    delimiter: str | None = None
    decimal: str | None = None

    @classmethod
    def of(cls, data_config) -> CsvOptions:
        return cls(data_config.encoding, data_config.delimiter, data_config.decimal)


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV was read, and whether each part was detected."""

    encoding: str
    delimiter: str
    decimal: str
    detected: tuple[str, ...] = ()  # which of encoding / delimiter / decimal were detected

    def describe(self) -> str:
        shown = {"\t": "tab"}.get(self.delimiter, self.delimiter)
        return f"encoding {self.encoding}, delimiter {shown!r}, decimal {self.decimal!r}"


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


def read_table(path: str | Path, columns: list[str] | None = None, options: CsvOptions | None = None) -> pd.DataFrame:
    """Read a whole table into pandas; raise `DataError` for a missing, corrupt or empty file."""
    return read_table_info(path, columns, options)[0]


def read_table_info(path: str | Path, columns: list[str] | None = None,
                    options: CsvOptions | None = None) -> tuple[pd.DataFrame, CsvFormat | None]:  # fmt: skip
    """`read_table`, and how a CSV was read (None for Parquet)."""
    found: list[CsvFormat | None] = [None]

    def read(path: str, fmt: str) -> pd.DataFrame:
        import pandas as pd

        if fmt == "parquet":
            return pd.read_parquet(path, columns=columns)
        sniffed = sniff_csv(path, fmt, options or CsvOptions())
        found[0] = sniffed
        header = _header(path, sniffed)
        with warnings.catch_warnings():
            # pandas drops the extra fields of a too-long first row with only a ParserWarning
            warnings.simplefilter("error", pd.errors.ParserWarning)
            try:
                return pd.read_csv(path, sep=sniffed.delimiter, decimal=sniffed.decimal, encoding=sniffed.encoding,
                                   usecols=columns, names=header, header=0, index_col=False,
                                   on_bad_lines="error", low_memory=False)  # fmt: skip
            except pd.errors.ParserWarning:
                raise DataError(
                    f"{path}: a row has more fields than the header ({len(header)}); fix that row, or "
                    "set data.delimiter if the file uses another separator"
                ) from None

    return _read(str(path), read), found[0]


def read_arrow(path: str | Path, columns: list[str] | None = None, options: CsvOptions | None = None) -> pa.Table:
    """Read a table (or some of its columns) into Arrow, text as dictionaries (Parquet stores it
    so: no Python string per row, and counting it is counting small integers); `DataError` like
    `read_table`. What `loopml drift` reads with: it never converts to pandas."""
    return _read(str(path), lambda path, fmt: _read_arrow(path, fmt, columns, options or CsvOptions()))


def _read(path: str, reader: Callable[[str, str], Any]) -> Any:
    fmt = table_format(path)
    if not is_url(path) and not Path(path).exists():
        raise DataError(
            f"{path}: data file not found; check data.path in loopml.yaml "
            "or run the prepare stage (`loopml run`) that creates it"
        )
    try:
        table = reader(path, fmt)
    except DataError:
        raise
    except (OSError, ValueError, ImportError, UnicodeDecodeError, csv.Error) as exc:
        raise _unreadable(path, fmt, exc) from None
    width = len(names(table))
    if len(table) == 0 or width == 0:
        raise DataError(f"{path}: the dataset is empty ({width} columns, {len(table)} rows)")
    return table


def sniff_csv(path: str, fmt: str = "csv", options: CsvOptions | None = None) -> CsvFormat:
    """The encoding, delimiter and decimal mark of a CSV, from its first 64 KiB (or as given)."""
    options = options or CsvOptions()
    head = _head(path)
    detected = []
    encoding = options.encoding
    if encoding == "auto":
        encoding = _detect_encoding(head, path)
        detected.append("encoding")
    text = head.decode(encoding, errors="replace")
    delimiter = options.delimiter or ("\t" if fmt == "tsv" else None)
    if delimiter is None:
        delimiter = _detect_delimiter(text)
        detected.append("delimiter")
    decimal = options.decimal
    if decimal is None:
        decimal = _detect_decimal(text, delimiter)
        detected.append("decimal")
    return CsvFormat(encoding, delimiter, decimal, tuple(detected))


def _head(path: str) -> bytes:
    if is_url(path):
        import fsspec

        with fsspec.open(path, "rb") as handle:
            return handle.read(SNIFF_BYTES)
    with open(path, "rb") as handle:
        return handle.read(SNIFF_BYTES)


def _detect_encoding(head: bytes, path: str) -> str:
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        # the head may end inside a multi-byte character: ignore an incomplete last one
        head.decode("utf-8") if len(head) < SNIFF_BYTES else head[:-4].decode("utf-8")
        return _whole_file_utf8(path)
    except UnicodeDecodeError:
        pass
    for encoding in LEGACY_ENCODINGS:
        try:
            head.decode(encoding)
            return encoding
        except UnicodeDecodeError:
            continue
    return "latin-1"


def _whole_file_utf8(path: str) -> str:
    """UTF-8 when the whole (local) file decodes as UTF-8; else the legacy encoding it fits. A
    Latin-1 byte past the first 64 KiB must not turn into a crash halfway through the read."""
    if is_url(path):
        return "utf-8"
    decoder = __import__("codecs").getincrementaldecoder("utf-8")()
    with open(path, "rb") as handle:
        try:
            for block in iter(lambda: handle.read(1 << 20), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError:
            return "cp1252"


def _detect_delimiter(text: str) -> str:
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in ",;\t|"}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _detect_decimal(text: str, delimiter: str) -> str:
    """ "," when numbers like 3,14 outnumber 3.14 (only possible when "," does not separate fields)."""
    if delimiter == ",":
        return "."
    cells = [cell.strip().strip('"') for line in text.splitlines()[1:200] for cell in line.split(delimiter)]
    comma = sum(bool(re.fullmatch(r"-?\d+,\d+", c)) for c in cells)
    point = sum(bool(re.fullmatch(r"-?\d+\.\d+", c)) for c in cells)
    return "," if comma > point else "."


def _header(path: str, fmt: CsvFormat) -> list[str]:
    """The header row; duplicate names are a DataError naming them."""
    if is_url(path):
        import fsspec

        opener = fsspec.open(path, "rt", encoding=fmt.encoding, errors="replace", newline="")
    else:
        opener = open(path, encoding=fmt.encoding, errors="replace", newline="")  # noqa: SIM115 - closed below
    with opener as handle:
        header = next(csv.reader(handle, delimiter=fmt.delimiter), [])
    header = [h.lstrip("\ufeff") for h in header]
    seen, dupes = set(), []
    for name in header:
        if name in seen and name not in dupes:
            dupes.append(name)
        seen.add(name)
    if dupes:
        raise DataError(f"{path}: the header names {dupes} more than once; give every column its own name")
    return header


def parquet_columns(path: str) -> list[str]:
    """The column names a local Parquet file holds (from its footer); `DataError` like `read_table`."""
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).names
    except (OSError, ValueError) as exc:
        raise _unreadable(path, "parquet", exc) from None


def _unreadable(path: str, fmt: str, exc: Exception) -> DataError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, UnicodeDecodeError):
        return DataError(f"{path}: not readable as {exc.encoding} text (byte {exc.start}); set data.encoding in "
                         "loopml.yaml (e.g. latin-1 or cp1252), or save the file as UTF-8")  # fmt: skip
    if fmt != "parquet" and ("Expected" in reason and "fields" in reason or "columns" in reason):
        return DataError(f"{path}: {reason}: a row has more or fewer fields than the header; fix that row, or set "
                         "data.delimiter if the file uses another separator")  # fmt: skip
    return DataError(f"{path}: cannot read it as {fmt} ({reason}); is the file complete and really {fmt}?")


def _read_arrow(path: str, fmt: str, columns: list[str] | None, options: CsvOptions) -> pa.Table:
    import pyarrow as pa

    source: Any = path
    if is_url(path):  # local files go to Arrow's own readers: a Python file object is much slower
        import fsspec

        source = fsspec.open(path, "rb").open()
    try:
        if fmt != "parquet":
            from pyarrow import csv as arrow_csv

            sniffed = sniff_csv(path, fmt, options)
            header = _header(path, sniffed)
            # "", "NA", "null"...: nulls, as in pandas
            convert = arrow_csv.ConvertOptions(strings_can_be_null=True, include_columns=columns,
                                               decimal_point=sniffed.decimal)  # fmt: skip
            parse = arrow_csv.ParseOptions(delimiter=sniffed.delimiter)
            read = arrow_csv.ReadOptions(encoding=sniffed.encoding, column_names=header, skip_rows=1)
            return arrow_csv.read_csv(source, read_options=read, parse_options=parse, convert_options=convert)
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
    """MD5 of a local file's bytes (the digest DVC records in dvc.lock). A remote file's digest is
    its store's content checksum (ETag, md5, crc) where there is one, else the MD5 of its bytes."""
    if is_url(str(path)):
        remote = _remote_checksum(str(path))
        if remote:
            return remote
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


def _remote_checksum(url: str) -> str | None:
    import fsspec

    try:
        fs, resolved = fsspec.core.url_to_fs(url)
        info = fs.info(resolved)
    except Exception:  # any store error: fall back to hashing the bytes
        return None
    for key in ("ETag", "etag", "md5Hash", "md5", "checksum", "crc32c"):
        value = info.get(key)
        if value:
            return f"{key.lower()}:{str(value).strip(chr(34))}"
    return None
