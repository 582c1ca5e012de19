"""The self-contained HTML evaluation report: plots as inline PNGs, tables, the gate verdicts."""

from __future__ import annotations

import base64
import io
from importlib import resources
from typing import Any

import numpy as np


def render(context: dict[str, Any]) -> str:
    """HTML for one evaluation; `context` holds name, task, metrics, details, gates, champion."""
    import jinja2

    details = context["details"]
    plots = {}
    if "confusion" in details:
        plots["Confusion matrix"] = _confusion(details["labels"], np.asarray(details["confusion"]))
    if "roc" in details:
        plots["ROC curves (one vs rest)"] = _roc(details["roc"])
    if "pr" in details:
        plots[f"Precision-recall (positive class {details['pr']['label']})"] = _precision_recall(details["pr"])
    if "y_pred" in details:
        plots["Residuals and predicted vs actual"] = _residuals(np.asarray(details["y_true"]),
                                                                 np.asarray(details["y_pred"]))  # fmt: skip
    if context.get("importance"):
        plots["Permutation importance (raw columns)"] = _importance(context["importance"])
    template = resources.files("loopml.evaluate").joinpath("report.html.j2").read_text()
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(plots=plots, **context)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_base64(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _confusion(labels: list[str], matrix: np.ndarray) -> str:
    plt = pyplot()
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels=labels, rotation=45 if len(labels) > 8 else 0)
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                color="white" if value > threshold else "black")  # fmt: skip
    fig.colorbar(image, ax=ax, fraction=0.046)
    return png_base64(fig)


def _roc(curves: list[dict]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for curve in curves:
        ax.plot(curve["fpr"], curve["tpr"], lw=1.2, label=curve["label"])
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    return png_base64(fig)


def _precision_recall(pr: dict) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot(pr["recall"], pr["precision"], lw=1.2, label=f"AP {pr['average_precision']:.3f}")
    at = pr["at_threshold"]
    ax.scatter([at["recall"]], [at["precision"]], color="#b3261e", zorder=3,
               label=f"threshold {pr['threshold']:g}: P {at['precision']:.2f}, R {at['recall']:.2f}")  # fmt: skip
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    return png_base64(fig)


def _importance(found: list[dict]) -> str:
    plt = pyplot()
    top = found[:20][::-1]
    fig, ax = plt.subplots(figsize=(5.5, 0.3 * len(top) + 1))
    ax.barh([f["column"] for f in top], [f["importance"] for f in top], xerr=[f["spread"] for f in top],
            color="#8ab4f8")  # fmt: skip
    ax.set_xlabel("drop of the primary metric when shuffled")
    ax.tick_params(axis="y", labelsize=7)
    return png_base64(fig)


def _residuals(y_true: np.ndarray, y_pred: np.ndarray) -> str:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    left.scatter(y_pred, y_true - y_pred, s=8, alpha=0.6)
    left.axhline(0, color="grey", lw=0.8)
    left.set_xlabel("predicted")
    left.set_ylabel("residual (true - predicted)")
    right.scatter(y_true, y_pred, s=8, alpha=0.6)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    right.plot([low, high], [low, high], ls="--", color="grey", lw=0.8)
    right.set_xlabel("true")
    right.set_ylabel("predicted")
    return png_base64(fig)
