"""The inference log and the feedback beside it: the one module that writes them and reads them back.

The server writes `inferences-<ns>-<tag>.parquet` (id, time, version, row, the input columns the
privacy policy keeps, `__prediction__` unless predictions are off) and `feedback-<ns>-<tag>.parquet`
(id, row, label, time); `loopml feedback FILE` writes the latter too. Files are never rewritten: a
later label for the same (id, row) wins when they are joined. Old files go by count, age and total
size (`monitor.log_keep_files`, `log_max_age`, `log_max_mb`).

Privacy (`monitor.log_columns`, `log_default`, `log_predictions`): per input column, keep the value,
hash it (HMAC-SHA256 keyed with LOOPML_LOG_KEY, so equal values stay equal and joins still work),
or drop it: a dropped column never reaches the disk.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.config import MonitorConfig, parse_duration
from loopml.data.profile import PREDICTION_COLUMN
from loopml.errors import DataError

LOG_COLUMNS = ("id", "time", "version", "row")
KEY_ENV = "LOOPML_LOG_KEY"
MAX_ID_LENGTH = 200


# -- privacy and retention ----------------------------------------------------------------------


@dataclass
class LogPolicy:
    """What of a request reaches the disk, and for how long."""

    columns: dict[str, str] = field(default_factory=dict)  # column -> keep / hash / drop
    default: str = "keep"
    predictions: bool = True
    keep_files: int = 200
    max_age_s: float = 30 * 86400
    max_bytes: float = 1024 * 2**20
    key: bytes = b""

    @classmethod
    def of(cls, cfg: MonitorConfig, log_dir: Path) -> LogPolicy:
        return cls(dict(cfg.log_columns), cfg.log_default, cfg.log_predictions, cfg.log_keep_files,
                   parse_duration(cfg.log_max_age), cfg.log_max_mb * 2**20, _hash_key(log_dir, cfg))  # fmt: skip

    def action(self, column: str) -> str:
        return self.columns.get(column, self.default)

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame as it may be written: dropped columns gone, hashed ones replaced, predictions
        only if logged."""
        out = {}
        for column in frame.columns:
            if column == PREDICTION_COLUMN:
                if self.predictions:
                    out[column] = frame[column]
                continue
            if column in LOG_COLUMNS:
                out[column] = frame[column]
                continue
            action = self.action(column)
            if action == "keep":
                out[column] = frame[column]
            elif action == "hash":
                out[column] = frame[column].map(self._hash)
        return pd.DataFrame(out, index=frame.index)

    def kept(self, columns: list[str]) -> bool:
        """Are all these columns written as they are (so the loop can retrain on the log)?"""
        return all(self.action(c) == "keep" for c in columns)

    def _hash(self, value: Any) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return hmac.new(self.key, str(value).encode(), hashlib.sha256).hexdigest()[:24]


