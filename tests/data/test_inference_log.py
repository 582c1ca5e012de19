"""The inference log's one owner: privacy policy, retention, label rules, bulk feedback checks."""

import time

import numpy as np
import pandas as pd
import pytest

from loopml.config import MonitorConfig
from loopml.data import inference_log as log
from loopml.errors import DataError


def test_dropped_columns_never_reach_disk_and_hashed_ones_stay_joinable(tmp_path, monkeypatch):
    monkeypatch.setenv(log.KEY_ENV, "k")
    cfg = MonitorConfig(log_columns={"email": "hash", "ssn": "drop"}, log_predictions=False)
    policy = log.LogPolicy.of(cfg, tmp_path)
    inputs = pd.DataFrame({"email": ["a@x.org", "b@x.org", "a@x.org"], "ssn": ["1", "2", "3"], "age": [30, 40, 50]})
    frame = log.log_frame(["r1", "r2"], [time.time()] * 2, [2, 1], "1", inputs, np.array([0, 1, 0]))
    path = log.write(tmp_path, "inferences", policy.apply(frame), policy)
    written = pd.read_parquet(path)
    assert "ssn" not in written.columns
    assert "__prediction__" not in written.columns  # predictions off
    assert written["email"][0] == written["email"][2] != "a@x.org"
    assert b"a@x.org" not in path.read_bytes()
    assert not policy.kept(["email", "age"]) and policy.kept(["age"])


def test_retention_by_count_age_and_size(tmp_path):
    policy = log.LogPolicy(keep_files=3, max_age_s=3600, max_bytes=10_000)
    now = time.time()
    names = []
    for age, size in ((7200, 10), (100, 10), (90, 10), (80, 10), (70, 9000), (60, 3000)):
        name = tmp_path / f"inferences-{int((now - age) * 1e9)}-x.parquet"
        name.write_bytes(b"0" * size)
        names.append(name)
    gone = log.enforce_retention(tmp_path, "inferences", policy, now)
    left = sorted(p.name for p in tmp_path.glob("inferences-*"))
    assert names[0] in gone  # too old
    assert len(left) <= 3 and sum((tmp_path / n).stat().st_size for n in left) <= 10_000
    assert names[-1].name in left  # the newest stays


def test_label_rules():
    classes = log.LabelRules([0, 1, 2])
    assert classes.check(2) == 2 and classes.check("2") == 2 and classes.check(2.0) == 2
    with pytest.raises(ValueError, match="not a class"):
        classes.check("cat")
    with pytest.raises(ValueError, match="one value"):
        classes.check([1, 2])
    text = log.LabelRules(["no", "yes"])
    assert text.check("yes") == "yes"
    with pytest.raises(ValueError, match="not a class"):
        text.check(True)
    regression = log.LabelRules(None, (0.0, 10.0), 1.0)
    assert regression.check(15) == 15.0
    for bad in (25.0, float("nan"), "7", True):
        with pytest.raises(ValueError):
            regression.check(bad)


def test_bulk_feedback_is_checked_whole_before_anything_is_written():
    rules = log.LabelRules([0, 1])
    good = log.validate_feedback(pd.DataFrame({"id": ["a", "b"], "label": [1, 0], "row": [0, 3]}), rules)
    assert good["label"].tolist() == [1, 0] and good["row"].tolist() == [0, 3]
    with pytest.raises(DataError, match="2 label\\(s\\) do not fit the model: row 1"):
        log.validate_feedback(pd.DataFrame({"id": ["a", "b", "c"], "label": [1, "seven", 9]}), rules)
    with pytest.raises(DataError, match="non-negative integers"):
        log.validate_feedback(pd.DataFrame({"id": ["a"], "label": [1], "row": [-1]}), rules)
