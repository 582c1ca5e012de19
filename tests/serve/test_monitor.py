"""Live monitoring in the server: drift gauges from shifted traffic, the inference log, feedback."""

import time

import numpy as np
import pandas as pd
import pytest

from loopml.config import MonitorConfig
from tests.serve.conftest import settings_for

pytestmark = pytest.mark.slow


def wait_for_metrics(live, needle: str, seconds: float = 20) -> str:
    """/metrics once it contains `needle` (drift is computed every monitor.every_s), or at the deadline."""
    deadline = time.monotonic() + seconds
    metrics = ""
    while time.monotonic() < deadline and needle not in metrics:
        time.sleep(0.3)
        metrics = live.client.get("/metrics").text
    return metrics


def test_shifted_traffic_shows_in_gauges_log_and_feedback(digits_run, start, tmp_path):
    live = start(
        settings_for(digits_run, monitor=MonitorConfig(every_s=0.3, window=200), log_dir=str(tmp_path / "log"))
    )
    rows = pd.read_parquet(digits_run / "data" / "raw" / "digits.parquet").drop(columns="label").head(200)
    shifted = np.clip(rows.to_numpy() * 0.3 + 8, 0, 16)  # washed-out images: a real covariate shift
    ids = []
    for chunk in np.array_split(shifted, 20):
        response = live.client.post("/invocations", json={"instances": chunk.tolist()})
        assert response.status_code == 200
        ids.append(response.headers["x-request-id"])
    metrics = wait_for_metrics(live, 'loopml_dataset_drift{model="digits",version="1"} 1.0')
    assert 'loopml_dataset_drift{model="digits",version="1"} 1.0' in metrics
    assert 'loopml_feature_drift{feature="pixel_20",model="digits",stat="psi",version="1"}' in metrics
    assert 'feature="__prediction__"' in metrics

    feedback = live.client.post(
        "/feedback", json={"feedback": [{"id": ids[0], "label": 3}, {"id": ids[1], "label": 4}]}
    )
    assert feedback.status_code == 200 and feedback.json() == {"accepted": 2}
    assert live.client.post("/feedback", json={"label": 3}).status_code == 400
    batch = live.client.post("/feedback", json={"id": ids[2], "label": list(range(10))})  # rows 0..9
    one_row = live.client.post("/feedback", json={"id": ids[3], "row": 4, "label": 7})
    assert batch.status_code == 200 and one_row.status_code == 200
    for bad in ({"id": ids[3], "row": -1, "label": 1}, {"id": ids[3], "row": "4", "label": 1},
                {"id": ids[3], "label": {"class": 1}}, {"id": ids[3], "label": []}):  # fmt: skip
        refused = live.client.post("/feedback", json=bad)
        assert refused.status_code == 400 and '"row"' in refused.json()["error"], bad
    live.stop()  # shutdown flushes what is buffered
    log = pd.concat(pd.read_parquet(p) for p in sorted((tmp_path / "log").glob("inferences-*.parquet")))
    assert len(log) == 200 and set(log["id"]) == set(ids) and (log["version"] == "1").all()
    assert {"time", "row", "pixel_0", "__prediction__"} <= set(log.columns)
    labels = pd.concat(pd.read_parquet(p) for p in (tmp_path / "log").glob("feedback-*.parquet"))
    assert sorted(set(labels["id"])) == sorted(ids[:4]) and len(labels) == 2 + 10 + 1
    assert labels.loc[labels["id"] == ids[2], "row"].tolist() == list(range(10))
    assert labels.loc[labels["id"] == ids[3], ["row", "label"]].values.tolist() == [[4, 7]]


def test_same_distribution_traffic_is_not_drift(digits_run, start):
    live = start(settings_for(digits_run, monitor=MonitorConfig(every_s=0.3, window=300)))
    rows = (
        pd.read_parquet(digits_run / "data" / "raw" / "digits.parquet")
        .drop(columns="label")
        .sample(300, random_state=0)
    )
    for chunk in np.array_split(rows.to_numpy(), 10):
        assert live.client.post("/invocations", json={"instances": chunk.tolist()}).status_code == 200
    metrics = wait_for_metrics(live, "loopml_dataset_drift{")
    assert 'loopml_dataset_drift{model="digits",version="1"} 0.0' in metrics
    assert live.client.post("/feedback", json={"id": "x", "label": 1}).status_code == 409  # no log: no home


def test_feedback_is_checked_against_the_model_and_bounded(digits_run, start, tmp_path):
    live = start(settings_for(digits_run, monitor=MonitorConfig(every_s=0.3), log_dir=str(tmp_path / "log")))
    answer = live.client.post("/invocations", json={"instances": [[0.0] * 64] * 3})
    request_id = answer.headers["x-request-id"]
    other = live.client.post("/invocations", json={"instances": [[0.0] * 64]}).headers["x-request-id"]
    for label, words in ((12, "12 is not a class of this model"), ("seven", "'seven' is not a class"),
                         ([1, 2, 3, 4], "4 label(s) from row 0, but the request had 3 row(s)")):  # fmt: skip
        refused = live.client.post("/feedback", json={"id": request_id, "label": label})
        assert refused.status_code == 400 and words in refused.json()["error"], refused.text
    unknown = live.client.post("/feedback", json={"id": "never-answered", "label": 1})
    assert unknown.status_code == 404 and "never-answered" in unknown.json()["error"]
    mixed = live.client.post("/feedback", json={"feedback": [{"id": request_id, "label": [1, 2, 3]},
                                                             {"id": other, "label": "cat"}]})  # fmt: skip
    assert mixed.status_code == 400 and "1 label(s) refused, 1 kept" in mixed.json()["error"]
    huge = live.client.post("/feedback", content=b'{"id": "x", "label": [' + b"1," * 600_000 + b"1]}",
                            headers={"content-type": "application/json"})  # fmt: skip
    assert huge.status_code == 413 and "serve.max_feedback_kb" in huge.json()["error"]
    live.stop()
    labels = pd.concat(pd.read_parquet(p) for p in (tmp_path / "log").glob("feedback-*.parquet"))
    assert labels.sort_values("row")["label"].tolist() == [1, 2, 3]  # the good ones of the mixed request


def test_a_dropped_column_never_reaches_disk(digits_run, start, tmp_path):
    private = MonitorConfig(every_s=0.3, log_columns={"pixel_0": "drop", "pixel_1": "hash"}, log_predictions=False)
    live = start(settings_for(digits_run, monitor=private, log_dir=str(tmp_path / "log")))
    assert live.client.post("/invocations", json={"instances": [[7.0] + [0.0] * 63]}).status_code == 200
    live.stop()
    (written,) = list((tmp_path / "log").glob("inferences-*.parquet"))
    frame = pd.read_parquet(written)
    assert "pixel_0" not in frame.columns and "__prediction__" not in frame.columns
    assert frame["pixel_1"].iloc[0] != 0.0 and len(frame["pixel_1"].iloc[0]) == 24  # a keyed hash
