"""The metric facts: every metric loopml computes, its task, which way is better, the primary one.

One table, read by config validation (which names a gate may use), evaluate (what it computes and
shows), the gates (the default champion comparison), the monitor and the loop (the live metric).
"""

from __future__ import annotations

from dataclasses import dataclass

CLASSIFICATION, REGRESSION = "classification", "regression"
TASKS = (CLASSIFICATION, REGRESSION)


@dataclass(frozen=True)
class Metric:
    name: str
    task: str | None  # None: any task (latency, size)
    higher_is_better: bool
    description: str


_ALL = (
    Metric("accuracy", CLASSIFICATION, True, "share of test rows labelled correctly"),
    Metric("balanced_accuracy", CLASSIFICATION, True, "mean recall over classes (imbalance-proof accuracy)"),
    Metric("precision_macro", CLASSIFICATION, True, "precision, averaged over classes"),
    Metric("recall_macro", CLASSIFICATION, True, "recall, averaged over classes"),
    Metric("f1_macro", CLASSIFICATION, True, "F1, averaged over classes"),
    Metric("roc_auc", CLASSIFICATION, True, "area under the ROC curve (one vs rest, macro)"),
    Metric("log_loss", CLASSIFICATION, False, "cross-entropy of the predicted probabilities"),
    Metric("mae", REGRESSION, False, "mean absolute error"),
    Metric("rmse", REGRESSION, False, "root mean squared error"),
    Metric("r2", REGRESSION, True, "coefficient of determination"),
    Metric("latency_p50_ms", None, False, "median single-row prediction time (ms)"),
    Metric("latency_p95_ms", None, False, "95th percentile single-row prediction time (ms)"),
    Metric("size_mb", None, False, "size of the model package (MB)"),
)
METRICS: dict[str, Metric] = {m.name: m for m in _ALL}
# The metric a task is judged on first: the default champion comparison, the stage's key figure,
# the loop's live metric (live MAE, not RMSE: one bad label does not swamp it).
PRIMARY = {CLASSIFICATION: "accuracy", REGRESSION: "mae"}


def for_task(task: str) -> tuple[str, ...]:
    """Names of the metrics evaluate computes for `task` (quality first, then system metrics)."""
    return tuple(m.name for m in _ALL if m.task == task) + system()


def quality(task: str) -> tuple[str, ...]:
    return tuple(m.name for m in _ALL if m.task == task)


def system() -> tuple[str, ...]:
    return tuple(m.name for m in _ALL if m.task is None)


def higher_is_better(name: str) -> bool:
    return METRICS[name].higher_is_better


def gain(name: str, candidate: float, reference: float) -> float:
    """How much better `candidate` is than `reference` on `name` (negative: worse)."""
    return candidate - reference if higher_is_better(name) else reference - candidate
