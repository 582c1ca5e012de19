"""Schema inference, pinning and validation on pandera.

The first validation infers a schema from the data (dtypes, nullability, observed ranges,
allowed categories) and pins it as pandera YAML in the project; later runs validate
against the pinned file, plus the rules written in `loopml.yaml`. A failure lists column,
check, number of failing rows and a few examples.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from loopml.contracts import Failure, plain
from loopml.data.roles import MAX_CATEGORIES
from loopml.errors import ConfigError, DataError

EXAMPLES = 3  # failing values shown per check


@dataclass
class ValidationReport:
    rows: int
    columns: int
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        lines = [
            f"{f.column}: {f.check} failed on {f.rows} row(s), e.g. {', '.join(f.examples)}" for f in self.failures
        ]
        return "\n  ".join(lines)


def infer_schema(frame: pd.DataFrame | Iterable[pd.DataFrame], target: str):
    """A pandera schema of what this data looks like now: of one frame, or of a table's pieces
    (the ranges, categories and nulls of them all, one piece in memory at a time)."""
    import pandera.pandas as pa

    seen: dict[str, dict[str, Any]] = {}
    for piece in [frame] if isinstance(frame, pd.DataFrame) else frame:
        for name in piece.columns:
            _observe(seen.setdefault(str(name), {}), piece[name])
    columns = {}
    for name, facts in seen.items():
        checks = []
        if facts["kind"] == "number" and facts.get("low") is not None:
            checks.append(pa.Check.in_range(plain(facts["low"]), plain(facts["high"])))
        elif facts["kind"] != "bool" and len(facts["values"]) <= MAX_CATEGORIES:
            checks.append(pa.Check.isin(sorted(facts["values"])))  # (a numeric column of nulls only: none)
        columns[name] = pa.Column(facts["dtype"], checks=checks, nullable=facts["nulls"] and name != target,
                                  required=True)  # fmt: skip
    return pa.DataFrameSchema(columns, coerce=False, strict=False)


def _observe(facts: dict[str, Any], series: pd.Series) -> None:
    """Add one piece of a column to what is known of it (dtype, range or categories, nulls)."""
    kind = "bool" if pd.api.types.is_bool_dtype(series) else \
        "number" if pd.api.types.is_numeric_dtype(series) else "other"  # fmt: skip
    if not facts:
        facts.update(dtype=str(series.dtype), kind=kind, nulls=False, low=None, high=None, values=set())
    elif facts["dtype"] != str(series.dtype):  # integers in one row group, floats (nulls) in another
        facts["dtype"] = str(pd.concat([series.iloc[:0], pd.Series([], dtype=facts["dtype"])]).dtype)
    facts["nulls"] = facts["nulls"] or bool(series.isna().any())
    if kind == "number" and series.notna().any():
        low, high = series.min(), series.max()
        facts["low"] = low if facts["low"] is None else min(facts["low"], low)
        facts["high"] = high if facts["high"] is None else max(facts["high"], high)
    elif kind == "other" and len(facts["values"]) <= MAX_CATEGORIES:
        facts["values"].update(str(v) for v in series.dropna().unique()[: MAX_CATEGORIES + 1])


def save_schema(schema, path: Path) -> None:
    header = (
        "# Pinned by `loopml validate` from the data it first saw (pandera YAML).\n"
        "# Edit it to loosen or tighten checks; `loopml validate --repin` infers it again.\n"
    )
    path.write_text(header + schema.to_yaml())


def load_schema(path: Path):
    import pandera.pandas as pa

    try:
        return pa.DataFrameSchema.from_yaml(path.read_text())
    except Exception as exc:  # pandera raises many types for a malformed file
        raise ConfigError(
            f"{path}: not a valid pandera schema ({exc}); fix it or delete it so `loopml validate` infers it again"
        ) from None


def rule_checks(rules: dict[str, list[str]]):
    """Translate the `data.rules` mini-language of loopml.yaml into pandera checks."""
    import pandera.pandas as pa

    compare = {">=": pa.Check.ge, ">": pa.Check.gt, "<=": pa.Check.le, "<": pa.Check.lt,
               "==": pa.Check.eq, "!=": pa.Check.ne}  # fmt: skip
    out: dict[str, list] = {}
    for column, exprs in rules.items():
        for expr in exprs:
            text = expr.strip()
            if m := re.fullmatch(r"(>=|<=|==|!=|>|<)\s*(\S+)", text):
                check = compare[m[1]](_number(m[2], column, expr))
            elif m := re.fullmatch(r"between\s+(\S+)\s+and\s+(\S+)", text):
                check = pa.Check.in_range(_number(m[1], column, expr), _number(m[2], column, expr))
            elif m := re.fullmatch(r"in\s*\[(.*)\]", text):
                values = [v.strip().strip("'\"") for v in m[1].split(",") if v.strip()]
                check = pa.Check.isin(values + [_maybe_number(v) for v in values])
            elif m := re.fullmatch(r"matches\s+(.+)", text):
                check = pa.Check.str_matches(m[1])
            elif text in ("not null", "unique"):
                check = text
            else:
                raise ConfigError(
                    f'loopml.yaml: data.rules.{column}: cannot read rule "{expr}"; expected one of '
                    '">= 0", "between 0 and 16", "in [a, b]", "matches REGEX", "not null", "unique"'
                )
            out.setdefault(column, []).append(check)
    return out


def validate_frame(frame: pd.DataFrame, schema, rules: dict[str, list[str]], target: str) -> ValidationReport:
    """Check `frame` against the pinned schema and the rules; never modifies `frame`."""
    import pandera.pandas as pa

    report = ValidationReport(rows=len(frame), columns=len(frame.columns))
    if target not in frame.columns:
        raise DataError(missing_column(target, frame, "data.target"))
    for column in rules:
        if column not in frame.columns:
            raise ConfigError(f"loopml.yaml: data.rules: {missing_column(column, frame, 'the rule')}")
    columns = dict(schema.columns)
    for name in list(columns):
        if name not in frame.columns:
            report.failures.append(Failure(name, "column present", len(frame), ["(column missing)"]))
            del columns[name]
    report.failures.extend(_text_in_numbers(frame, columns))
    for column, checks in rule_checks(rules).items():
        col = columns.get(column) or pa.Column(required=True)
        for check in checks:
            if check == "not null":
                col = _with(col, nullable=False)
            elif check == "unique":
                col = _with(col, unique=True)
            else:
                col = _with(col, checks=[*col.checks, check])
        columns[column] = col
    bad_types = {f.column for f in report.failures}
    checked = {k: v for k, v in columns.items() if k not in bad_types}
    try:
        pa.DataFrameSchema(checked, coerce=False).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        report.failures.extend(_summarize(exc.failure_cases))
    return report


def merge_reports(reports: Iterable[ValidationReport]) -> ValidationReport:
    """The report of a whole table from its pieces' reports: each check's failing rows summed."""
    merged: ValidationReport | None = None
    by_check: dict[tuple[str, str], Failure] = {}
    for report in reports:
        if merged is None:
            merged = ValidationReport(0, report.columns)
        merged.rows += report.rows
        for failure in report.failures:
            key = (failure.column, failure.check)
            before = by_check.get(key)
            by_check[key] = failure if before is None else \
                Failure(failure.column, failure.check, before.rows + failure.rows, before.examples)  # fmt: skip
    if merged is None:
        raise DataError("the dataset is empty (no rows in any row group)")
    merged.failures = list(by_check.values())
    return merged


def structural(schema):
    """The schema without what was inferred from the first data (dtypes, observed ranges and
    categories): columns, nullability and uniqueness only. Live traffic is held to this plus the
    user's rules: drifted traffic is expected to leave the ranges the raw data happened to have."""
    import pandera.pandas as pa

    columns = {name: _with(col, checks=[], dtype=None) for name, col in schema.columns.items()}
    return pa.DataFrameSchema(columns, coerce=False, strict=False)


