"""What a column holds, whichever library holds it: pandas, pyarrow or NumPy.

Profiles count pandas frames (training data, the inference log) and Arrow tables
(`loopml drift` reads files with pyarrow and never imports pandas: that import and the
conversion would cost more than the whole check). Numbers come out as float64 blocks with
NaN for nulls, zero-copy where the data allows: an Arrow column chunk by chunk (one
whole-column `to_numpy` costs ten times the counting), a pandas column whole. Everything
else comes out as distinct values with their counts.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

Column = Any  # a pandas Series, a pyarrow (Chunked)Array or a float64 NumPy array
# Column names that say "identifier": customer_id, uuid, order_no, ...
ID_NAME = re.compile(r"(^|[_\s.-])(id|uuid|guid|key|code|number|no|nr)$|^(id|uuid|guid)([_\s.-]|$)", re.IGNORECASE)
ID_MIN_ROWS = 100  # fewer rows than this say nothing about uniqueness


def names(frame) -> list[Any]:
    """Column names of a pandas DataFrame or a pyarrow Table."""
    return list(frame.column_names) if _is_arrow(frame) else list(frame.columns)


def is_numeric(values: Column) -> bool:
    """Integers, floats, decimals and times (compared as seconds); booleans count as categories."""
    if isinstance(values, np.ndarray):
        return values.dtype.kind in "iufM"
    if _is_arrow(values):
        import pyarrow as pa

        kind = values.type
        return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
                or pa.types.is_temporal(kind))  # fmt: skip
    import pandas as pd

    return (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)) or \
        pd.api.types.is_datetime64_any_dtype(values)  # fmt: skip


def kind_name(values: Column) -> str:
    """What a column holds, in a word, for messages: number, text, true/false, nested, ..."""
    if is_numeric(values):
        return "number"
    if _is_arrow(values):
        import pyarrow as pa

        kind = values.type
        if pa.types.is_boolean(kind):
            return "true/false"
        if pa.types.is_nested(kind):
            return "nested"
        return "text"
    if isinstance(values, np.ndarray):
        return "text"
    import pandas as pd

    if pd.api.types.is_bool_dtype(values):
        return "true/false"
    return "nested" if is_nested(values) else "text"


def is_nested(values: Column) -> bool:
    """Lists, structs or maps in each cell: not comparable as numbers or categories."""
    if _is_arrow(values):
        import pyarrow as pa

        return pa.types.is_nested(values.type)
    if isinstance(values, np.ndarray) or values.dtype != object:
        return False
    first = values.dropna().head(20)
    return any(isinstance(v, list | dict | tuple | set | np.ndarray) for v in first)


def looks_like_id(values: Column, name: str) -> bool:
    """An identifier (or free text): integers or text, (nearly) a distinct value per row, and an
    ID-like name or a row counter. Drift on such a column only ever says "all new"."""
    rows = len(values)
    if rows < ID_MIN_ROWS:
        return False
    if _is_arrow(values):
        import pyarrow as pa
        import pyarrow.compute as pc

        kind = values.type
        integer = pa.types.is_integer(kind)
        if not (integer or pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind)):
            return False
        present = rows - values.null_count
        distinct = len(pc.unique(pc.drop_null(values)))  # count_distinct lacks a dictionary kernel
    else:
        import pandas as pd

        integer = pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if not (integer or values.dtype == object or pd.api.types.is_string_dtype(values)):
            return False
        present = int(values.notna().sum())
        distinct = int(values.nunique())
    if present < ID_MIN_ROWS or distinct < 0.95 * present:
        return False
    return bool(ID_NAME.search(str(name))) or not integer or distinct == present


@dataclass
class FloatBlock:
    """float64 values, and where they are null (None: no nulls but NaN). Arrow leaves a null's
    value slot undefined; `nulls` says which slots to ignore, so no filled copy is made."""

    values: np.ndarray
    nulls: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    def masked(self, step: int = 1, start: int = 0, stop: int | None = None) -> np.ndarray:
        """values[start:stop:step] with NaN for nulls."""
        picked = self.values[start:stop:step]
        if self.nulls is None:
            return picked
        return np.where(self.nulls[start:stop:step], np.nan, picked)


def float_blocks(values: Column) -> list[FloatBlock]:
    """The column as float64 blocks (text that is not a number is null), without copying where the
    data allows: an Arrow column chunk by chunk, a pandas float column whole."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "M":
            return [
                FloatBlock(np.where(np.isnat(values), np.nan, values.astype("datetime64[ns]").astype(np.int64) / 1e9))
            ]
        return [FloatBlock(values.astype(np.float64, copy=False))]
    if _is_arrow(values):
        return [_arrow_floats(chunk) for chunk in getattr(values, "chunks", [values]) if len(chunk)]
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values):  # times as seconds since the epoch
        stamps = values.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(values.dt, "tz", None) else values
        seconds = stamps.astype("datetime64[ns]").to_numpy().astype(np.int64) / 1e9
        return [FloatBlock(np.where(stamps.isna().to_numpy(), np.nan, seconds))]
    if values.dtype == np.float64:  # a NumPy-backed float column: no copy
        return [FloatBlock(values.to_numpy())]
    return [FloatBlock(pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))]


