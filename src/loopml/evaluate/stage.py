"""The evaluate stage: test-set metrics, a dummy baseline, latency, size, permutation importance, the
champion on the same rows, the gates, and the report."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from loopml import metric
from loopml.contracts import EvaluateResult, Rival, Tag, TrainResult, plain, to_json
from loopml.data.dataset import Dataset, load_dataset
from loopml.evaluate import gate
from loopml.evaluate.metrics import LATENCY_METHOD, baseline, latency_ms, permutation_importance, quality
from loopml.evaluate.report import render
from loopml.fileio import write_text_atomic
from loopml.project import Project
from loopml_runtime import InputError, Predictor, package_size_mb


def evaluate(project: Project) -> EvaluateResult:
    from loopml.registry import Registry

    started = time.perf_counter()
    cfg = project.config
    trained = project.require_result(TrainResult, "evaluate")
    data = load_dataset(project)
    predictor = Predictor(project.model_dir)
    metrics, details = measure(predictor, data, cfg.task)
    metrics["size_mb"] = package_size_mb(project.model_dir)
    base = Rival(*baseline(cfg.task, data.X_train, data.y_train, data.X_test, data.y_test, data.classes))

    registry = Registry.of(project)
    current = registry.champion()
    champion, champion_note = None, ""
    if current is not None and current.run_id != trained.run_id:
        rival = registry.load(current.version)
        try:
            rival_metrics, _ = measure(rival, data, cfg.task)
            rival_metrics["size_mb"] = package_size_mb(rival.path)
            champion = Rival(f"v{current.version}", rival_metrics)
        except InputError as exc:  # the champion was trained on other columns
            champion_note = f"champion v{current.version} cannot score these rows ({exc})"
    results = gate.check(cfg.gates, cfg.task, metrics, champion, base)
    if champion_note:
        results = [replace(r, value=None, passed=False, note=champion_note) if r.kind == gate.VS_CHAMPION else r
                   for r in results]  # fmt: skip
    registrable = gate.passed(results, *gate.REGISTRATION)
    becomes_champion = registrable and gate.passed(results, gate.VS_CHAMPION)
    importance = permutation_importance(predictor.predict, data.X_test, data.y_test, cfg.task, cfg.data.seed)

    primary = metric.PRIMARY[cfg.task]
    passed_count = sum(r.passed for r in results)
    report_file = project.reports / "evaluation.html"
    result = EvaluateResult(
        seconds=0.0, figure=f"{primary} {metrics[primary]:.4f}, gates {passed_count}/{len(results)} passed",
        report=str(report_file.relative_to(project.root)), metrics=metrics, gates=results,
        registrable=registrable, becomes_champion=becomes_champion, champion=champion, baseline=base,
    )  # fmt: skip
    metrics_file = project.reports / "metrics.json"
    write_text_atomic(metrics_file, to_json({"metrics": metrics, "baseline": base, "champion": champion,
                                             "gates": results, "registrable": registrable,
                                             "becomes_champion": becomes_champion}))  # fmt: skip
    write_text_atomic(report_file, render({
        "name": cfg.name, "task": cfg.task, "run_id": trained.run_id, "data_digest": trained.data_digest,
        "git_commit": trained.git_commit, "created": dt.datetime.now().isoformat(timespec="seconds"),
        "metrics": metrics, "details": details, "gates": results, "champion": champion, "baseline": base,
        "registrable": registrable, "becomes_champion": becomes_champion, "importance": importance,
        "summary": _summary(project, data, trained), "latency_method": LATENCY_METHOD,
        "descriptions": {name: m.description for name, m in metric.METRICS.items()},
    }))  # fmt: skip
    with registry.run(run_id=trained.run_id):
        registry.log_metrics(metrics)
        registry.log_metrics({f"baseline.{k}": v for k, v in base.metrics.items()})
        registry.set_tags({Tag.GATES_PASSED: registrable, Tag.BEATS_CHAMPION: becomes_champion})
        registry.log_artifact(report_file, "reports")
        registry.log_artifact(metrics_file, "reports")
    result = replace(result, seconds=round(time.perf_counter() - started, 3))
    project.write_result(result)
    return result


def measure(predictor: Predictor, data: Dataset, task: str) -> tuple[dict[str, float], dict]:
    """Quality and latency of `predictor` on the test rows."""
    labels, proba = predictor.infer(data.X_test)
    metrics, details = quality(task, data.y_test, labels, proba, data.classes)
    metrics.update(latency_ms(predictor.predict, data.X_test))
    return metrics, details


def _summary(project: Project, data: Dataset, trained: TrainResult) -> dict[str, Any]:
    """What the model was trained on, for people: rows, balance, columns by role, the estimator."""
    by_role: dict[str, list[str]] = {}
    for column, role in data.roles.items():
        by_role.setdefault(role, []).append(column)
    summary: dict[str, Any] = {
        "source": project.config.data.path,
        "rows": {"train": data.train_rows, "test": len(data.X_test)},
        "columns_by_role": by_role,
        "estimator": trained.estimator,
        "params": plain(trained.params),
    }
    if data.classes is not None:
        # a streamed table's y_train is a sample: its labels were counted over every training row
        train = data.train_labels if data.train_labels is not None else Counter(data.y_train.tolist())
        test = Counter(data.y_test.tolist())
        summary["balance"] = [{"class": str(c), "train": train.get(c, 0), "test": test.get(c, 0)} for c in data.classes]
    else:
        summary["target"] = {"mean": float(data.y_train.mean()), "std": float(data.y_train.std()),
                             "min": float(data.y_train.min()), "max": float(data.y_train.max())}  # fmt: skip
    return summary
