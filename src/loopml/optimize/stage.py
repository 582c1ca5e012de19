"""The optimize stage: build each configured variant, judge it like the original (same test rows, same
gates) plus agreement with the original, time it at a fixed thread count, and choose the best on the
objective among those that pass; the original wins when none does (or none is better).

The chosen variant is logged to the training run as its own MLflow model, and `register` registers
that one. Results: `outputs/optimize.json`, `reports/optimize.html` (the Pareto table and a
latency-vs-quality plot), and metrics on the MLflow run.
"""

from __future__ import annotations

import logging
import shutil
import time

import numpy as np

from loopml import metric
from loopml.contracts import EvaluateResult, GateResult, OptimizeResult, TrainResult, VariantReport
from loopml.evaluate import gate
from loopml.evaluate.metrics import latency_ms, quality, torch_threads
from loopml.fileio import write_text_atomic
from loopml.optimize.choice import BASE, choose, pareto
from loopml.optimize.timing import cpu_flags, timings
from loopml.optimize.variants import Built, TrainingRows, VariantFailed, build, expand
from loopml.project import Project
from loopml_runtime import Predictor, package_size_mb

logger = logging.getLogger(__name__)
MAX_TIMED_BATCH = 4096  # serve.max_batch_size above this is timed at this many rows


def optimize(project: Project, progress=None) -> OptimizeResult:
    """Build, judge and choose; `progress(name)` is called as each variant starts."""
    from loopml.data.dataset import load_dataset
    from loopml.registry import Registry

    started = time.perf_counter()
    cfg = project.config
    settings = cfg.optimize
    trained = project.require_result(TrainResult, "optimize")
    evaluated = project.require_result(EvaluateResult, "optimize")
    batch_size = min(cfg.serve.max_batch_size, MAX_TIMED_BATCH)
    report_file = project.reports / "optimize.html"
    done = dict(run_id=trained.run_id, objective=settings.objective, threads=settings.threads, batch_size=batch_size,
                report=str(report_file.relative_to(project.root)), cpu_flags=cpu_flags())  # fmt: skip
    names = expand(settings.variants, cfg.model.type, settings)
    if not evaluated.registrable or not names:
        why = ("the model failed its gates: nothing to optimize" if not evaluated.registrable
               else "no variants configured (optimize.variants)")  # fmt: skip
        result = OptimizeResult(seconds=round(time.perf_counter() - started, 3), figure=f"kept the original ({why})",
                                chosen=BASE, model_uri=trained.model_uri, variants=[], **done)  # fmt: skip
        _write(project, result, report_file, cfg.task)
        return result

    data = load_dataset(project)
    work = project.state / "optimize"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    base = Predictor(project.model_dir, threads=settings.threads)
    judge = _Judge(cfg, evaluated, data, base, project.model_dir, batch_size)
    reports = [judge.base_report()]
    packages: dict[str, Built] = {}
    rows = TrainingRows(data.X_train, np.asarray(data.y_train))
    for name in names:
        if progress is not None:
            progress(name)
        try:
            built = build(name, base, work, settings, rows)
            reports.append(judge.variant(built))
            packages[name] = built
        except VariantFailed as exc:
            reports.append(VariantReport(name, "", "failed", str(exc)))
        except Exception as exc:  # a variant's own bug must not stop the others or lose the original
            logger.exception("variant %s", name)
            reports.append(VariantReport(name, "", "failed", f"{type(exc).__name__}: {exc}"))
    reports = choose(pareto(reports, cfg.task), settings.objective)
    chosen = next(r for r in reports if r.status == "chosen")
    model_uri = trained.model_uri
    registry = Registry.of(project)
    if chosen.name != BASE:
        from loopml.lineage import requirements

        built = packages[chosen.name]
        uses_sklearn = (built.package / "preprocessor.joblib").is_file()
        model_kind = cfg.model.type if built.runtime != "onnxruntime" else "onnx"
        extra: tuple[str, ...] = ()
        if cfg.model.type == "text":  # its tokenizer runs beside ONNX Runtime
            from loopml.train.text import EXTRA_REQUIREMENTS

            model_kind, extra = "text", (*EXTRA_REQUIREMENTS, "onnxruntime")
        with registry.run(run_id=trained.run_id):
            model_uri = registry.log_model(built.package, data.X_train.head(8),
                                           requirements(model_kind, uses_sklearn, extra),
                                           name=f"model-{chosen.name}")  # fmt: skip
    result = OptimizeResult(seconds=round(time.perf_counter() - started, 3), figure=_figure(reports, chosen),
                            chosen=chosen.name, model_uri=model_uri, variants=reports, **done)  # fmt: skip
    _write(project, result, report_file, cfg.task)
    with registry.run(run_id=trained.run_id):
        registry.log_metrics({f"optimize.{r.name}.{k}": v for r in reports for k, v in r.metrics.items()
                              if k in ("row_p95_ms", "batch_p95_ms", "size_mb", metric.PRIMARY[cfg.task])})  # fmt: skip
        registry.set_tags({"loopml.optimize.chosen": chosen.name})
        registry.log_artifact(report_file, "reports")
        registry.log_artifact(project.result_path("optimize"), "reports")
    shutil.rmtree(work, ignore_errors=True)
    return result


