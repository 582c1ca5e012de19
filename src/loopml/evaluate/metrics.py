"""Metrics from scikit-learn, a dummy baseline on the same split, permutation importance on the raw
columns, and single-row latency measured robustly (best of several rounds, one thread)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from loopml import metric

LATENCY_ROWS = 100  # single-row predictions timed per round (after a warm-up)
LATENCY_ROUNDS = 5  # rounds at most; the round with the lowest p95 counts (other processes only add time)
LATENCY_AGREE = 1.2  # two rounds whose p95s are this close end the measurement early (little noise)
LATENCY_METHOD = (f"single-row predictions on one thread: rounds of {LATENCY_ROWS} rows after a warm-up, until "
                  f"two rounds' p95 agree within {LATENCY_AGREE - 1:.0%} or {LATENCY_ROUNDS} rounds ran; p50 and "
                  "p95 of the round with the lowest p95 (noise from other processes only adds time, so the best "
                  "round is the model's own cost)")  # fmt: skip
IMPORTANCE_ROWS = 2000  # test rows permuted per column
IMPORTANCE_MAX_COLUMNS = 300  # wider tables skip permutation importance (it costs a prediction per column)
CURVE_POINTS = 400  # points kept per plotted curve


def quality(task: str, y_true, y_pred, proba: np.ndarray | None, classes: list | None) -> tuple[dict, dict]:
    """(scalar metrics, details for the report: confusion matrix, per-class table, curves)."""
    from sklearn import metrics as m

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if task == metric.REGRESSION:
        scores = {"mae": m.mean_absolute_error(y_true, y_pred),
                  "rmse": float(np.sqrt(m.mean_squared_error(y_true, y_pred))),
                  "r2": m.r2_score(y_true, y_pred)}  # fmt: skip
        keep = _thin(len(y_true), 5000)
        return _floats(scores), {"y_true": y_true[keep].tolist(), "y_pred": y_pred[keep].tolist()}
    labels = list(classes)
    scores = {
        "accuracy": m.accuracy_score(y_true, y_pred),
        "balanced_accuracy": m.balanced_accuracy_score(y_true, y_pred),
        "precision_macro": m.precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "recall_macro": m.recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "f1_macro": m.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
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
        scores["log_loss"] = m.log_loss(y_true, np.clip(proba, 1e-15, 1), labels=labels)
        if len(labels) == 2:
            positive = y_true == labels[1]
            scores["roc_auc"] = m.roc_auc_score(positive, proba[:, 1])
            prec, rec, thresholds = m.precision_recall_curve(positive, proba[:, 1])
            keep = _thin(len(prec), CURVE_POINTS)
            chosen = proba[:, 1] >= 0.5  # the decision a prediction makes: the more probable class
            details["pr"] = {"label": str(labels[1]), "precision": prec[keep].tolist(), "recall": rec[keep].tolist(),
                             "threshold": 0.5,
                             "at_threshold": {"precision": float(m.precision_score(positive, chosen, zero_division=0)),
                                              "recall": float(m.recall_score(positive, chosen, zero_division=0))},
                             "average_precision": float(m.average_precision_score(positive, proba[:, 1]))}  # fmt: skip
        else:
            scores["roc_auc"] = m.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
        curves = []
        for i, label in enumerate(labels if len(labels) > 2 else labels[1:]):
            column = i if len(labels) > 2 else 1
            fpr, tpr, _ = m.roc_curve(y_true == label, proba[:, column])
            keep = _thin(len(fpr), CURVE_POINTS)
            curves.append({"label": str(label), "fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()})
        details["roc"] = curves
    return _floats(scores), details


def baseline(task: str, X_train: pd.DataFrame, y_train, X_test: pd.DataFrame, y_test,
             classes: list | None) -> tuple[str, dict[str, float]]:  # fmt: skip
    """A dummy model on the same split: the most frequent class, or the mean. (name, metrics)"""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    if task == metric.REGRESSION:
        dummy = DummyRegressor(strategy="mean").fit(X_train, y_train)
        scores, _ = quality(task, y_test, dummy.predict(X_test), None, None)
        return "mean", scores
    dummy = DummyClassifier(strategy="most_frequent").fit(X_train, y_train)
    proba = dummy.predict_proba(X_test)
    order = [list(dummy.classes_).index(c) for c in classes]
    scores, _ = quality(task, y_test, dummy.predict(X_test), proba[:, order], classes)
    return "most_frequent", scores


def permutation_importance(infer, X: pd.DataFrame, y, task: str, seed: int = 0) -> list[dict[str, Any]]:
    """How much the primary metric worsens when one raw column's values are shuffled (mean and
    spread over repeats), most important first. `infer(frame)` predicts."""
    if X.shape[1] > IMPORTANCE_MAX_COLUMNS:
        return []
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(X))[:IMPORTANCE_ROWS]
    X, y = X.iloc[rows].reset_index(drop=True), np.asarray(y)[rows]
    primary = metric.PRIMARY[task]

    def score(frame: pd.DataFrame) -> float:
        predicted = np.asarray(infer(frame))
        if task == metric.REGRESSION:  # MAE
            return float(np.mean(np.abs(y.astype(float) - predicted.astype(float))))
        return float(np.mean(predicted == y))  # accuracy

    base = score(X)
    repeats = 3 if X.shape[1] <= 50 else 1
    found = []
    for column in X.columns:
        drops = []
        for _ in range(repeats):
            shuffled = X.copy()
            shuffled[column] = X[column].to_numpy()[rng.permutation(len(X))]
            drops.append(metric.gain(primary, base, score(shuffled)))
        found.append({"column": str(column), "importance": float(np.mean(drops)), "spread": float(np.std(drops))})
    return sorted(found, key=lambda f: -f["importance"])


def latency_ms(predict, frame: pd.DataFrame) -> dict[str, float]:
    """p50/p95 wall time of predicting one row at a time, in milliseconds (see LATENCY_METHOD)."""
    singles = [frame.iloc[[i % len(frame)]] for i in range(LATENCY_ROWS)]
    rounds: list[np.ndarray] = []
    with torch_threads(1):
        for single in singles[:10]:
            predict(single)
        for _ in range(LATENCY_ROUNDS):
            times = np.empty(LATENCY_ROWS)
            for i, single in enumerate(singles):
                start = time.perf_counter()
                predict(single)
                times[i] = time.perf_counter() - start
            rounds.append(times)
            fastest = sorted(np.percentile(r, 95) for r in rounds)
            if len(fastest) >= 2 and fastest[1] <= fastest[0] * LATENCY_AGREE:
                break
    best = min(rounds, key=lambda r: np.percentile(r, 95))
    return {"latency_p50_ms": float(np.percentile(best, 50) * 1e3),
            "latency_p95_ms": float(np.percentile(best, 95) * 1e3)}  # fmt: skip


@contextmanager
def torch_threads(threads: int = 1):
    """torch's intra-op threads set for the block (timing is per thread count; ONNX Runtime sessions
    take theirs when made). Nothing to set when no torch model has imported torch."""
    torch = sys.modules.get("torch")  # a torch model has imported it; importing it here would cost seconds
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _thin(n: int, most: int) -> np.ndarray:
    """Indexes of at most `most` evenly spread points out of `n` (first and last kept)."""
    return np.unique(np.linspace(0, n - 1, min(n, most)).astype(int)) if n else np.zeros(0, dtype=int)


def _floats(scores: dict) -> dict[str, float]:
    return {k: float(v) for k, v in scores.items()}
