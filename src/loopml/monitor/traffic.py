"""The inference log and the feedback beside it, read back: traffic by version, labelled rows,
live performance, and the retraining set the loop builds from them.

The server writes `inferences-<ns>.parquet` (id, time, version, row, features, __prediction__)
and `feedback-<ns>.parquet` (id, row, label, time); `loopml feedback FILE` writes the latter too.
Files are never rewritten: a later label for the same (id, row) wins when they are joined.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from loopml.data.profile import PREDICTION_COLUMN
from loopml.errors import DataError

LOG_COLUMNS = ("id", "time", "version", "row")


def read_log(folder: Path, since: float | None = None) -> pd.DataFrame:
    """Every logged row at or after `since` (seconds since the epoch), oldest first."""
    files = sorted(folder.glob("inferences-*.parquet")) if folder.is_dir() else []
    if since is not None:  # a file holds rows logged before its name's timestamp: skip older files whole
        files = [f for f in files if _written_at(f) >= since]
    if not files:
        return pd.DataFrame(columns=[*LOG_COLUMNS, PREDICTION_COLUMN])
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if since is not None:
        frame = frame[frame["time"] >= since]
    frame["version"] = frame["version"].astype(str)
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def read_feedback(folder: Path) -> pd.DataFrame:
    """Labels by (id, row); the latest one wins."""
    files = sorted(folder.glob("feedback-*.parquet")) if folder.is_dir() else []
    if not files:
        return pd.DataFrame(columns=["id", "row", "label", "time"])
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if "row" not in frame.columns:
        frame["row"] = 0
    frame["id"] = frame["id"].astype(str)
    frame["row"] = frame["row"].astype("int64")
    return frame.sort_values("time", kind="stable").drop_duplicates(["id", "row"], keep="last")


def join_labels(log: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """The logged rows that have a label, with a `label` column."""
    if log.empty or feedback.empty:
        return log.iloc[:0].assign(label=pd.Series(dtype=object))
    keyed = log.assign(id=log["id"].astype(str), row=log["row"].astype("int64"))
    return keyed.merge(feedback[["id", "row", "label"]], on=["id", "row"], how="inner")


def performance(task: str, labelled: pd.DataFrame) -> dict[str, float | int | None]:
    """Live accuracy (classification) or MAE and RMSE (regression) on the labelled rows."""
    n = len(labelled)
    if task == "classification":
        correct = _same(labelled[PREDICTION_COLUMN], labelled["label"]) if n else np.array([])
        return {"labelled": n, "accuracy": float(correct.mean()) if n else None}
    if not n:
        return {"labelled": 0, "mae": None, "rmse": None}
    error = pd.to_numeric(labelled[PREDICTION_COLUMN]) - pd.to_numeric(labelled["label"], errors="coerce")
    return {"labelled": n, "mae": float(error.abs().mean()), "rmse": float(np.sqrt((error**2).mean()))}


def _same(predicted: pd.Series, label: pd.Series) -> np.ndarray:
    """Equal labels, whether they came back as numbers or text ("3" and 3 and 3.0 agree)."""
    p, q = pd.to_numeric(predicted, errors="coerce"), pd.to_numeric(label, errors="coerce")
    numeric = p.notna() & q.notna()
    text = predicted.astype(str).to_numpy() == label.astype(str).to_numpy()
    return np.where(numeric, p.to_numpy(dtype=float, na_value=np.nan) == q.to_numpy(dtype=float, na_value=np.nan), text)


def write_feedback(folder: Path, frame: pd.DataFrame) -> Path:
    """Add labels (columns id, label and optionally row) beside the inference log."""
    missing = [c for c in ("id", "label") if c not in frame.columns]
    if missing:
        raise DataError(
            f"feedback needs the columns id and label (and optionally row); missing {missing}, "
            f"found {list(frame.columns)[:10]}"
        )
    rows = frame["row"] if "row" in frame.columns else pd.Series(0, index=frame.index)
    if rows.isna().any() or (pd.to_numeric(rows, errors="coerce") < 0).any():
        raise DataError("feedback column row must hold non-negative integers (the row within a request)")
    if frame["id"].isna().any() or frame["label"].isna().any():
        bad = int((frame["id"].isna() | frame["label"].isna()).sum())
        raise DataError(f"feedback has {bad} row(s) without an id or a label; drop them or fill them in")
    out = pd.DataFrame(
        {"id": frame["id"].astype(str), "row": rows.astype("int64"), "label": frame["label"], "time": time.time()}
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"feedback-{time.time_ns()}-{uuid.uuid4().hex[:6]}.parquet"
    out.to_parquet(path, index=False)
    return path


def retraining_rows(labelled: pd.DataFrame, features: list[str], target: str) -> pd.DataFrame:
    """Labelled traffic as training rows (features + target), one per (id, row)."""
    unique = labelled.drop_duplicates(["id", "row"], keep="last")
    rows = unique[features].copy()
    rows[target] = unique["label"].to_numpy()
    return rows.reset_index(drop=True)


def _written_at(path: Path) -> float:
    try:
        return int(path.name.split("-")[1]) / 1e9
    except (IndexError, ValueError):
        return float("inf")  # an unexpected name: read it, filter by row time
