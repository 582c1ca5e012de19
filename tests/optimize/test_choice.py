"""The choice among measured variants, case by case (pure functions, milliseconds)."""

from __future__ import annotations

from loopml.contracts import VariantReport
from loopml.optimize.choice import choose, pareto


def report(name, status="passed", ms=1.0, accuracy=0.98, size=1.0, rows_s=1000.0):
    metrics = {"row_p95_ms": ms, "batch_p95_ms": ms * 10, "size_mb": size, "throughput_rows_s": rows_s,
               "accuracy": accuracy}  # fmt: skip
    return VariantReport(name, "onnxruntime", status, "", metrics, 1.0, 0.0)


def chosen(reports):
    return [r.name for r in reports if r.status == "chosen"]


def test_the_fastest_passing_variant_wins():
    reports = [report("base", ms=1.0), report("onnx", ms=0.3), report("onnx_int8", ms=0.1, status="rejected")]
    out = choose(reports, "latency_p95")
    assert chosen(out) == ["onnx"]
    assert {r.name: r.status for r in out}["onnx_int8"] == "rejected"  # faster, but it failed: never chosen
    assert "onnx is better" in out[0].reason


def test_the_original_stays_when_no_variant_passes_or_beats_it():
    assert chosen(choose([report("base"), report("onnx", status="rejected", ms=0.1)], "latency_p95")) == ["base"]
    assert chosen(choose([report("base", ms=0.5), report("torch_int8", ms=0.9)], "latency_p95")) == ["base"]
    assert chosen(choose([report("base", ms=0.5), report("onnx", ms=0.5)], "latency_p95")) == ["base"]  # a tie
    failed = VariantReport("prune_50", "", "failed", "pruning failed")
    assert chosen(choose([report("base"), failed], "latency_p95")) == ["base"]


def test_objectives_pick_by_their_own_figure():
    reports = [report("base", ms=1.0, size=2.0, rows_s=100), report("small", ms=2.0, size=0.5, rows_s=50),
               report("wide", ms=1.5, size=3.0, rows_s=900)]  # fmt: skip
    assert chosen(choose(reports, "size_mb")) == ["small"]
    assert chosen(choose(reports, "throughput")) == ["wide"]  # the most rows per second
    assert chosen(choose(reports, "latency_p95_batch")) == ["base"]


def test_pareto_marks_the_undominated():
    reports = [report("base", ms=1.0, accuracy=0.98), report("onnx", ms=0.3, accuracy=0.98),
               report("int8", ms=0.1, accuracy=0.97), report("slow", ms=2.0, accuracy=0.97),
               VariantReport("broken", "", "failed", "export failed")]  # fmt: skip
    marks = {r.name: r.pareto for r in pareto(reports, "classification")}
    assert marks == {"base": False, "onnx": True, "int8": True, "slow": False, "broken": False}


def test_regression_quality_is_lower_is_better():
    def reg(name, ms, mae):
        return VariantReport(name, "onnxruntime", "passed", "", {"row_p95_ms": ms, "mae": mae}, 1.0, 0.0)

    marks = {r.name: r.pareto for r in pareto([reg("base", 1.0, 2.0), reg("fast", 0.5, 2.5), reg("bad", 0.6, 3.0)],
                                              "regression")}  # fmt: skip
    assert marks == {"base": True, "fast": True, "bad": False}