class _Judge:
    """Measures packages on the evaluation's test rows, against the original and the gates."""

    def __init__(self, cfg, evaluated: EvaluateResult, data, base: Predictor, base_package, batch_size: int):
        self.cfg, self.evaluated, self.data, self.base, self.batch_size = cfg, evaluated, data, base, batch_size
        # the original measured once: its answers are what every variant is compared with
        self.base_metrics, self.base_labels, self.base_proba = self._measure(base, base_package)
        # the gates the original passed are the ones a variant must pass too
        self.needed = {(g.metric, g.kind) for g in evaluated.gates if g.passed}

    def _measure(self, predictor: Predictor, package) -> tuple[dict[str, float], np.ndarray, np.ndarray | None]:
        labels, proba = predictor.infer(self.data.X_test)
        metrics, _ = quality(self.cfg.task, self.data.y_test, labels, proba, self.data.classes)
        with torch_threads(self.cfg.optimize.threads):
            metrics.update(latency_ms(predictor.predict, self.data.X_test))  # as evaluate measures it
        metrics["size_mb"] = package_size_mb(package)
        metrics.update(timings(predictor, self.data.X_test, self.batch_size, self.cfg.optimize.threads))
        return metrics, labels, proba

    def base_report(self) -> VariantReport:
        return VariantReport(BASE, self.base.runtime, "passed", "the trained model", self.base_metrics, 1.0, 0.0,
                             details={"runtime": self.base.runtime})  # fmt: skip

    def variant(self, built: Built) -> VariantReport:
        predictor = Predictor(built.package, threads=self.cfg.optimize.threads)
        metrics, labels, proba = self._measure(predictor, built.package)
        agreement, delta = self._agreement(labels, proba)
        gates = gate.check(self.cfg.gates, self.cfg.task, metrics, self.evaluated.champion, self.evaluated.baseline)
        failed = [g for g in gates if (g.metric, g.kind) in self.needed and not g.passed]
        problems = [_gate_text(g) for g in failed] + self._disagreement(agreement, delta)
        status, reason = ("rejected", "; ".join(problems)) if problems else ("passed", "passed every gate and agrees")
        return VariantReport(built.name, built.runtime, status, reason, metrics, agreement, delta,
                             details=built.details)  # fmt: skip

    def _agreement(self, labels, proba) -> tuple[float, float]:
        if self.cfg.task == "classification":
            agreement = float(np.mean(np.asarray(labels) == np.asarray(self.base_labels)))
            same = np.asarray(labels) == np.asarray(self.base_labels)
            if proba is None or self.base_proba is None or not same.any():
                return agreement, 0.0
            # over the rows labelled alike: a flipped label is min_agreement's business, not this one's
            return agreement, float(np.abs(proba[same] - self.base_proba[same]).max())
        spread = float(np.std(np.asarray(self.data.y_test, dtype=np.float64))) or 1.0
        values, original = np.asarray(labels, dtype=np.float64), np.asarray(self.base_labels, dtype=np.float64)
        delta = float(np.abs(values - original).max())
        return float(np.mean(np.isclose(values, original, rtol=1e-3, atol=1e-6 * spread))), delta / spread

    def _disagreement(self, agreement: float, delta: float) -> list[str]:
        settings = self.cfg.optimize
        problems = []
        if self.cfg.task == "classification":
            if agreement < settings.min_agreement:
                problems.append(f"labels agree with the original on {agreement:.2%} of test rows "
                                f"(optimize.min_agreement {settings.min_agreement:.2%})")  # fmt: skip
            if delta > settings.max_proba_delta:
                problems.append(f"a probability moved by {delta:.3g} (optimize.max_proba_delta "
                                f"{settings.max_proba_delta})")  # fmt: skip
        elif delta > settings.max_value_delta:
            problems.append(f"an output moved by {delta:.3g} target std (optimize.max_value_delta "
                            f"{settings.max_value_delta})")  # fmt: skip
        return problems


def _gate_text(g: GateResult) -> str:
    value = "n/a" if g.value is None else f"{g.value:.4g}"
    return f"gate {g.metric} {g.rule} ({g.kind}) failed: {value}"


def _figure(reports: list[VariantReport], chosen: VariantReport) -> str:
    built = sum(1 for r in reports if r.metrics) - 1
    passed = sum(1 for r in reports if r.status in ("passed", "chosen") and r.name != BASE)
    base = next(r for r in reports if r.name == BASE)
    if chosen.name == BASE:
        return f"kept the original; {passed}/{built} variants passed, none faster"
    speed = base.metrics["row_p95_ms"] / max(chosen.metrics["row_p95_ms"], 1e-9)
    return (f"{chosen.name}: p95 {chosen.metrics['row_p95_ms']:.3f} ms vs {base.metrics['row_p95_ms']:.3f} ms "
            f"({speed:.1f}x), {passed}/{built} variants passed")  # fmt: skip


def _write(project: Project, result: OptimizeResult, report_file, task: str) -> None:
    from loopml.optimize.report import render

    write_text_atomic(report_file, render(result, task))
    project.write_result(result)
