"""What the loop and `loopml monitor` make of the inference log: live performance per version, and
the retraining set (checked, with the rows that fail quarantined)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loopml import metric
from loopml.data.inference_log import LabelRules
from loopml.data.profile import PREDICTION_COLUMN


def performance(task: str, labelled: pd.DataFrame) -> dict[str, float | int | None]:
    """Live accuracy (classification) or MAE and RMSE (regression) on the labelled rows."""
    n = len(labelled)
    if task == metric.CLASSIFICATION:
        correct = _same(labelled[PREDICTION_COLUMN], labelled["label"]) if n else np.array([])
        return {"labelled": n, "accuracy": float(correct.mean()) if n else None}
    if not n:
        return {"labelled": 0, "mae": None, "rmse": None}
    error = pd.to_numeric(labelled[PREDICTION_COLUMN], errors="coerce") - pd.to_numeric(
        labelled["label"], errors="coerce"
    )
    return {"labelled": n, "mae": float(error.abs().mean()), "rmse": float(np.sqrt((error**2).mean()))}


def _same(predicted: pd.Series, label: pd.Series) -> np.ndarray:
    """Equal labels, whether they came back as numbers or text ("3" and 3 and 3.0 agree)."""
    p, q = pd.to_numeric(predicted, errors="coerce"), pd.to_numeric(label, errors="coerce")
    numeric = p.notna() & q.notna()
    text = predicted.astype(str).to_numpy() == label.astype(str).to_numpy()
    return np.where(numeric, p.to_numpy(dtype=float, na_value=np.nan) == q.to_numpy(dtype=float, na_value=np.nan), text)


def retraining_rows(labelled: pd.DataFrame, features: list[str], target: str,
                    rules: LabelRules | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Labelled traffic as training rows (features + target), one per (id, row): (good rows, the
    rows whose label does not fit the model, with a `reason` column)."""
    unique = labelled.drop_duplicates(["id", "row"], keep="last")
    rows = unique[features].copy().reset_index(drop=True)
    labels, reasons = [], []
    for value in unique["label"].tolist():
        try:
            labels.append(rules.check(value) if rules is not None else value)
            reasons.append("")
        except ValueError as exc:
            labels.append(value)
            reasons.append(f"label: {exc}")
    rows[target] = pd.Series(labels, dtype=object)
    bad = np.asarray([bool(r) for r in reasons], dtype=bool)
    quarantined = rows[bad].assign(reason=[r for r in reasons if r], id=unique["id"].to_numpy()[bad])
    good = rows[~bad].reset_index(drop=True)
    if len(good) and good[target].map(type).nunique() == 1:  # one label type: store it as such
        good[target] = good[target].infer_objects()
    return good, quarantined.reset_index(drop=True)
