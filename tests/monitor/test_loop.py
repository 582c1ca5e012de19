"""The closed loop on digits, end to end on real components: `loopml run` → `loopml serve` →
shifted traffic with labels → drift → `loopml monitor --watch` retrains (DVC), registers a
challenger, canaries it on the live server and promotes it; then a deliberately worse
challenger is rolled back. Also `loopml monitor` and `loopml feedback` on the same log."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import BIN, FAST, copy_project, free_port, loopml, loopml_json, tool_env, wait_ready

pytestmark = pytest.mark.slow

TOKEN = "loop-test-token"
# Fast checks and a canary that decides on ~60 labelled rows per version; latency is not judged
# (wall clock on a noisy 2-core machine).
LOOP = {
    "LOOPML_ADMIN_TOKEN": TOKEN,
    "LOOPML_MONITOR__EVERY_S": "0.3",
    "LOOPML_LOOP__CHECK_EVERY_S": "1",
    "LOOPML_LOOP__MIN_ROWS": "200",
    "LOOPML_LOOP__MIN_LABELLED": "200",
    "LOOPML_LOOP__CANARY_PERCENT": "50",
    "LOOPML_LOOP__CANARY_MIN_LABELLED": "60",
    "LOOPML_LOOP__CANARY_MAX_WAIT_S": "300",
    "LOOPML_LOOP__MAX_LATENCY_RATIO": "1000",
    "LOOPML_LOOP__COOLDOWN_S": "0",
}
# A challenger that passes a relaxed threshold gate but has barely learned anything (in the loop,
# losing to the champion on the test set does not stop a challenger: its canary decides).
WORSE = {"LOOPML_TRAIN__EPOCHS": "1", "LOOPML_TRAIN__LR": "0.00001", "LOOPML_GATES__ACCURACY": ">= 0"}


def inverted(x: np.ndarray) -> np.ndarray:
    return 16 - x  # negative images: every pixel's distribution moves


class Traffic:
    """A client sending labelled digits (10 rows a request) and their labels as feedback."""

    def __init__(self, url: str, project: Path, shift=inverted):
        raw = pd.read_parquet(project / "data" / "raw" / "digits.parquet")
        self.x, self.y = shift(raw.drop(columns="label").to_numpy(float)), raw["label"].to_numpy()
        self.client = httpx.Client(base_url=url, timeout=30)
        self.rng = np.random.default_rng(7)
        self.versions: list[str] = []
        self.ids: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, requests: int) -> None:
        for _ in range(requests):
            rows = self.rng.choice(len(self.x), 10, replace=False)
            answer = self.client.post("/invocations", json={"instances": self.x[rows].tolist()})
            assert answer.status_code == 200, answer.text
            self.versions.append(answer.headers["x-model-version"])
            self.ids.append(answer.headers["x-request-id"])
            labels = {"id": answer.headers["x-request-id"], "label": self.y[rows].tolist()}
            given = self.client.post("/feedback", json=labels)
            # a version unloaded between the answer and its labels (a promotion, a closed canary) no
            # longer takes them over HTTP: documented, and those labels go through `loopml feedback`
            assert given.status_code == 200 or "no request with this id was answered here" in given.text, given.text

    def keep_sending(self) -> None:
        self._stop.clear()

        def run():
            while not self._stop.is_set():
                self.send(5)
                time.sleep(0.05)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)


@pytest.fixture(scope="module")
def served(trained_once, tmp_path_factory):
    """A copy of the trained digits project (its registry is mutated here), served with admin on."""
    root = tmp_path_factory.mktemp("loop")
    project = copy_project(trained_once, root / "digits")
    port = free_port()
    server_log = (root / "serve.log").open("w")  # a file, not a pipe: the access log never blocks the server
    # two workers: the loop's canary, reload, metrics and feedback must work across them
    proc = subprocess.Popen([str(BIN / "loopml"), "serve", "--port", str(port), "--workers", "2"], cwd=project,
                            env=tool_env({**LOOP, "LOOPML_SERVE__REGISTRY_POLL_S": "0"}),
                            stdout=server_log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    yield project, url
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    server_log.close()


def watch_once(project: Path, url: str, traffic: Traffic, env: dict[str, str] | None = None) -> dict:
    """`loopml monitor --watch --once` while the traffic keeps coming, as it would in production."""
    traffic.keep_sending()
    try:
        done = loopml("monitor", "--watch", "--once", "--json", cwd=project, timeout=900,
                      env={**FAST, **LOOP, "LOOPML_LOOP__SERVER": url, **(env or {})})  # fmt: skip
    finally:
        traffic.stop()
    return json.loads(done.stdout[done.stdout.rfind("\n{\n") + 1 :])  # the JSON after the pipeline's output


def kill_when_canary_opens(project: Path, url: str, traffic: Traffic, env: dict[str, str]) -> str:
    """Start `loopml monitor --watch --once`, SIGKILL it as soon as its canary is open; its output."""
    traffic.keep_sending()
    proc = subprocess.Popen([str(BIN / "loopml"), "monitor", "--watch", "--once"], cwd=project, text=True,
                            env=tool_env({**FAST, **LOOP, "LOOPML_LOOP__SERVER": url, **env}),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("canary: "):
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
        traffic.stop()
    return "".join(seen)


def registry(project: Path) -> mlflow.MlflowClient:
    from loopml.project import Project
    from loopml.registry import use_store

    use_store(Project(project).tracking_uri)
    return mlflow.MlflowClient()


def test_drift_retrains_canaries_and_promotes_then_a_worse_challenger_is_rolled_back(served):
    project, url = served
    # 1. production traffic turns negative; v1 (trained on positive images) fails on it
    shifted = Traffic(url, project)
    shifted.send(40)
    time.sleep(1)  # the server writes its log every monitor.every_s
    before = yaml.safe_load((project / "data" / "traffic.dvc").read_text())["outs"][0]

    decision = watch_once(project, url, shifted)

    assert decision["decision"] == "promoted", decision["reason"]
    assert decision["version"] == "2"
    evidence = decision["evidence"]
    assert "dataset drift on v1" in evidence["trigger"]
    assert evidence["retraining_rows_added"] >= 200
    live = evidence["canary"]["live"]
    assert live["2"]["labelled"] >= 60 and live["1"]["labelled"] >= 60
    assert live["2"]["accuracy"] > live["1"]["accuracy"] + 0.3  # learned the negatives from the feedback
    # the retraining set is a new DVC version: raw data + labelled traffic, in the cache
    after = yaml.safe_load((project / "data" / "traffic.dvc").read_text())["outs"][0]
    assert after["md5"] != before["md5"] and after["nfiles"] == 1
    cache = project / ".dvc" / "cache" / "files" / "md5" / after["md5"][:2] / after["md5"][2:]
    assert cache.is_file()
    # the registry moved, with the decision and its evidence on the version and in a run
    client = registry(project)
    assert str(client.get_model_version_by_alias("digits", "champion").version) == "2"
    tags = client.get_model_version("digits", "2").tags
    assert json.loads(tags["loopml.loop.decision"])["decision"] == "promoted"
    assert "won its canary against v1" in json.loads(tags["loopml.champion_by"])["why"]
    runs = mlflow.search_runs(experiment_names=["digits"], filter_string="tags.`loopml.stage` = 'loop'")
    assert list(runs["tags.loopml.decision"]) == ["promoted"]
    assert json.loads(runs["tags.loopml.evidence"][0])["canary"]["live"]["2"]["labelled"] >= 60
    # the server now serves v2 alone, without a restart
    assert httpx.get(url + "/v2/models/digits").json()["versions"] == ["2"]
    log = (project / "reports" / "loop.log").read_text()
    assert "promoted: v2 promoted over v1" in log

    # 2. `loopml monitor` reads the same log: v1's drift and accuracy drop, v2's recovery
    report = project / "monitor.html"
    checked = loopml_json("monitor", "--since", "1h", "--report", str(report), cwd=project)
    by_version = {v["version"]: v for v in checked["versions"]}
    assert by_version["1"]["dataset_drift"] is True and by_version["1"]["metric_drop"] > 0.3
    assert by_version["2"]["live"]["accuracy"] > 0.6
    pixel = next(c for c in by_version["1"]["drift"]["columns"] if c["column"] == "pixel_20")
    assert pixel["kind"] == "categorical"  # 17 grey levels: few distinct values count as categories
    assert {"psi", "jensen_shannon", "chi2"} <= set(pixel["stats"]) and pixel["drifted"] is True
    html = report.read_text()
    assert "digits v1: live traffic" in html and "live accuracy" in html and "data:image/png;base64" in html
    monitored = client.get_model_version("digits", "1").tags["loopml.monitor"]
    assert json.loads(monitored)["dataset_drift"] is True

    # 3. the same shift keeps coming; now a badly trained challenger must lose its canary.
    # v2 learned the negatives from 25% of its data: all-negative traffic is still drift for it.
    # The first watcher is killed once its canary is open; the next one picks the canary up.
    shifted.send(40)
    time.sleep(1)
    env = {**WORSE, "LOOPML_MONITOR__DRIFT_SHARE": "0.2"}
    killed = kill_when_canary_opens(project, url, shifted, env)
    assert "canary: v3 against v2" in killed
    decision = watch_once(project, url, shifted, env)

    assert decision["decision"] == "rolled_back", decision["reason"]
    assert decision["version"] == "3"
    live = decision["evidence"]["canary"]["live"]
    assert live["3"]["accuracy"] < live["2"]["accuracy"]
    assert str(client.get_model_version_by_alias("digits", "champion").version) == "2"
    tags = client.get_model_version("digits", "3").tags
    assert "lost its canary against v2" in json.loads(tags["loopml.rejected"])["why"]
    assert "challenger" not in client.get_registered_model("digits").aliases
    assert httpx.get(url + "/v2/models/digits").json()["versions"] == ["2"]
    assert "rolled_back: v3 rolled back, v2 keeps all traffic" in (project / "reports" / "loop.log").read_text()
    assert decision["evidence"]["retraining_rows_added"] >= 200  # carried over from the killed watcher


def test_feedback_file_joins_logged_requests(served, tmp_path):
    project, url = served
    traffic = Traffic(url, project, shift=lambda x: x)
    answer = traffic.client.post("/invocations", json={"instances": traffic.x[:3].tolist()})
    request_id = answer.headers["x-request-id"]
    time.sleep(1)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": [request_id] * 3 + ["nobody"], "row": [0, 1, 2, 0], "label": [0, 1, 2, 5]}).to_csv(
        labels, index=False
    )
    added = loopml_json("feedback", str(labels), cwd=project)
    assert added["added"] == 4 and added["matched_requests"] == 3

    bad = tmp_path / "bad.csv"
    pd.DataFrame({"request": [request_id], "label": [1]}).to_csv(bad, index=False)
    refused = loopml("feedback", str(bad), cwd=project, check=False)
    assert refused.returncode == 1 and "feedback needs the columns id and label" in refused.stderr
