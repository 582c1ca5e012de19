"""The registry facade: honest, fast errors (a dead or failing server, damaged stores), idempotent
registration, and what `loopml run` does when the store lost what DVC remembers."""

from __future__ import annotations

import http.server
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from loopml.errors import NotFound
from loopml.project import Project
from loopml.registry import Registry
from loopml.store import redact
from tests.conftest import free_port, loopml, loopml_json

pytestmark = pytest.mark.slow


class Failing(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"boom")

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def failing_server():
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://user:s3cret@127.0.0.1:{port}"
    server.shutdown()


def test_a_dead_or_failing_server_fails_in_seconds_naming_the_uri_without_secrets(digits_copy, failing_server):
    dead = f"http://user:s3cret@127.0.0.1:{free_port()}"
    for uri in (dead, failing_server):
        started = time.monotonic()
        proc = loopml("evaluate", cwd=digits_copy, env={"MLFLOW_TRACKING_URI": uri}, check=False)
        took = time.monotonic() - started
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert redact(uri) in proc.stderr and "s3cret" not in proc.stderr
        assert took < 15, took
        serve = loopml("serve", "--port", str(free_port()), cwd=digits_copy, env={"MLFLOW_TRACKING_URI": uri},
                       check=False, timeout=60)  # fmt: skip
        assert serve.returncode == 1 and redact(uri) in serve.stderr
    assert loopml_json("models", "list", cwd=digits_copy)[0]["version"] == "1"  # nothing registered anywhere


def test_not_found_is_told_apart(digits_copy):
    registry = Registry.of(Project(digits_copy))
    assert registry.version_by_alias("nosuch") is None
    with pytest.raises(NotFound, match="no version '7'"):
        registry.describe("7")
    assert registry.champion().version == "1"


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_a_damaged_store_is_one_clear_line(digits_copy, damage):
    store = digits_copy / ".loopml" / "mlflow.db"
    data = store.read_bytes()
    store.write_bytes({"empty": b"", "truncated": data[: len(data) // 3], "garbage": b"not a database" * 100}[damage])
    for args in (["run"], ["models", "list"], ["evaluate"]):
        proc = loopml(*args, cwd=digits_copy, check=False)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and "mlflow.db" in proc.stderr, proc.stderr
        assert "cached" not in proc.stdout  # an emptied store is never "cached and registered"
    assert store.stat().st_size == {"empty": 0, "truncated": len(data) // 3, "garbage": 1400}[damage]


def test_a_new_store_means_training_again_not_cached(digits_copy):
    (digits_copy / ".loopml" / "mlflow.db").unlink()  # a new, empty store (the old one moved away)
    result = loopml_json("run", cwd=digits_copy)
    statuses = {s["name"]: s["status"] for s in result["stages"]}
    assert result["ok"] and statuses["train"] == "ran" and statuses["register"] == "ran", statuses
    assert [v["version"] for v in loopml_json("models", "list", cwd=digits_copy)] == ["1"]


def test_register_is_idempotent_per_run_also_when_concurrent(digits_copy):
    """Three `loopml register` at once for a run not registered yet: one new version, reused twice."""
    trained_file = digits_copy / "outputs" / "train.json"
    trained = json.loads(trained_file.read_text())
    with Registry.of(Project(digits_copy)).run() as run_id:  # a retrain's run, same model files
        pass
    trained_file.write_text(json.dumps({**trained, "run_id": run_id}))
    with ThreadPoolExecutor(3) as pool:
        procs = list(pool.map(lambda _: loopml("register", "--json", cwd=digits_copy, check=False), range(3)))
    assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs]
    results = [json.loads(p.stdout) for p in procs]
    assert {r["version"] for r in results} == {"2"} and sorted(r["reused"] for r in results) == [False, True, True]
    assert [v["version"] for v in loopml_json("models", "list", cwd=digits_copy)] == ["2", "1"]


def test_a_full_disk_is_one_line_and_loses_nothing(digits_copy):
    """Writes fail as on a full disk (a file-size limit: EFBIG, what ENOSPC looks like to the writer):
    one line, the previous report intact, no half-written file, no MLflow run left RUNNING."""
    import resource
    import sqlite3
    import subprocess

    from tests.conftest import BIN, tool_env

    report = digits_copy / "reports" / "evaluation.html"
    before = report.read_bytes()

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = subprocess.run([str(BIN / "loopml"), "evaluate"], cwd=digits_copy, env=tool_env(), capture_output=True,
                          text=True, preexec_fn=small_disk, timeout=300)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no space left" in proc.stderr and "nothing was half-written" in proc.stderr
    assert report.read_bytes() == before
    assert not [p for p in (digits_copy / "reports").iterdir() if p.name.endswith(".tmp")]
    with sqlite3.connect(digits_copy / ".loopml" / "mlflow.db") as db:
        assert db.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchone()[0] == 0
