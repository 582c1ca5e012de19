"""Data checks that warn like a colleague: ID-like, constant, empty and mixed-type columns, dates stored
as text, unexpected extra columns, duplicated rows, heavy class imbalance, mostly-missing columns,
a feature that predicts the target almost perfectly (leakage), and free text: non-text, empty,
damaged, very short and very long values.

Each finding names the column and the setting that silences it (`data.checks.<kind>: off`); a
check set to `error` fails validation instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loopml.contracts import DataWarning, Failure
from loopml.data import roles as R

IMBALANCE = 0.05  # a class with less than this share of rows
MOSTLY_MISSING = 0.5  # a column with more than this share missing
LEAK_ACCURACY = 0.99  # one feature alone labels this share of rows right ...
LEAK_BASELINE = 0.95  # ... where always guessing the commonest class does not
LEAK_CORRELATION = 0.99  # or (regression) ranks the target this faithfully
LEAK_SAMPLE = 20_000
MIN_TEXT_CHARS = 3  # free text shorter than this says little
MAX_TEXT_CHARS = 20_000  # ... and longer than this is mostly cut away by a text model


def review(
    frame: pd.DataFrame,
    target: str,
    task: str,
    inferred: dict[str, R.ColumnRole],
    roles: dict[str, str],
    schema_columns: list[str] | None,
    settings: dict[str, str],
) -> tuple[list[DataWarning], list[Failure]]:
    """Warnings (and the failures of checks set to `error`) for `frame`."""
    found: list[DataWarning] = []
    for name, role in inferred.items():
        if role.role == R.ID and roles.get(name) == R.ID:
            found.append(_warn(name, "id_like", f"{name} looks like an identifier ({role.reason}): not used as a "
                               f"feature, nor watched for drift; set data.columns.{name}: numeric (or categorical) "
                               "to use it"))  # fmt: skip
        left_out = roles.get(name) == R.IGNORE  # not when the user gave the column a role
        if left_out and role.role == R.IGNORE and role.reason.startswith("constant"):
            found.append(_warn(name, "constant", f"{name} is {role.reason}: it cannot help the model and is left out"))
        if left_out and role.role == R.IGNORE and role.reason.startswith("empty"):
            found.append(_warn(name, "empty", f"{name} is empty (every value is missing): left out"))
        if roles.get(name) == R.DATETIME and not pd.api.types.is_datetime64_any_dtype(frame[name]):
            found.append(_warn(name, "date_as_text", f"{name} holds dates as text: parsed as ISO 8601 dates (year, "
                               f"month, weekday... become features); set data.columns.{name}: categorical to keep it "
                               "as text"))  # fmt: skip
        mixed = R.mixed_types(frame[name]) if role.role not in (R.IGNORE, R.ID) else None
        if mixed is not None:
            share, example = mixed
            found.append(_warn(name, "mixed_types", f"{name} mixes numbers and text ({share:.0%} numbers, but e.g. "
                               f"{example!r}): treated as {roles.get(name, role.role)}; clean the column, or set "
                               f"data.columns.{name}"))  # fmt: skip
        missing = float(frame[name].isna().mean())
        if MOSTLY_MISSING < missing < 1.0:
            found.append(_warn(name, "missing_values", f"{name} is {missing:.0%} missing: the model imputes it and "
                               "learns from the missingness; check the source"))  # fmt: skip
    for name in (n for n, role in roles.items() if role == R.TEXT and n in frame.columns):
        found += _text_column(name, frame[name])
    if schema_columns is not None:
        extra = [c for c in frame.columns if c not in schema_columns]
        if extra:
            found.append(_warn(None, "extra_columns", f"unexpected column(s) {extra[:8]} not in the pinned schema: "
                               "they are new since the schema was pinned; `loopml validate --repin` accepts them, "
                               f"data.exclude leaves them out"))  # fmt: skip
    duplicates = int(frame.duplicated().sum())
    if duplicates:
        found.append(_warn(None, "duplicates", f"{duplicates} duplicated row(s) ({duplicates / len(frame):.1%}): "
                           "they weigh twice in training and may sit on both sides of the test split"))  # fmt: skip
    if target in frame.columns:
        y = frame[target]
        if task == "classification" and y.notna().any():
            shares = y.value_counts(normalize=True)
            if shares.min() < IMBALANCE:
                found.append(_warn(target, "imbalance", f"class {shares.idxmin()!r} of {target} is only "
                                   f"{shares.min():.1%} of the rows: accuracy hides how it fares; the report shows "
                                   "balanced accuracy and per-class recall"))  # fmt: skip
        found += _leaks(frame, target, task, roles)
    kept = [w for w in found if settings.get(w.kind, "warn") != "off"]
    failures = [Failure(w.column or "(table)", f"check {w.kind}", len(frame), [w.message])
                for w in kept if settings.get(w.kind) == "error"]  # fmt: skip
    return [w for w in kept if settings.get(w.kind) != "error"], failures


def _text_column(name: str, values: pd.Series) -> list[DataWarning]:
    """Free text: values that are not text, empty ones, damaged encoding, and texts too short to say
    much or so long that a text model (which reads model.max_length tokens) cuts most of them away."""
    found = []
    present = values.dropna()
    not_text = present[~present.map(lambda v: isinstance(v, str))]
    if len(not_text):
        found.append(_warn(name, "text", f"{name} holds {len(not_text)} value(s) that are not text, e.g. "
                           f"{not_text.iloc[0]!r} (row {not_text.index[0]}): a text model refuses them; fix the "
                           "export or set another role"))  # fmt: skip
    texts = present[present.map(lambda v: isinstance(v, str))]
    empty = int(values.isna().sum() + (texts.str.strip() == "").sum())
    if empty:
        found.append(_warn(name, "text", f"{name} has {empty} empty or missing text(s) ({empty / len(values):.1%}): "
                           "a text model cannot learn from them; drop those rows"))  # fmt: skip
    damaged = texts[texts.str.contains("\ufffd", regex=False)]
    if len(damaged):
        found.append(
            _warn(
                name,
                "text",
                f"{name} has {len(damaged)} text(s) with U+FFFD replacement characters "
                f"(row {damaged.index[0]}): bytes were lost decoding the file; check data.encoding",
            )
        )
    chars = texts.str.strip().str.len()
    short, long = texts[(chars > 0) & (chars < MIN_TEXT_CHARS)], texts[chars > MAX_TEXT_CHARS]
    if len(short):
        found.append(_warn(name, "text", f"{name} has {len(short)} text(s) under {MIN_TEXT_CHARS} characters, e.g. "
                           f"{short.iloc[0]!r} (row {short.index[0]}): too short to say much"))  # fmt: skip
    if len(long):
        found.append(_warn(name, "text", f"{name} has {len(long)} text(s) over {MAX_TEXT_CHARS:,} characters (row "
                           f"{long.index[0]}): a text model reads only its first model.max_length tokens"))  # fmt: skip
    return found


def _warn(column: str | None, kind: str, message: str) -> DataWarning:
    return DataWarning(column, kind, message, f"data.checks.{kind}: off")


def _leaks(frame: pd.DataFrame, target: str, task: str, roles: dict[str, str]) -> list[DataWarning]:
    """Features that alone predict the target almost perfectly (a copy of the label, a post-outcome field)."""
    sample = frame.sample(min(len(frame), LEAK_SAMPLE), random_state=0) if len(frame) > LEAK_SAMPLE else frame
    y = sample[target]
    if y.isna().all() or len(sample) < 30:
        return []
    found = []
    for name in R.features(roles):
        x = sample[name]
        if task == "classification":
            baseline = float(y.value_counts(normalize=True).max())
            if baseline >= LEAK_BASELINE:
                return []
            score = _purity(x, y)
            if score is not None and score >= LEAK_ACCURACY:
                found.append(_warn(name, "leakage", f"{name} alone predicts {target} for {score:.1%} of the rows "
                                   f"(always guessing gives {baseline:.1%}): is it known before the outcome? If it is "
                                   f"a copy of the label, set data.columns.{name}: ignore"))  # fmt: skip
        elif pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            both = pd.concat([x, y], axis=1).dropna()
            if len(both) >= 30 and both.iloc[:, 0].nunique() > 1:
                rho = abs(float(both.iloc[:, 0].rank().corr(both.iloc[:, 1].rank())))
                if rho >= LEAK_CORRELATION:
                    found.append(_warn(name, "leakage", f"{name} ranks {target} almost exactly (Spearman {rho:.3f}): "
                                       "is it known before the outcome? If not, set "
                                       f"data.columns.{name}: ignore"))  # fmt: skip
    return found


def _purity(x: pd.Series, y: pd.Series) -> float | None:
    """Share of rows labelled right by the majority class of their value (numbers: of their
    decile); None for high-cardinality text, where in-sample purity means nothing."""
    if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
        if x.nunique() > 20:
            x = pd.qcut(x, 20, duplicates="drop")
    elif x.nunique() > R.MAX_CATEGORIES:
        return None
    keys = x.astype(object).where(x.notna(), "(missing)").astype(str)
    counts = pd.crosstab(keys, y)
    return float(np.asarray(counts.max(axis=1)).sum() / len(y))