def _hash_key(log_dir: Path, cfg: MonitorConfig) -> bytes:
    """LOOPML_LOG_KEY, else a random key kept beside the log (readable by its owner only)."""
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    needs = cfg.log_default == "hash" or "hash" in cfg.log_columns.values()
    if not needs:
        return b""
    path = log_dir / ".log-key"
    if not path.exists():
        log_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def write(folder: Path, kind: str, frame: pd.DataFrame, policy: LogPolicy) -> Path:
    """A new `<kind>-<ns>-<tag>.parquet`, written whole (temporary name, then renamed), then the
    oldest files of that kind go past the retention limits."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{kind}-{time.time_ns()}-{uuid.uuid4().hex[:6]}.parquet"
    tmp = folder / f".{name}.tmp"
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, folder / name)
    enforce_retention(folder, kind, policy)
    return folder / name


def enforce_retention(folder: Path, kind: str, policy: LogPolicy, now: float | None = None) -> list[Path]:
    """Delete the oldest `kind` files past the count, age and size limits; returns what went."""
    files = sorted(folder.glob(f"{kind}-*.parquet"), key=_written_at)
    now = time.time() if now is None else now
    doomed = set(files[: max(0, len(files) - policy.keep_files)])
    doomed |= {f for f in files if now - _written_at(f) > policy.max_age_s}
    remaining = [f for f in files if f not in doomed]
    sizes = {f: f.stat().st_size for f in remaining if f.exists()}
    total = sum(sizes.values())
    for f in remaining:
        if total <= policy.max_bytes:
            break
        doomed.add(f)
        total -= sizes.get(f, 0)
    for f in doomed:
        f.unlink(missing_ok=True)
    return sorted(doomed)


def log_frame(request_ids: list[str], times: list[float], counts: list[int], version: str,
              inputs: pd.DataFrame, predictions: np.ndarray | None) -> pd.DataFrame:  # fmt: skip
    """The rows of several requests, as logged: one row per input row."""
    ids = np.repeat(np.asarray(request_ids, dtype=object), counts)
    when = np.repeat(np.asarray(times, dtype=np.float64), counts)
    rows = np.concatenate([np.arange(n) for n in counts]) if counts else np.zeros(0, dtype=np.int64)
    frame = inputs.reset_index(drop=True).copy()
    frame.insert(0, "row", rows)
    frame.insert(0, "version", version)
    frame.insert(0, "time", when)
    frame.insert(0, "id", ids)
    if predictions is not None:
        frame[PREDICTION_COLUMN] = predictions
    return frame


# -- reading back -------------------------------------------------------------------------------


def read_log(folder: Path, since: float | None = None) -> pd.DataFrame:
    """Every logged row at or after `since` (seconds since the epoch), oldest first."""
    files = sorted(folder.glob("inferences-*.parquet")) if folder.is_dir() else []
    if since is not None:  # a file holds rows logged before its name's timestamp: skip older files whole
        files = [f for f in files if _written_at(f) >= since]
    frames = [_read(f) for f in files]
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(columns=[*LOG_COLUMNS, PREDICTION_COLUMN])
    frame = pd.concat(frames, ignore_index=True)
    if since is not None:
        frame = frame[frame["time"] >= since]
    frame["version"] = frame["version"].astype(str)
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def read_feedback(folder: Path) -> pd.DataFrame:
    """Labels by (id, row); the latest one wins."""
    files = sorted(folder.glob("feedback-*.parquet")) if folder.is_dir() else []
    frames = [f for f in (_read(p) for p in files) if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(columns=["id", "row", "label", "time"])
    # labels of one file share a type; across files they may not (3 and "3"): object keeps both
    frame = pd.concat([f.astype({"label": object}) for f in frames], ignore_index=True)
    if "row" not in frame.columns:
        frame["row"] = 0
    frame["id"] = frame["id"].astype(str)
    frame["row"] = frame["row"].astype("int64")
    return frame.sort_values("time", kind="stable").drop_duplicates(["id", "row"], keep="last")


def _read(path: Path) -> pd.DataFrame | None:
    """A log file, or None for one that vanished (retention) or cannot be read (a crash mid-write
    of an older loopml): such a file is skipped, not fatal."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError):
        return None


def join_labels(log: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """The logged rows that have a label, with a `label` column."""
    if log.empty or feedback.empty:
        return log.iloc[:0].assign(label=pd.Series(dtype=object))
    keyed = log.assign(id=log["id"].astype(str), row=log["row"].astype("int64"))
    return keyed.merge(feedback[["id", "row", "label"]], on=["id", "row"], how="inner")


def _written_at(path: Path) -> float:
    try:
        return int(path.name.split("-")[1]) / 1e9
    except (IndexError, ValueError):
        return float("inf")  # an unexpected name: read it, filter by row time


# -- labels -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelRules:
    """What a label for this model may be: one of its classes, or a finite number near its range."""

    classes: list | None
    target_range: tuple[float, float] | None = None
    margin: float | None = 1.0  # target spans allowed beyond the training range; None: any number

    def check(self, value: Any) -> Any:
        """The label as stored (a class exactly as the model names it, or a float); ValueError says why not."""
        if isinstance(value, list | dict) or value is None:
            raise ValueError(f"a label is one value; got {type(value).__name__}")
        if self.classes is not None:
            for known in self.classes:
                if _same_label(value, known):
                    return known
            shown = ", ".join(map(repr, self.classes[:10])) + (" ..." if len(self.classes) > 10 else "")
            raise ValueError(f"{value!r} is not a class of this model ({shown})")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"a regression label is a finite number; got {value!r}")
        if self.target_range is not None and self.margin is not None:
            low, high = self.target_range
            span = (high - low) or abs(high) or 1.0
            if not low - self.margin * span <= value <= high + self.margin * span:
                raise ValueError(f"{value!r} is far outside the training range {low:g} to {high:g} "
                                 f"(monitor.label_margin {self.margin:g} spans)")  # fmt: skip
        return float(value)


