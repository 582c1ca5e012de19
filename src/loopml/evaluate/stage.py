"""The evaluate stage: test-set metrics, latency, size, champion comparison, gates, report."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from loopml.config import METRICS
from loopml.data.dataset import load_dataset
from loopml.evaluate import gate
from loopml.evaluate.metrics import latency_ms, quality
from loopml.evaluate.report import render
from loopml.project import Project


def evaluate(project: Project) -> dict[str, Any]:
    from loopml import registry
    from loopml.train.package import Predictor, package_size_mb

    started = time.perf_counter()
    cfg = project.config
    trained = project.require_result("train", "evaluate")
    data = load_dataset(project)
    predictor = Predictor(project.model_dir)
    metrics, details = _measure(predictor, data, cfg.task)
    metrics["size_mb"] = package_size_mb(project.model_dir)

    champion_info = registry.champion(project)
    champion = None
    if champion_info and champion_info["run_id"] != trained["run_id"]:
        registry.connect(project)
        rival = registry.load_predictor(f"models:/{cfg.name}@champion")
        rival_metrics, _ = _measure(rival, data, cfg.task)
        rival_metrics["size_mb"] = package_size_mb(rival.path)
        champion = {"version": champion_info["version"], "metrics": rival_metrics}
    results = gate.check(cfg.gates, cfg.task, metrics, champion["metrics"] if champion else None)
    registrable = gate.passed(results, "threshold")
    becomes_champion = registrable and gate.passed(results, "vs_champion")

    project.reports.mkdir(parents=True, exist_ok=True)
    payload = {
        "metrics": metrics,
        "champion": champion,
        "gates": [r.as_dict() for r in results],
        "registrable": registrable,
        "becomes_champion": becomes_champion,
    }
    metrics_file = project.reports / "metrics.json"
    metrics_file.write_text(json.dumps(payload, indent=2) + "\n")
    report_file = project.reports / "evaluation.html"
    report_file.write_text(render({
        "name": cfg.name, "task": cfg.task, "run_id": trained["run_id"], "data_digest": trained["data_digest"],
        "git_commit": trained["git_commit"], "created": dt.datetime.now().isoformat(timespec="seconds"),
        "metrics": metrics, "details": details, "gates": results, "champion": champion,
        "registrable": registrable, "becomes_champion": becomes_champion,
    }))  # fmt: skip
    with registry.run(project, run_id=trained["run_id"]):
        registry.log_metrics(metrics)
        registry.set_tags({"loopml.gates_passed": registrable, "loopml.beats_champion": becomes_champion})
        registry.log_artifact(report_file, "reports")
        registry.log_artifact(metrics_file, "reports")

    primary = METRICS[cfg.task][0]
    passed_count = sum(r.passed for r in results)
    result = {
        "stage": "evaluate",
        "seconds": round(time.perf_counter() - started, 3),
        "figure": f"{primary} {metrics[primary]:.4f}, gates {passed_count}/{len(results)} passed",
        "report": str(report_file.relative_to(project.root)),
        **payload,
    }
    project.write_result("evaluate", result)
    return result


def _measure(predictor, data, task: str) -> tuple[dict[str, float], dict]:
    predictions = predictor.predict(data.X_test)
    proba = predictor.predict_proba(data.X_test)
    metrics, details = quality(task, data.y_test, predictions, proba, data.classes)
    metrics.update(latency_ms(predictor.predict, data.X_test))
    return metrics, details
