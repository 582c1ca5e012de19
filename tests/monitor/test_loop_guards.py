"""The loop's guards, through `Loop` with its collaborators handed in (no live server, no retraining):
poisoned labels are quarantined and never trained on, a retrain that fails validation does not block
the next clean cycle, a restarted server is noticed mid-canary, `--once` returns after one check and
`--json` prints JSON alone."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from loopml.config import MonitorConfig
from loopml.data import inference_log
from loopml.monitor.loop import Loop
from loopml.monitor.server_client import Snapshot, VersionTraffic
from loopml.pipeline import StageRun
from loopml.project import Project
from tests.conftest import loopml

pytestmark = pytest.mark.slow
LOOP = {"LOOPML_LOOP__MIN_ROWS": "100", "LOOPML_LOOP__MIN_LABELLED": "100", "LOOPML_LOOP__COOLDOWN_S": "0",
        "LOOPML_LOOP__CANARY_MIN_LABELLED": "10", "LOOPML_LOOP__CANARY_MAX_WAIT_S": "30"}  # fmt: skip


def log_traffic(project: Project, labels: list, rows: int = 300) -> list[str]:
    """Inverted digits answered by v1, with labels (the poison included) as feedback."""
    raw = pd.read_parquet(project.root / "data" / "raw" / "digits.parquet").head(rows)
    inputs = 16 - raw.drop(columns="label")
    ids = [f"req-{i}" for i in range(rows)]
    policy = inference_log.LogPolicy.of(MonitorConfig(), project.inference_log)
    frame = inference_log.log_frame(ids, [time.time()] * rows, [1] * rows, "1", inputs, np.zeros(rows, dtype=int))
    inference_log.write(project.inference_log, "inferences", frame, policy)
    inference_log.write(project.inference_log, "feedback", inference_log.feedback_frame(
        [(i, 0, label) for i, label in zip(ids, labels, strict=True)]), policy)  # fmt: skip
    return ids


class FakeServer:
    def __init__(self):
        self.calls, self.started = [], 100.0

    def snapshot(self) -> Snapshot:
        return Snapshot(self.started, {"1": VersionTraffic(10, 0, {0.01: 10})})

    def open_canary(self, alias, percent):
        self.calls.append(("open", alias, percent))
        return {}

    def close_canary(self):
        self.calls.append(("close",))
        return {}

    def reload(self):
        self.calls.append(("reload",))
        return {}

    def traffic(self):
        return {"canary_version": None}


@pytest.fixture
def project(digits_copy, monkeypatch):
    for name, value in LOOP.items():
        monkeypatch.setenv(name, value)
    return Project(digits_copy)


def test_poisoned_labels_are_quarantined_and_a_failed_validation_does_not_block_the_next_cycle(project):
    labels = list(pd.read_parquet(project.root / "data" / "raw" / "digits.parquet")["label"].head(300))
    labels[5], labels[17], labels[42] = 12, "seven", -3  # out of range, text, negative
    log_traffic(project, labels)
    seen = []

    def failing_retrain(echo):  # what retraining would have seen
        seen.extend(pd.read_parquet(f) for f in sorted(project.traffic_dir.glob("*.parquet")))
        return [StageRun("validate", "failed", 1.0, "")], 1

    decision = Loop(project, server=FakeServer(), retrain=failing_retrain, echo=lambda line: None).cycle()
    assert decision.kind == "retrain_failed" and "stage validate" in decision.reason
    files = sorted(project.quarantine_dir.glob("*.parquet"))
    quarantined = pd.read_parquet(next(f for f in files if "failed-validation" not in f.name))
    assert sorted(quarantined["id"].astype(str).tolist()) == ["req-17", "req-42", "req-5"]
    assert quarantined["reason"].str.contains("not a class").sum() == 3
    batch = seen[0]
    assert len(batch) == 297 and set(batch["label"]) <= set(range(10))  # what retraining saw: no poison
    assert list(project.traffic_dir.glob("*.parquet")) == []  # moved out after the failed validation
    moved = pd.read_parquet(next(f for f in files if "failed-validation" in f.name))
    assert len(moved) == 297 and moved["reason"].str.startswith("the retrain failed validation").all()
    loopml("validate", cwd=project.root)  # the next clean cycle validates


def test_a_server_restart_during_the_canary_reopens_it(project):
    server = FakeServer()
    loop = Loop(project, server=server, clock=time.time, sleep=lambda s: setattr(server, "started", 200.0),
                echo=lambda line: None)  # fmt: skip
    before = server.snapshot()
    loop._save_open("1", "1", time.time(), before, {})  # a canary opened against the same version (no labels)
    project.config.loop.canary_max_wait_s = 2
    decision = loop.cycle()
    assert ("open", "challenger", project.config.loop.canary_percent) in server.calls  # opened again
    assert decision.kind == "rolled_back" and "not enough evidence" in decision.reason
    assert decision.evidence.get("restarts")


def test_once_returns_after_one_check_and_json_is_alone_on_stdout(project):
    proc = loopml("monitor", "--watch", "--once", "--json", cwd=project.root, timeout=120)
    decision = json.loads(proc.stdout)
    assert decision["decision"] == "ok" and "nothing to do" in decision["reason"]
    assert "nothing to do" in proc.stderr  # progress goes to stderr