def _with(column, **changes):
    spec = column.properties | changes
    import pandera.pandas as pa

    return pa.Column(**{k: v for k, v in spec.items() if k in _COLUMN_ARGS})


_COLUMN_ARGS = ("dtype", "checks", "nullable", "unique", "coerce", "required", "name", "regex",
                "title", "description", "metadata", "report_duplicates", "default", "drop_invalid_rows",
                "parsers")  # fmt: skip


def _text_in_numbers(frame: pd.DataFrame, columns: dict) -> list[Failure]:
    """A numeric column that arrived as text: name the rows, not just the dtype."""
    failures = []
    for name, column in columns.items():
        expected = str(column.dtype)
        series = frame[name]
        if not re.match(r"(u?int|float)", expected) or pd.api.types.is_numeric_dtype(series):
            continue
        as_numbers = pd.to_numeric(series, errors="coerce")
        bad = series[as_numbers.isna() & series.notna()]
        examples = [f"row {i}: {v!r}" for i, v in bad.head(EXAMPLES).items()] or [f"dtype {series.dtype}"]
        failures.append(Failure(name, f"dtype {expected} (numbers)", max(len(bad), 1), examples))
    return failures


def _summarize(cases: pd.DataFrame) -> list[Failure]:
    failures = []
    cases = cases.assign(column=cases["column"].fillna("(table)"), check=cases["check"].astype(str))
    for (column, check), group in cases.groupby(["column", "check"], sort=False):
        examples = [
            f"row {idx}: {val!r}" if pd.notna(idx) else repr(val)
            for idx, val in zip(group["index"].head(EXAMPLES), group["failure_case"].head(EXAMPLES), strict=True)
        ]
        failures.append(Failure(str(column), check, len(group), examples))
    return failures


def missing_column(name: str, frame: pd.DataFrame, what: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, [str(c) for c in frame.columns], n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f'{what} names column "{name}", which is not in the data{hint}; columns: {_preview(frame.columns)}'


def _preview(columns, limit: int = 8) -> str:
    names = [str(c) for c in columns]
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _number(text: str, column: str, expr: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f'loopml.yaml: data.rules.{column}: "{expr}" needs a number; got "{text}"') from None


def _maybe_number(text: str):
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        return text


def failing_rows(frame: pd.DataFrame, schema, rules: dict[str, list[str]], target: str) -> dict[Any, str]:
    """Row index -> the first check it fails (column: check), against the schema and the rules:
    what the loop quarantines instead of training on."""
    import pandera.pandas as pa

    columns = dict(schema.columns)
    for column, checks in rule_checks(rules).items():
        col = columns.get(column) or pa.Column(required=True)
        for check in checks:
            if check == "not null":
                col = _with(col, nullable=False)
            elif check != "unique":
                col = _with(col, checks=[*col.checks, check])
        columns[column] = col
    present = {k: v for k, v in columns.items() if k in frame.columns}
    bad: dict[Any, str] = {}
    try:
        pa.DataFrameSchema(present, coerce=False).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        for index, column, check in zip(cases["index"], cases["column"], cases["check"], strict=True):
            if pd.notna(index) and index not in bad:
                bad[index] = f"{column}: {check}"
        if not bad and len(cases):  # a whole-column failure (a dtype): every row
            bad = {index: f"{cases['column'].iloc[0]}: {cases['check'].iloc[0]}" for index in frame.index}
    return bad
