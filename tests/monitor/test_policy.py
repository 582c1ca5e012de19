"""The loop's decisions, case by case, in milliseconds: no server, no registry, no DVC."""

import pytest

from loopml.config import LoopConfig
from loopml.monitor.policy import Health, VersionServed, canary_ready, cooldown_left, judge_canary, retrain_trigger

CFG = LoopConfig(min_rows=100, min_labelled=50, max_metric_drop=0.05, canary_min_labelled=30, promote_margin=0.0,
                 max_error_rate=0.01, max_latency_ratio=1.5, cooldown_s=600)  # fmt: skip


def health(**changes) -> Health:
    base = {"version": "1", "rows": 500, "labelled": 100, "live": 0.9, "evaluated": 0.92, "dataset_drift": False,
            "drifted": [], "columns": 10}  # fmt: skip
    return Health(**{**base, **changes})


def test_no_trigger_when_healthy():
    assert retrain_trigger(health(), "classification", CFG) is None


def test_drift_triggers_only_with_enough_rows_and_when_enabled():
    drifting = health(dataset_drift=True, drifted=["a", "b", "c", "d", "e", "f"])
    assert "dataset drift on v1's last 500 rows (6 of 10 columns, e.g. a, b, c, d)" in retrain_trigger(
        drifting, "classification", CFG)  # fmt: skip
    assert retrain_trigger(health(dataset_drift=True, rows=99), "classification", CFG) is None
    assert retrain_trigger(drifting, "classification", CFG.model_copy(update={"on_drift": False})) is None
    assert retrain_trigger(health(dataset_drift=None), "classification", CFG) is None  # too few rows: no verdict


def test_a_live_accuracy_drop_triggers_with_enough_labels():
    assert "0.1200 worse than evaluated" in retrain_trigger(health(live=0.80), "classification", CFG)
    assert retrain_trigger(health(live=0.80, labelled=10), "classification", CFG) is None
    assert retrain_trigger(health(live=0.80), "classification", CFG.model_copy(update={"max_metric_drop": None})) \
        is None  # fmt: skip


def test_regression_drop_is_the_relative_rise_of_mae():
    assert health(live=12.0, evaluated=10.0).drop("regression") == pytest.approx(0.2)
    assert "live mae 12.0000" in retrain_trigger(health(live=12.0, evaluated=10.0), "regression", CFG)


def test_cooldown():
    assert cooldown_left(1000.0, 1100.0, CFG) == 500.0
    assert cooldown_left(1000.0, 2000.0, CFG) == 0.0


def live(champion: float, challenger: float, n: int = 40) -> dict:
    return {"1": {"labelled": n, "accuracy": champion}, "2": {"labelled": n, "accuracy": challenger}}


def test_a_better_challenger_is_promoted():
    verdict = judge_canary("classification", CFG, "1", "2", live(0.77, 0.95), {}, enough=True)
    assert verdict.promote and "gain +0.1800" in verdict.why


def test_a_worse_challenger_is_rolled_back():
    verdict = judge_canary("classification", CFG, "1", "2", live(0.95, 0.77), {}, enough=True)
    assert not verdict.promote and "not promoted" in verdict.why


def test_errors_and_latency_of_requests_the_version_ran_decide_too():
    served = {"1": VersionServed(1000, 0, 10.0), "2": VersionServed(100, 40, 10.0)}
    verdict = judge_canary("classification", CFG, "1", "2", live(0.77, 0.95), served, enough=True)
    assert not verdict.promote and "5xx share 0.4000" in verdict.why
    slow = {"1": VersionServed(1000, 0, 10.0), "2": VersionServed(100, 0, 50.0)}
    assert "5.00x" in judge_canary("classification", CFG, "1", "2", live(0.77, 0.95), slow, enough=True).why


def test_not_enough_labels_is_never_a_promotion():
    verdict = judge_canary("classification", CFG, "1", "2", live(0.5, 0.99, n=3), {}, enough=False)
    assert not verdict.promote and "not enough evidence" in verdict.why
    assert not canary_ready({"1": 40, "2": 3}, ("1", "2"), CFG) and canary_ready({"1": 30, "2": 30}, ("1", "2"), CFG)


def test_regression_canary_gains_are_mae_falls():
    values = {"1": {"labelled": 40, "mae": 5.0}, "2": {"labelled": 40, "mae": 4.0}}
    assert judge_canary("regression", CFG, "1", "2", values, {}, enough=True).promote
