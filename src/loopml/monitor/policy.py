"""The loop's decisions, as pure functions of what it observed: retrain or not, and whether a
challenger that ran a canary is promoted or rolled back. No I/O here: each case is a unit test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loopml import metric
from loopml.config import LoopConfig


@dataclass(frozen=True)
class Health:
    """A version's traffic as the loop sees it."""

    version: str
    rows: int
    labelled: int
    live: float | None  # live accuracy (classification) or MAE (regression)
    evaluated: float | None  # the same metric on the test set at evaluation time
    dataset_drift: bool | None  # None: no drift check (no reference, or too few rows)
    drifted: list[str] = field(default_factory=list)
    columns: int = 0

    def drop(self, task: str) -> float | None:
        """How much worse live is than evaluated: accuracy points lost, or the MAE's relative rise."""
        if self.live is None or self.evaluated is None:
            return None
        if task == metric.CLASSIFICATION:
            return self.evaluated - self.live
        return (self.live - self.evaluated) / self.evaluated if self.evaluated else None


def retrain_trigger(health: Health, task: str, cfg: LoopConfig) -> str | None:
    """Why the champion should be retrained, or None."""
    reasons = []
    if cfg.on_drift and health.dataset_drift and health.rows >= cfg.min_rows:
        reasons.append(f"dataset drift on v{health.version}'s last {health.rows} rows ({len(health.drifted)} of "
                       f"{health.columns} columns, e.g. {', '.join(health.drifted[:4])})")  # fmt: skip
    drop = health.drop(task)
    if cfg.max_metric_drop is not None and drop is not None and health.labelled >= cfg.min_labelled \
            and drop > cfg.max_metric_drop:  # fmt: skip
        name = metric.PRIMARY[task]
        reasons.append(f"live {name} {health.live:.4f} on {health.labelled} labelled rows is {drop:.4f} worse than "
                       f"evaluated {health.evaluated:.4f} (loop.max_metric_drop {cfg.max_metric_drop})")  # fmt: skip
    return "; ".join(reasons) or None


def cooldown_left(last_decision_at: float, now: float, cfg: LoopConfig) -> float:
    return max(0.0, last_decision_at + cfg.cooldown_s - now)


@dataclass(frozen=True)
class VersionServed:
    """A version's requests, 5xx answers and p95 latency while the canary was open."""

    requests: float
    errors: float
    p95_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests > 0 else 0.0


@dataclass(frozen=True)
class Verdict:
    promote: bool
    why: str
    evidence: dict[str, Any] = field(default_factory=dict)


def judge_canary(task: str, cfg: LoopConfig, champion: str, challenger: str, live: dict[str, dict[str, Any]],
                 served: dict[str, VersionServed], enough: bool) -> Verdict:  # fmt: skip
    """Promote the challenger when its live metric beats the champion's by loop.promote_margin, its
    5xx share is at most loop.max_error_rate higher and its p95 at most loop.max_latency_ratio times
    the champion's; never without enough labelled rows on both."""
    name = metric.PRIMARY[task]
    if not enough:
        counts = {v: live[v]["labelled"] for v in live}
        return Verdict(
            False,
            f"after loop.canary_max_wait_s ({cfg.canary_max_wait_s:g} s) only {counts} labelled "
            f"rows (needed {cfg.canary_min_labelled} each): not enough evidence to promote",
        )
    a, b = live[champion][name], live[challenger][name]
    gain = metric.gain(name, b, a)
    checks = [(gain >= cfg.promote_margin,
               f"live {name} {b:.4f} vs {a:.4f} on {live[challenger]['labelled']}/{live[champion]['labelled']} "
               f"labelled rows (gain {gain:+.4f}, needed >= {cfg.promote_margin:g})")]  # fmt: skip
    mine, theirs = served.get(challenger), served.get(champion)
    errors_b = mine.error_rate if mine else 0.0
    errors_a = theirs.error_rate if theirs else 0.0
    checks.append((errors_b - errors_a <= cfg.max_error_rate,
                   f"5xx share {errors_b:.4f} vs {errors_a:.4f} (at most +{cfg.max_error_rate:g})"))  # fmt: skip
    if mine and theirs and mine.p95_ms and theirs.p95_ms:
        ratio = mine.p95_ms / theirs.p95_ms
        checks.append(
            (
                ratio <= cfg.max_latency_ratio,
                f"p95 {mine.p95_ms:.1f} ms vs {theirs.p95_ms:.1f} ms "
                f"({ratio:.2f}x, at most {cfg.max_latency_ratio:g}x)",
            )
        )
    failed = [text for ok, text in checks if not ok]
    why = ("; ".join(failed) + " — not promoted") if failed else "; ".join(text for _, text in checks)
    return Verdict(not failed, why)


def canary_ready(counts: dict[str, int], versions: tuple[str, str], cfg: LoopConfig) -> bool:
    return all(counts.get(v, 0) >= cfg.canary_min_labelled for v in versions)
