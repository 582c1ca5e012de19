"""Shared fixtures: the real `loopml` command in a subprocess, and projects built with it.

Tests drive loopml through its public surface (the CLI, the Python API, HTTP) against real
components: a real MLflow SQLite store, a real `dvc repro`, real PyTorch training. One digits
project is trained per test session (once across the xdist workers, under a file lock); tests get
their own copy of it (`trained`), so no test sees another's registry changes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

# Each xdist worker gets its share of the cores. PyTorch and OpenMP default to every core in every
# process: two workers' training subprocesses then spin-wait against each other (two fast digits runs
# side by side on 2 cores took 35.6 s each, 28.2 s with one thread each). Set in the workers (xdist
# names their count before conftest is imported), before anything imports torch; every process a test
# starts inherits it (tool_env copies the environment).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end modules (marked `slow`) first, each module's tests kept together and in order: xdist
    deals modules out in this order, so the long ones start early instead of one running alone at
    the end while the other worker idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the order within stays


BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
# Latency gates are wall-clock assertions in disguise; tests relax them (this machine is noisy).
NO_WALL_CLOCK_GATE = {"LOOPML_GATES__LATENCY_P95_MS": "<= 10000"}
# Small, fast settings for tests that need a trained model but not a great one.
FAST = {
    "LOOPML_TRAIN__EPOCHS": "3",
    "LOOPML_MODEL__PARAMS__CHANNELS": "8",
    "LOOPML_GATES__ACCURACY": ">= 0.5",
    **NO_WALL_CLOCK_GATE,
}


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "MLFLOW_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["COLUMNS"] = "200"  # wide Rich tables: assertions read whole rows
    env.update(NO_WALL_CLOCK_GATE)  # every loopml a test runs; a test that means a latency gate sets its own
    env.update(extra or {})
    return env


def loopml(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True,
           timeout: float = 600) -> subprocess.CompletedProcess:  # fmt: skip
    proc = subprocess.run([str(BIN / "loopml"), *args], cwd=cwd, env=tool_env(env), capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"loopml {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def loopml_json(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return json.loads(loopml(*args, "--json", cwd=cwd, env=env).stdout)


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    """Until `loopml serve` at `url` answers ready; fails if the process dies or time runs out."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "the server did not start"
        time.sleep(0.2)


def prometheus_query(port: int, expr: str) -> list:
    """The result of a PromQL instant query on the Prometheus at 127.0.0.1:`port` ([] until it answers)."""
    import urllib.parse
    import urllib.request

    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())["data"]["result"]
    except OSError:
        return []


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(project: Path) -> None:
    subprocess.run([sys.executable, "prepare.py"], cwd=project, check=True, capture_output=True)


_SHARED: list[Path] = []  # the session's folder that every xdist worker sees (set by `shared_folder`)


@pytest.fixture(scope="session", autouse=True)
def shared_folder(tmp_path_factory, worker_id) -> Path:
    """A folder of this test session shared by every xdist worker, for what is built once a session
    (`built_once`); autouse, so it is set before any fixture builds there."""
    base = tmp_path_factory.getbasetemp()
    _SHARED[:] = [base if worker_id == "master" else base.parent]
    return _SHARED[0]


def built_once(kind: str, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `kind/name` made by `build(folder)` once per test session, across all xdist workers
    (under a file lock): copy it, never change it."""
    from filelock import FileLock

    shared = _SHARED[0]
    folder, done = shared / kind / name, shared / kind / f"{name}.done"
    with FileLock(str(shared / f"{kind}-{name}.lock")):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.parent.mkdir(exist_ok=True)
            build(folder)
            done.touch()
    return folder


def new_project(tmp_path: Path, template: str) -> Path:
    """A fresh project from `template` with its raw data prepared (no stage run yet): a copy of the
    session's one `loopml init` + prepare.py of the template (3-6 s each; the suite needs about 40)."""

    def init(project: Path) -> None:
        loopml("init", str(project), "--template", template, cwd=project.parent)
        prepare(project)

    return copy_project(built_once("fresh", template, init), tmp_path / template)


def make_fast(project: Path) -> None:
    """Write the FAST settings into loopml.yaml (DVC tracks the file, not environment overrides)."""
    path = project / "loopml.yaml"
    config = yaml.safe_load(path.read_text())
    config["train"]["epochs"] = 3
    config["model"]["params"]["channels"] = 8
    config["gates"]["accuracy"] = ">= 0.5"
    config["gates"]["latency_p95_ms"] = "<= 10000"
    # ONNX Runtime fp32 only: it answers as the trained model does, so the served champion's answers
    # equal offline ones (tests/optimize builds and judges every variant)
    config["optimize"]["variants"] = ["onnx"]
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def copy_project(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


@pytest.fixture
def digits(tmp_path: Path) -> Path:
    return new_project(tmp_path, "digits")


@pytest.fixture
def tabular(tmp_path: Path) -> Path:
    return new_project(tmp_path, "tabular")


@pytest.fixture(scope="session")
def trained_once() -> Path:
    """One digits project after one fast `loopml run`, for the whole session (all xdist workers):
    never use it directly, copy it (`trained`, `digits_run`)."""

    def train(project: Path) -> None:
        new_project(project.parent, "digits")
        make_fast(project)
        loopml("run", cwd=project)

    return built_once("trained", "digits", train)


@pytest.fixture(scope="module")
def digits_run(trained_once, tmp_path_factory) -> Path:
    """A copy of the trained digits project for one test module (do not move its aliases)."""
    return copy_project(trained_once, tmp_path_factory.mktemp("run") / "digits")


@pytest.fixture
def digits_copy(trained_once, tmp_path: Path) -> Path:
    """A private copy of the trained project, for a test that changes the registry."""
    return copy_project(trained_once, tmp_path / "digits")
