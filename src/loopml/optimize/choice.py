"""The choice among measured variants, as pure functions over `VariantReport`s (unit-tested case by
case): which are Pareto-optimal on latency and quality, and which one the objective picks."""

from __future__ import annotations

from dataclasses import replace

from loopml import metric
from loopml.contracts import VariantReport

BASE = "base"
OBJECTIVES = {  # objective -> (metric, sign): the choice minimizes sign * metric
    "latency_p95": ("row_p95_ms", 1.0),
    "latency_p95_batch": ("batch_p95_ms", 1.0),
    "size_mb": ("size_mb", 1.0),
    "throughput": ("throughput_rows_s", -1.0),
}


def pareto(reports: list[VariantReport], task: str) -> list[VariantReport]:
    """Mark the measured variants no other measured variant beats on both latency and quality."""
    primary = metric.PRIMARY[task]
    sign = -1.0 if metric.higher_is_better(primary) else 1.0
    points = {r.name: (r.metrics["row_p95_ms"], sign * r.metrics[primary]) for r in reports if r.metrics}
    out = []
    for r in reports:
        if r.name not in points:
            out.append(r)
            continue
        a = points[r.name]
        dominated = any(b[0] <= a[0] and b[1] <= a[1] and b != a for b in points.values())
        out.append(replace(r, pareto=not dominated))
    return out


def choose(reports: list[VariantReport], objective: str) -> list[VariantReport]:
    """The best on the objective among the original and the variants that passed."""
    key, sign = OBJECTIVES[objective]
    scored = [replace(r, objective=sign * r.metrics[key]) if r.metrics else r for r in reports]
    candidates = [r for r in scored if r.status == "passed"]
    best = min(candidates, key=lambda r: (r.objective, r.name != BASE))
    out = []
    for r in scored:
        if r.name == best.name:
            why = "best on the objective among those that pass" if r.name != BASE else (
                "kept: no variant passed and beat it on the objective")  # fmt: skip
            out.append(replace(r, status="chosen", reason=why))
        elif r.status == "passed" and r.name != BASE:
            out.append(replace(r, reason=f"passed; {best.name} is better on {key}"))
        elif r.name == BASE:
            out.append(replace(r, reason=f"the trained model; {best.name} is better on {key}"))
        else:
            out.append(r)
    return out
