"""Gates: absolute thresholds on metrics and comparisons with the current champion.

Absolute gates decide whether a model may be registered at all; champion gates
(`gates.vs_champion`, applied to candidate minus champion) decide whether it takes over
`champion`. Without configured champion gates, the candidate must be no worse than the
champion on the task's primary metric.
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass

from loopml.config import GATE_PATTERN, HIGHER_IS_BETTER, PRIMARY_METRIC, GatesConfig

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}


@dataclass
class GateResult:
    metric: str
    kind: str  # "threshold" or "vs_champion"
    rule: str  # e.g. ">= 0.95"
    value: float | None  # the metric (threshold) or candidate minus champion (vs_champion)
    passed: bool
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def parse(rule: str) -> tuple[str, float]:
    match = GATE_PATTERN.match(rule)
    return match[1], float(match[2])


def check(gates: GatesConfig, task: str, metrics: dict[str, float],
          champion: dict[str, float] | None) -> list[GateResult]:  # fmt: skip
    results = []
    for metric, rule in gates.thresholds.items():
        value = metrics.get(metric)
        if value is None:
            results.append(GateResult(metric, "threshold", rule, None, False, "not computed for this model"))
            continue
        op, limit = parse(rule)
        results.append(GateResult(metric, "threshold", rule, value, OPS[op](value, limit)))
    vs = dict(gates.vs_champion) or _default_vs_champion(task)
    for metric, rule in vs.items():
        if champion is None:
            results.append(GateResult(metric, "vs_champion", rule, None, True, "no champion yet"))
            continue
        if metric not in metrics or metric not in champion:
            results.append(GateResult(metric, "vs_champion", rule, None, False, "not computed for both models"))
            continue
        op, limit = parse(rule)
        delta = metrics[metric] - champion[metric]
        note = f"candidate {metrics[metric]:.4g} vs champion {champion[metric]:.4g}"
        results.append(GateResult(metric, "vs_champion", rule, delta, OPS[op](delta, limit), note))
    return results


def passed(results: list[GateResult], kind: str) -> bool:
    return all(r.passed for r in results if r.kind == kind)


def _default_vs_champion(task: str) -> dict[str, str]:
    primary = PRIMARY_METRIC[task]
    return {primary: ">= 0" if primary in HIGHER_IS_BETTER else "<= 0"}
