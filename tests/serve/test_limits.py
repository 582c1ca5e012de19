"""Attacks on a real `loopml serve` process: huge and many headers, slowloris, idle floods, a scan of
made-up model names, a giant feedback body. Each gets a 4xx or a closed connection, other clients
keep being answered, and the server's memory stays flat."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx
import psutil
import pytest

from tests.conftest import BIN, free_port, tool_env, wait_ready
from tests.serve.conftest import raw_request

pytestmark = pytest.mark.slow
ROW = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [0.0] * 64}]}


@pytest.fixture(scope="module")
def served(digits_run):
    port = free_port()
    env = tool_env({"LOOPML_SERVE__HEADER_TIMEOUT_S": "2", "LOOPML_SERVE__KEEP_ALIVE_S": "2",
                    "LOOPML_SERVE__MAX_HEADER_KB": "16", "LOOPML_SERVE__REGISTRY_POLL_S": "0",
                    "LOOPML_MONITOR__EVERY_S": "3600"})  # no drift gauges appearing mid-test  # fmt: skip
    proc = subprocess.Popen([str(BIN / "loopml"), "serve", "--port", str(port), "--no-access-log"], cwd=digits_run,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    yield port, url, psutil.Process(proc.pid)
    proc.terminate()
    proc.wait(timeout=60)


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


def test_header_size_and_count_are_bounded(served):
    port, url, _ = served
    big = raw_request(port, b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (32 << 20) + b"\r\n\r\n")
    assert big.startswith(b"HTTP/1.1 431") and b"serve.max_header_kb" in big
    # refused while the header is still arriving, not once it is complete (httptools would buffer it whole)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (1 << 20))
        assert sock.recv(4096).startswith(b"HTTP/1.1 431")
    many = raw_request(port, b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n" + b"x-a: 1\r\n" * 500 + b"\r\n")
    assert many.startswith(b"HTTP/1.1 431") and b"serve.max_headers" in many
    assert httpx.post(url + "/v2/models/digits/infer", json=ROW).status_code == 200


def test_slowloris_and_idle_connections_are_closed_while_others_are_answered(served):
    port, url, _ = served
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    for sock in slow:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n")  # and never the rest
    answered = [httpx.post(url + "/v2/models/digits/infer", json=ROW, timeout=5).status_code for _ in range(20)]
    assert set(answered) == {200}
    time.sleep(3.5)  # serve.header_timeout_s is 2 here
    for sock in slow + idle:
        sock.settimeout(2)
        data = sock.recv(4096)
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:80]
        sock.close()


def test_memory_stays_flat_under_scans_and_giant_feedback(served):
    port, url, process = served
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(200):  # warm up: allocator pools, caches
            client.post("/v2/models/digits/infer", json=ROW)
        before = rss_mb(process)
        sizes = []
        for start in (0, 1500):  # two scans of new made-up names: the second adds nothing to /metrics
            for i in range(start, start + 1500):
                client.post(f"/v2/models/made-up-{i}/infer", json=ROW)
                client.get(f"/v2/models/digits/versions/{i}")
            sizes.append(len(client.get("/metrics").text))
        giant = client.post("/feedback", content=b'{"id": "never-answered", "label": [' + b"1," * 5_000_000 + b"1]}",
                            headers={"content-type": "application/json"})  # fmt: skip
        after = rss_mb(process)
        assert giant.status_code in (400, 404, 413), giant.text[:200]
        assert client.post("/v2/models/digits/infer", json=ROW).status_code == 200
    assert abs(sizes[1] - sizes[0]) < 200, sizes  # counted under model="unknown", not a series per made-up name
    assert after < before + 150, (before, after)
