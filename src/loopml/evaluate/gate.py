"""Gates: absolute thresholds, comparisons with a dummy baseline, comparisons with the champion.

Threshold and baseline gates decide whether a model may be registered at all; champion gates
(`gates.vs_champion`, applied to candidate minus champion) decide whether it takes over `champion`.
Without configured champion gates, the candidate must be no worse than the champion on the task's
primary metric (`metric.PRIMARY`).
"""

from __future__ import annotations

import operator

from loopml import metric
from loopml.config import GATE_PATTERN, GatesConfig
from loopml.contracts import GateResult, Rival

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
THRESHOLD, VS_CHAMPION, VS_BASELINE = "threshold", "vs_champion", "vs_baseline"
REGISTRATION = (THRESHOLD, VS_BASELINE)  # the kinds that decide whether a model is registered


def parse(rule: str) -> tuple[str, float]:
    match = GATE_PATTERN.match(rule)
    return match[1], float(match[2])


def holds(rule: str, value: float) -> bool:
    op, limit = parse(rule)
    return bool(OPS[op](value, limit))


def check(gates: GatesConfig, task: str, metrics: dict[str, float], champion: Rival | None,
          baseline: Rival | None = None) -> list[GateResult]:  # fmt: skip
    results = []
    for name, rule in gates.thresholds.items():
        value = metrics.get(name)
        if value is None:
            results.append(GateResult(name, THRESHOLD, rule, None, False, "not computed for this model"))
        else:
            results.append(GateResult(name, THRESHOLD, rule, value, holds(rule, value)))
    results += _relative(gates.vs_baseline, metrics, baseline, VS_BASELINE, "baseline")
    vs = dict(gates.vs_champion) or default_vs_champion(task)
    if champion is None:
        results += [GateResult(name, VS_CHAMPION, rule, None, True, "no champion yet") for name, rule in vs.items()]
    else:
        results += _relative(vs, metrics, champion, VS_CHAMPION, f"champion {champion.name}")
    return results


def _relative(rules: dict[str, str], metrics: dict[str, float], rival: Rival | None, kind: str,
              label: str) -> list[GateResult]:  # fmt: skip
    results = []
    for name, rule in rules.items():
        if rival is None or name not in metrics or name not in rival.metrics:
            results.append(
                GateResult(name, kind, rule, None, False, f"not computed for both the model and the {label}")
            )
            continue
        delta = metrics[name] - rival.metrics[name]
        note = f"Δ = candidate {metrics[name]:.4g} − {label} {rival.metrics[name]:.4g}"
        results.append(GateResult(name, kind, rule, delta, holds(rule, delta), note))
    return results


def passed(results: list[GateResult], *kinds: str) -> bool:
    return all(r.passed for r in results if r.kind in kinds)


def default_vs_champion(task: str) -> dict[str, str]:
    primary = metric.PRIMARY[task]
    return {primary: ">= 0" if metric.higher_is_better(primary) else "<= 0"}
