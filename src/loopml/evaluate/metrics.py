"""Metrics from scikit-learn plus single-row latency and model size."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from loopml.config import METRICS

LATENCY_ROWS = 200  # single-row predictions timed for p50/p95 (after a warm-up)


def quality(task: str, y_true, y_pred, proba: np.ndarray | None, classes: list | None) -> tuple[dict, dict]:
    """(scalar metrics, details for the report: confusion matrix, per-class table, curves)."""
    from sklearn import metrics as m

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if task == "regression":
        scores = {
            "mae": m.mean_absolute_error(y_true, y_pred),
            "rmse": float(np.sqrt(m.mean_squared_error(y_true, y_pred))),
            "r2": m.r2_score(y_true, y_pred),
        }
        return _floats(scores), {"residuals": (y_true - y_pred).tolist(), "y_true": y_true.tolist(),
                                 "y_pred": y_pred.tolist()}  # fmt: skip
    labels = list(classes)
    scores = {
        "accuracy": m.accuracy_score(y_true, y_pred),
        "precision_macro": m.precision_score(y_true, y_pred, average="macro", zero_division=0),
        "recall_macro": m.recall_score(y_true, y_pred, average="macro", zero_division=0),
        "f1_macro": m.f1_score(y_true, y_pred, average="macro", zero_division=0),
    }
    details: dict[str, Any] = {
        "labels": [str(c) for c in labels],
        "confusion": m.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    precision, recall, f1, support = m.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    details["per_class"] = [
        {"label": str(c), "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for c, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    ]
    present = set(np.unique(y_true).tolist())
    if proba is not None and len(present) == len(labels):  # AUC is undefined when a class is absent
        if len(labels) == 2:
            scores["roc_auc"] = m.roc_auc_score(y_true == labels[1], proba[:, 1])
        else:
            scores["roc_auc"] = m.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
        curves = []
        for i, label in enumerate(labels if len(labels) > 2 else labels[1:]):
            column = i if len(labels) > 2 else 1
            fpr, tpr, _ = m.roc_curve(y_true == label, proba[:, column])
            curves.append({"label": str(label), "fpr": fpr.tolist(), "tpr": tpr.tolist()})
        details["roc"] = curves
    assert set(scores) <= set(METRICS["classification"])
    return _floats(scores), details


def latency_ms(predict, frame: pd.DataFrame, rows: int = LATENCY_ROWS) -> dict[str, float]:
    """p50/p95 wall time of predicting one row at a time, in milliseconds.

    Timed on one intra-op thread, as a server runs single rows: more threads only add
    scheduling jitter to a one-row forward pass (and fight other processes for cores).
    """
    singles = [frame.iloc[[i % len(frame)]] for i in range(rows)]
    times = np.empty(rows)
    with _one_thread():
        for single in singles[:10]:
            predict(single)
        for i, single in enumerate(singles):
            start = time.perf_counter()
            predict(single)
            times[i] = time.perf_counter() - start
    return {"latency_p50_ms": float(np.percentile(times, 50) * 1e3),
            "latency_p95_ms": float(np.percentile(times, 95) * 1e3)}  # fmt: skip


@contextmanager
def _one_thread():
    try:
        import torch
    except ImportError:  # a scikit-learn-only environment
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _floats(scores: dict) -> dict[str, float]:
    return {k: float(v) for k, v in scores.items()}
