"""`loopml serve --workers 2` is one server: /metrics counts every worker's requests, an admin call
reaches every worker, feedback finds the worker that answered, a killed worker comes back with the
canary the others serve."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import psutil
import pytest

from loopml.project import Project
from loopml.registry import Registry
from tests.conftest import BIN, free_port, tool_env, wait_ready

pytestmark = pytest.mark.slow
TOKEN = "workers-token"
ROW = {"instances": [[0.0] * 64] * 3}


@pytest.fixture
def two_workers(digits_copy):
    registry = Registry.of(Project(digits_copy))
    trained = __import__("json").loads((digits_copy / "outputs" / "train.json").read_text())
    with registry.run() as run_id:
        pass
    registry.register(run_id, trained["model_uri"], {}, ["challenger"], "a second version")
    port = free_port()
    env = tool_env({"LOOPML_ADMIN_TOKEN": TOKEN, "LOOPML_SERVE__REGISTRY_POLL_S": "0",
                    "LOOPML_MONITOR__EVERY_S": "0.3"})  # fmt: skip
    proc = subprocess.Popen([str(BIN / "loopml"), "serve", "--port", str(port), "--workers", "2", "--no-access-log"],
                            cwd=digits_copy, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, seconds=180)
    time.sleep(2)  # both workers: the first ready one answers first
    yield url, proc
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)


def test_two_workers_are_one_server(two_workers):
    url, proc = two_workers
    workers = psutil.Process(proc.pid).children()
    assert len(workers) == 2
    auth = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, timeout=30) as client:
        ids = []
        for _ in range(60):
            answer = client.post("/invocations", json=ROW, headers={"connection": "close"})
            assert answer.status_code == 200
            ids.append(answer.headers["x-request-id"])
        metrics = client.get("/metrics").text
        wanted = 'loopml_requests_total{model="digits",protocol="mlflow",status="200"'
        counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(wanted))
        assert counted == 60  # every worker's requests, whichever worker answered the scrape

        opened = client.post("/admin/traffic", json={"canary": "challenger", "canary_percent": 50}, headers=auth)
        assert opened.status_code == 200, opened.text
        body = opened.json()
        assert body["canary_version"] == "2"
        assert [w["status"] for w in body["workers"]] == [200] and body["workers"][0]["body"]["canary_version"] == "2"
        states = {client.get("/admin/traffic", headers={**auth, "connection": "close"}).json()["canary_version"]
                  for _ in range(20)}  # fmt: skip
        assert states == {"2"}

        time.sleep(1)  # the workers write their logs every 0.3 s; feedback needs the answering worker
        labels = [{"id": i, "label": [0, 0, 0]} for i in ids]
        fed = client.post("/feedback", json={"feedback": labels})
        assert fed.status_code == 200 and fed.json() == {"accepted": 60}, fed.text

        os.kill(workers[0].pid, signal.SIGKILL)  # a worker dies: the supervisor starts another
        deadline = time.monotonic() + 120
        while len(psutil.Process(proc.pid).children()) < 2 or time.monotonic() < deadline - 110:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        time.sleep(8)  # it loads the model and the canary again
        states = {client.get("/admin/traffic", headers={**auth, "connection": "close"}).json()["canary_version"]
                  for _ in range(20)}  # fmt: skip
        assert states == {"2"}
