"""The README's commands: `make run` works from a clean tree (`make test` is what CI runs)."""

import json
import os
import signal
import subprocess
import time

import httpx
import pytest

from tests.conftest import NO_WALL_CLOCK_GATE, REPO, free_port, tool_env

pytestmark = pytest.mark.slow


def test_readme_opens_with_the_two_commands():
    head = (REPO / "README.md").read_text().split("```")[1]
    assert "make run" in head and "make test" in head


def test_make_run_leaves_a_champion_serves_it_and_reruns_cached(tmp_path):
    demo = tmp_path / "demo"
    env = tool_env(NO_WALL_CLOCK_GATE)
    first = _make_run(demo, env)
    evaluated = json.loads((demo / "outputs" / "evaluate.json").read_text())
    assert evaluated["metrics"]["accuracy"] >= 0.95  # the bar for the digits example
    assert "champion" in json.loads((demo / "outputs" / "register.json").read_text())["aliases"]
    assert first.count("ran") >= 5
    second = _make_run(demo, env)
    assert second.count("cached") == 6, second


def _make_run(demo, env) -> str:
    """`make run` until its server answers, a prediction, then Ctrl-C; returns what it printed."""
    port = free_port()
    proc = subprocess.Popen(["make", "run", f"DEMO={demo}", f"PORT={port}"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read()
        response = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"instances": [[0.0] * 64]})
        assert response.status_code == 200 and len(response.json()["predictions"]) == 1
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
        output, _ = proc.communicate(timeout=60)
    return output
