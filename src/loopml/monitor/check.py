"""`loopml monitor`: drift and live performance of each served version, from the inference log.

For every version with traffic in the window: its rows are counted against the reference profile it
was trained with (features and predictions), joined with the feedback labels for live accuracy
(MAE for regression), and compared with what the evaluate stage measured. No drift verdict on fewer
than `monitor.min_rows` rows. Each check is logged to MLflow as a run and summarized on the version.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopml import metric
from loopml.config import parse_duration
from loopml.contracts import Tag
from loopml.data.drift import DriftReport, compare
from loopml.data.inference_log import join_labels, read_feedback, read_log
from loopml.data.profile import Profile
from loopml.errors import ConfigError
from loopml.monitor.policy import Health
from loopml.monitor.traffic import performance
from loopml.project import Project


@dataclass
class VersionHealth:
    version: str
    rows: int
    live: dict[str, Any]  # labelled rows and live accuracy or MAE/RMSE
    evaluated: float | None  # the same metric on the test set at evaluation time
    drift: DriftReport | None
    reference: Profile | None = field(default=None, repr=False)
    current: Profile | None = field(default=None, repr=False)

    def metric_drop(self, task: str) -> float | None:
        return self.health(task).drop(task)

    def health(self, task: str) -> Health:
        """What the loop's policy decides on."""
        drift = self.drift
        verdict = drift.dataset_drift if drift is not None and drift.enough_rows else None
        return Health(self.version, self.rows, self.live["labelled"], self.live.get(metric.PRIMARY[task]),
                      self.evaluated, verdict, [c.column for c in drift.columns if c.drifted] if drift else [],
                      len(drift.columns) if drift else 0)  # fmt: skip

    def as_dict(self, task: str) -> dict[str, Any]:
        drift = self.drift
        return {
            "version": self.version,
            "rows": self.rows,
            "live": self.live,
            "evaluated": {metric.PRIMARY[task]: self.evaluated},
            "metric_drop": self.metric_drop(task),
            "dataset_drift": drift.dataset_drift if drift else None,
            "enough_rows": drift.enough_rows if drift else None,
            "drift_share": drift.drift_share if drift else None,
            "drifted_columns": [c.column for c in drift.columns if c.drifted] if drift else [],
            "drift": drift.as_dict() if drift else None,
        }


def since_timestamp(text: str | None) -> float | None:
    """`--since`: a duration back from now ("30m", "6h", "2d") or an ISO date/time."""
    if text is None:
        return None
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f'--since must be a duration ("30m", "6h", "2d") or an ISO time ("2026-11-22T09:00"); got "{text}"'
        ) from None
    return when.timestamp()


def check(project: Project, since: float | None = None, versions: list[str] | None = None,
          registry=None) -> list[VersionHealth]:  # fmt: skip
    """The health of each version with traffic since `since` (all logged traffic when None)."""
    from loopml.registry import Registry

    cfg = project.config
    registry = registry or Registry.of(project)
    log = read_log(project.inference_log, since)
    labelled = join_labels(log, read_feedback(project.inference_log))
    wanted = versions or sorted(log["version"].unique(), key=_version_key)
    results = []
    for version in wanted:
        rows = log[log["version"] == version]
        live = performance(cfg.task, labelled[labelled["version"] == version])
        evaluated, reference, report, current = None, None, None, None
        if version != "local":
            evaluated = registry.describe(version).metrics.get(metric.PRIMARY[cfg.task])
            reference = registry.reference_profile(version)
        if reference is not None and len(rows):
            rows = _described(registry, version, rows, reference)
            current = reference.count(rows[[c for c in reference.columns if c in rows.columns]])
            report = compare(reference, current, cfg.monitor.thresholds())
        results.append(VersionHealth(version, len(rows), live, evaluated, report, reference, current))
    return results


def _described(registry, version: str, rows, reference):
    """A text model's drift is watched on figures of its texts (length, unknown words, embedding):
    the logged texts go through that version's own encoder (Predictor.describe)."""
    if all(c in rows.columns for c in reference.columns):
        return rows
    if registry.package_meta(version).get("kind") != "text":
        return rows
    from loopml_runtime import Predictor

    return Predictor(registry.download(version)).describe(rows)


def log_to_mlflow(project: Project, health: VersionHealth, report_file: Path | None, since: float | None,
                  registry=None) -> str:  # fmt: skip
    """One MLflow run per check and version; a summary tag on the version itself."""
    from loopml.registry import Registry

    registry = registry or Registry.of(project)
    task = project.config.task
    summary = health.as_dict(task)
    metrics = {"rows": health.rows, "labelled": health.live["labelled"]}
    metrics.update({f"live_{k}": v for k, v in health.live.items() if k != "labelled" and v is not None})
    if health.drift:
        metrics["drift_share"] = health.drift.drift_share
        metrics["dataset_drift"] = float(health.drift.dataset_drift)
        for column in health.drift.columns:
            psi = column.stats.get("psi")
            if psi is not None:
                metrics[f"psi.{_metric_name(column.column)}"] = psi
    if summary["metric_drop"] is not None:
        metrics["metric_drop"] = summary["metric_drop"]
    with registry.run(name=f"monitor v{health.version}") as run_id:
        registry.set_tags({Tag.STAGE: "monitor", Tag.VERSION: health.version, Tag.SINCE: since or "",
                           Tag.DATASET_DRIFT: summary["dataset_drift"]})  # fmt: skip
        registry.log_metrics(metrics)
        if report_file is not None:
            registry.log_artifact(report_file, "monitor")
    if health.version != "local":
        brief = {k: summary[k] for k in ("rows", "live", "metric_drop", "dataset_drift", "drift_share")}
        brief.update(run_id=run_id, when=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        registry.tag_version(health.version, {Tag.MONITOR: json.dumps(brief, default=str)})
    return run_id


def report_facts(project: Project, health: VersionHealth) -> dict[str, str]:
    task = project.config.task
    name = metric.PRIMARY[task]
    live = health.live.get(name)
    drop = health.metric_drop(task)
    return {
        "model": f"{project.config.name} v{health.version}",
        "requests' rows in the window": str(health.rows),
        "labelled rows (feedback)": str(health.live["labelled"]),
        f"live {name}": "—" if live is None else f"{live:.4f}",
        f"evaluated {name} (test set)": "—" if health.evaluated is None else f"{health.evaluated:.4f}",
        "drop vs evaluation": "—" if drop is None else f"{drop:+.4f}",
    }


def _metric_name(column: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces."""
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in column).strip("_") or "column"


def _version_key(version: str) -> tuple:
    return (0, int(version)) if version.isdigit() else (1, version)