def _arrow_floats(chunk) -> FloatBlock:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_temporal(chunk.type):  # times as seconds since the epoch
        unit = getattr(chunk.type, "unit", "s")
        chunk = pc.divide(pc.cast(pc.cast(chunk, pa.timestamp(unit)) if pa.types.is_date(chunk.type) else chunk,
                                  pa.int64()).cast(pa.float64()),
                          {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}.get(unit, 1.0))  # fmt: skip
    if chunk.type != pa.float64():
        chunk = pc.cast(chunk, pa.float64(), safe=False)  # integers past 2^53 round, as in pandas
    # The data buffer as it is (zero-copy) and the validity bitmap unpacked to one byte a row
    # (an eighth of the data); filling nulls with NaN instead copies every chunk.
    values = np.frombuffer(chunk.buffers()[1], dtype=np.float64, count=chunk.offset + len(chunk))[chunk.offset :]
    if not chunk.null_count:
        return FloatBlock(values)
    bitmap = np.frombuffer(chunk.buffers()[0], dtype=np.uint8)
    nulls = np.unpackbits(~bitmap, count=chunk.offset + len(chunk), bitorder="little")[chunk.offset :]
    return FloatBlock(values, nulls.view(bool))


def value_counts(values: Column) -> tuple[list[Any], np.ndarray, int]:
    """Distinct non-null values (as Python objects), how often each occurs, and the number of nulls."""
    if isinstance(values, np.ndarray):
        present = values[~np.isnan(values)]
        distinct, counts = np.unique(present, return_counts=True)
        return distinct.tolist(), counts, len(values) - len(present)
    if not _is_arrow(values):
        import pandas as pd

        dtype = values.dtype
        if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
            codes, uniques = pd.factorize(values, use_na_sentinel=True)  # instant for categoricals
            found = codes >= 0
            counts = np.bincount(codes[found], minlength=len(uniques))
            return list(uniques), counts, int(len(codes) - found.sum())
    # Arrow (and pandas' Arrow-backed text, 20% faster than hashing it through pandas); a
    # dictionary-encoded column is counted by its indices, without looking at a string
    import pyarrow as pa
    import pyarrow.compute as pc

    counted = pc.value_counts(values if _is_arrow(values) else pa.array(values))
    distinct, counts = counted.field("values"), counted.field("counts")
    valid = pc.is_valid(distinct)
    present = _int64s(counts.filter(valid))
    return distinct.filter(valid).to_pylist(), present, len(values) - int(present.sum())


def _int64s(array) -> np.ndarray:
    """A null-free Arrow int64 array as NumPy, zero-copy (Arrow's own `to_numpy` imports pandas: 0.3 s)."""
    return np.frombuffer(array.buffers()[1], dtype=np.int64, count=array.offset + len(array))[array.offset :]


def category_index(categories: list[Any], uniques: list[Any]) -> np.ndarray:
    """Index of each unique value among `categories`, -1 for a value they lack. Numbers compare
    as numbers (3 and 3.0 are one category), everything else by its text."""
    lookup: dict[Any, int] = {}
    for i, category in enumerate(categories):
        lookup.setdefault(str(category), i)
        if _is_number(category):
            lookup.setdefault(float(category), i)
    found = (lookup.get(float(u), lookup.get(str(u), -1)) if _is_number(u) else lookup.get(str(u), -1) for u in uniques)
    return np.fromiter(found, dtype=np.intp, count=len(uniques))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _is_arrow(values: Any) -> bool:
    return type(values).__module__.startswith("pyarrow")