def _same_label(value: Any, known: Any) -> bool:
    """3, 3.0 and "3" name the class 3; "yes" names "yes"; True names True (not 1)."""
    if isinstance(known, bool) or isinstance(value, bool):
        return (
            isinstance(value, bool)
            and isinstance(known, bool)
            and value == known
            or (isinstance(known, bool) and isinstance(value, str) and value.strip().lower() == str(known).lower())
        )
    if isinstance(known, int | float):
        try:
            return float(value) == float(known)
        except (TypeError, ValueError):
            return False
    return str(value) == str(known)


def validate_feedback(frame: pd.DataFrame, rules: LabelRules | None) -> pd.DataFrame:
    """Bulk labels (columns id, label, optional row) checked and normalized; DataError names the bad rows."""
    missing = [c for c in ("id", "label") if c not in frame.columns]
    if missing:
        raise DataError(f"feedback needs the columns id and label (and optionally row); missing {missing}, "
                        f"found {list(frame.columns)[:10]}")  # fmt: skip
    rows = frame["row"] if "row" in frame.columns else pd.Series(0, index=frame.index)
    numeric_rows = pd.to_numeric(rows, errors="coerce")
    if numeric_rows.isna().any() or (numeric_rows < 0).any() or (numeric_rows % 1 != 0).any():
        raise DataError("feedback column row must hold non-negative integers (the row within a request)")
    if frame["id"].isna().any() or frame["label"].isna().any():
        bad = int((frame["id"].isna() | frame["label"].isna()).sum())
        raise DataError(f"feedback has {bad} row(s) without an id or a label; drop them or fill them in")
    labels = list(frame["label"])
    if rules is not None:
        checked, problems = [], []
        for i, value in enumerate(labels):
            try:
                checked.append(rules.check(value.item() if hasattr(value, "item") else value))
            except ValueError as exc:
                problems.append(f"row {i} (id {frame['id'].iloc[i]}): {exc}")
        if problems:
            raise DataError(f"{len(problems)} label(s) do not fit the model: " + "; ".join(problems[:5])
                            + (" ..." if len(problems) > 5 else "") + "; fix them and add the file again")  # fmt: skip
        labels = checked
    return pd.DataFrame({"id": frame["id"].astype(str).to_numpy(), "row": numeric_rows.astype("int64").to_numpy(),
                         "label": pd.Series(labels, dtype=object).to_numpy(), "time": time.time()})  # fmt: skip


def feedback_frame(items: list[tuple[str, int, Any]]) -> pd.DataFrame:
    """(id, row, label) triples as a feedback file's rows. Labels of mixed types (3 and "x") are
    stored as text: Parquet takes one type per column, and one odd label must not lose the rest."""
    now = time.time()
    labels = [v for _, _, v in items]
    if len({type(v) for v in labels}) > 1:
        labels = [str(v) for v in labels]
    return pd.DataFrame({"id": [i for i, _, _ in items], "row": np.asarray([r for _, r, _ in items], dtype=np.int64),
                         "label": pd.Series(labels, dtype=object).to_numpy(), "time": now})  # fmt: skip
