"""The team stack for a test module: PostgreSQL, an S3 server and an MLflow server on them, started
by the project's own `scripts/team-stack` on free ports and stopped afterwards.

Without PostgreSQL installed the tests are skipped, unless LOOPML_REQUIRE_STACK=1 (CI sets it):
then they fail, so CI never passes without having run them."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO

STACK = REPO / "scripts" / "team-stack"


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stack_ports() -> dict[str, int]:
    """Six consecutive free ports (and SeaweedFS's gRPC ports, each + 10000)."""
    for _ in range(200):
        base = random.randrange(20000, 29000)
        if all(_free(p) for p in range(base, base + 6)) and all(_free(p + 10000) for p in range(base + 2, base + 6)):
            return {"PG_PORT": base, "MLFLOW_PORT": base + 1, "S3_PORT": base + 2, "WEED_PORT_BASE": base + 3}
    raise RuntimeError("no free ports for the team stack")


def _postgres_installed() -> bool:
    return bool(shutil.which("pg_config") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb")))


@pytest.fixture(scope="module")
def team_stack(tmp_path_factory) -> dict[str, str]:
    if not _postgres_installed():
        message = "PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it"
        if os.environ.get("LOOPML_REQUIRE_STACK") == "1":
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("stack")
    ports = {k: str(v) for k, v in stack_ports().items()}
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **ports}
    up = subprocess.run([str(STACK), "up", str(folder)], env=env, capture_output=True, text=True, timeout=300)
    try:
        if up.returncode != 0:
            logs = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted(folder.glob("*.log")))
            pytest.fail(f"scripts/team-stack up failed:\n{up.stdout}\n{up.stderr}\n{logs}")
        yield dict(line.split("=", 1) for line in up.stdout.splitlines() if "=" in line)
    finally:
        subprocess.run([str(STACK), "down", str(folder)], env=env, capture_output=True, timeout=120)
