"""Shared fixtures: the real `loopml` command in a subprocess, and projects built with it.

Tests drive loopml through its public surface (the CLI, the Python API) against real
components: a real MLflow SQLite store, a real `dvc repro`, real PyTorch training.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(project: Path) -> None:
    subprocess.run([sys.executable, "prepare.py"], cwd=project, check=True, capture_output=True)


def new_project(tmp_path: Path, template: str) -> Path:
    """A fresh project from `template` with its raw data prepared (no stage run yet)."""
    project = tmp_path / template
    loopml("init", str(project), "--template", template, cwd=tmp_path)
    prepare(project)
    return project


@pytest.fixture
def digits(tmp_path: Path) -> Path:
    return new_project(tmp_path, "digits")


@pytest.fixture
def tabular(tmp_path: Path) -> Path:
    return new_project(tmp_path, "tabular")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """A digits project after one fast `loopml run` (shared by a module: do not mutate the registry)."""
    root = tmp_path_factory.mktemp("run")
    project = root / "digits"
    loopml("init", str(project), cwd=root)
    loopml("run", cwd=project, env=FAST)
    return project


@pytest.fixture
def digits_copy(digits_run: Path, tmp_path: Path) -> Path:
    """A private copy of the run project, for tests that move aliases."""
    copy = tmp_path / "digits"
    shutil.copytree(digits_run, copy, symlinks=True)
    return copy
