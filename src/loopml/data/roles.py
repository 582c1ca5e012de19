"""What each column of a raw table is for: numeric, categorical, boolean, datetime, free text, an ID
(excluded), or nothing (constant or empty: excluded). Inferred once from the data, written to
`loopml.yaml` (`data.columns`) where the user can override it, and read by training (which
preprocessing a column gets), validation, drift (IDs are skipped) and `loopml init --from` (the task).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from loopml.data.columns import ID_NAME

NUMERIC, CATEGORICAL, BOOLEAN, DATETIME, TEXT, ID, IGNORE = (
    "numeric", "categorical", "boolean", "datetime", "text", "id", "ignore")  # fmt: skip
FEATURE_ROLES = (NUMERIC, CATEGORICAL, BOOLEAN, DATETIME)  # what a tabular model is given
MAX_CATEGORIES = 50  # a text column with at most this many values is categorical (and gets an allowed-values check)
SAMPLE = 20_000  # rows looked at to tell dates and numbers stored as text


@dataclass(frozen=True)
class ColumnRole:
    column: str
    role: str
    reason: str


def infer_roles(frame: pd.DataFrame, target: str | None = None) -> dict[str, ColumnRole]:
    """The role of every column but the target, with the reason (for people)."""
    return {str(c): infer_role(frame[c], str(c)) for c in frame.columns if c != target}


def infer_role(series: pd.Series, name: str) -> ColumnRole:
    present = series.dropna()
    if present.empty:
        return ColumnRole(name, IGNORE, "empty: every value is missing")
    distinct = present.nunique()
    if distinct <= 1:
        first = present.iloc[0]
        first = first.item() if hasattr(first, "item") else first
        return ColumnRole(name, IGNORE, f"constant: every value is {first!r}")
    if pd.api.types.is_bool_dtype(series):
        return ColumnRole(name, BOOLEAN, "true/false values")
    if pd.api.types.is_datetime64_any_dtype(series):
        return ColumnRole(name, DATETIME, "dates")
    if pd.api.types.is_numeric_dtype(series):
        if _id_like_numbers(present, name):
            return ColumnRole(name, ID, "a distinct integer per row")
        return ColumnRole(name, NUMERIC, "numbers")
    sample = present.astype(str).head(SAMPLE)
    if looks_like_dates(sample):
        return ColumnRole(name, DATETIME, "dates stored as text (parsed)")
    unique_share = distinct / len(present)
    if distinct <= MAX_CATEGORIES or unique_share <= 0.5:
        return ColumnRole(name, CATEGORICAL, f"{distinct} distinct values")
    if _free_text(sample):
        return ColumnRole(name, TEXT, "free text (left out of tabular models)")
    if unique_share > 0.9:
        return ColumnRole(name, ID, f"{distinct} distinct values in {len(present)} rows")
    return ColumnRole(name, CATEGORICAL, f"{distinct} distinct values (the rare ones grouped)")


def looks_like_dates(text: pd.Series) -> bool:
    """Do at least 95% of these strings parse as ISO 8601 dates (2026-11-30, 2026-11-30T10:00:00Z)?"""
    candidates = text[text.str.match(r"^\s*\d{4}-\d{2}-\d{2}")]
    if len(candidates) < 0.95 * len(text):
        return False
    parsed = pd.to_datetime(candidates, format="ISO8601", errors="coerce", utc=True)
    return parsed.notna().mean() >= 0.95


def mixed_types(series: pd.Series) -> tuple[float, object] | None:
    """For a text column mostly of numbers: (share that are numbers, an example that is not)."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return None
    present = series.dropna().head(SAMPLE)
    if present.empty:
        return None
    numbers = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
    share = float(numbers.notna().mean())
    if 0.5 <= share < 1.0:
        return share, present[numbers.isna()].iloc[0]
    kinds = {type(v) for v in present}
    if len(kinds & {int, float, str}) > 1:  # Parquet/object columns mixing Python types
        return share, next(v for v in present if isinstance(v, str))
    return None


def _id_like_numbers(present: pd.Series, name: str) -> bool:
    if not pd.api.types.is_integer_dtype(present) and not (present % 1 == 0).all():
        return False
    if present.nunique() < 0.95 * len(present) or len(present) < 20:  # a few duplicated rows are still rows
        return False
    if ID_NAME.search(name):
        return True
    steps = np.diff(np.sort(present.unique()))
    return bool((steps == 1).mean() > 0.95)  # 1, 2, 3, ...: a row counter


def _free_text(sample: pd.Series) -> bool:
    words = sample.str.split().str.len()
    return bool(words.mean() >= 3 or sample.str.len().mean() >= 40)


def effective(inferred: dict[str, ColumnRole], configured: dict[str, str], exclude: list[str]) -> dict[str, str]:
    """Roles after the user's word: `data.columns` overrides (keys may be patterns such as
    "pixel_*"), `data.exclude` drops (names or patterns)."""
    import fnmatch

    def configured_role(name: str) -> str | None:
        if name in configured:
            return configured[name]
        return next((role for pattern, role in configured.items() if fnmatch.fnmatchcase(name, pattern)), None)

    roles = {name: (configured_role(name) or found.role) for name, found in inferred.items()}
    for name in roles:
        if any(name == pattern or fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
            roles[name] = IGNORE
    return roles


def features(roles: dict[str, str]) -> list[str]:
    """The columns a tabular model is given, in table order."""
    return [name for name, role in roles.items() if role in FEATURE_ROLES]


def infer_task(target: pd.Series) -> tuple[str, str]:
    """classification or regression for a target column, with the reason (for people)."""
    present = target.dropna()
    distinct = present.nunique()
    if pd.api.types.is_bool_dtype(target):
        return "classification", "the target holds true/false values"
    if not pd.api.types.is_numeric_dtype(target):
        return "classification", f"the target holds text ({distinct} distinct values: the classes)"
    whole = bool((present % 1 == 0).all())
    if whole and distinct <= 20:
        return "classification", f"the target holds {distinct} distinct whole numbers (the classes)"
    return "regression", f"the target holds continuous numbers ({distinct} distinct values)"
