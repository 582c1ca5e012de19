"""The whole loop on the team stack: an MLflow server with its runs and registry in PostgreSQL and
its artifacts in S3 (SeaweedFS), the project pointing at it through `.env` only. `loopml run`
trains and registers there, `loopml serve` loads from there, shifted traffic drifts, Prometheus
alerts, Alertmanager tells the watcher, the loop retrains, canaries and promotes there, and a server
polling the remote registry follows rollback and promote. Data versions travel through an S3 DVC
remote to a fresh clone. Every way of pointing at a broken store gets a short message."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BIN, free_port, loopml, loopml_json, make_fast, new_project, tool_env, wait_ready
from tests.deploy.test_monitoring import alert_starts_the_loop
from tests.monitor.test_loop import LOOP

pytestmark = pytest.mark.slow


def serve(project: Path, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(BIN / "loopml"), "serve", "--port", str(port)], cwd=project,
                            env=tool_env({**LOOP, **env}), stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)


def served_versions(url: str) -> list[str]:
    return httpx.get(url + "/v2/models/digits", timeout=10).json()["versions"]


def wait_until(check, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_the_loop_runs_on_an_mlflow_server_with_postgres_and_s3(team_stack, tmp_path):
    import boto3
    import psycopg2

    project = new_project(tmp_path, "digits")
    make_fast(project)
    # the project learns where the team's server is from .env alone (git-ignored, never loopml.yaml)
    (project / ".env").write_text(f"MLFLOW_TRACKING_URI={team_stack['MLFLOW_TRACKING_URI']}\n")

    ran = loopml_json("run", cwd=project)
    assert ran["ok"] and json.loads((project / "outputs" / "register.json").read_text())["version"] == "1"
    assert not (project / ".loopml" / "mlflow.db").exists()  # nothing went to the local default store
    # the run and the registered version are rows in PostgreSQL; the model's files are objects in S3
    with psycopg2.connect(team_stack["LOOPML_STACK_POSTGRES"].replace("+psycopg2", "")) as db, db.cursor() as cur:
        cur.execute("SELECT version FROM model_versions WHERE name = 'digits'")
        assert cur.fetchall() == [(1,)]
        cur.execute("SELECT count(*) FROM runs r JOIN experiments e USING (experiment_id) WHERE e.name = 'digits'")
        assert cur.fetchone()[0] >= 1  # the training run, which evaluate continues
    s3 = boto3.client("s3", endpoint_url=team_stack["MLFLOW_S3_ENDPOINT_URL"],
                      aws_access_key_id=team_stack["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=team_stack["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=team_stack["LOOPML_STACK_BUCKET"])["Contents"]]
    assert any(k.endswith("artifacts/model/loopml-model.json") for k in keys)
    assert any(k.endswith("reports/evaluation.html") for k in keys)
    # a re-run asks the server, finds the run and the version, and stays cached
    again = loopml_json("run", cwd=project)
    assert again["ok"] and [s["status"] for s in again["stages"]] == ["cached"] * 6, again
    # doctor says where the store and the artifacts live, and that both answer
    doctor = loopml_json("doctor", cwd=project)
    assert doctor["facts"]["mlflow"] == {"tracking": team_stack["MLFLOW_TRACKING_URI"], "answers": True,
                                         "artifacts": "mlflow-artifacts:/1", "artifacts_answer": True,
                                         "error": None}  # fmt: skip
    assert "mlflow-store" in {f["id"] for f in doctor["findings"]}

    # serve from the server's registry; shifted traffic drifts; Prometheus fires the drift alert,
    # Alertmanager posts it to the watcher, whose loop retrains, pushes the new data version to the
    # S3 data remote, canaries and promotes v2: all of it on the team stack
    with (project / ".env").open("a") as env:
        env.write("".join(f"{k}={team_stack[k]}\n" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")))
    loopml("data", "remote", "add", f"s3://{team_stack['LOOPML_STACK_BUCKET']}/loop-data",
           "--endpoint-url", team_stack["MLFLOW_S3_ENDPOINT_URL"], cwd=project)  # fmt: skip
    if shutil.which("prometheus-alertmanager") is None:
        pytest.fail("needs Debian's prometheus and prometheus-alertmanager (.ci/run installs them)")
    decision = alert_starts_the_loop(project, tmp_path)
    assert "pushed" in decision["evidence"]["data_push"], decision["evidence"]["data_push"]
    # `loopml monitor` reads the same inference log against the remote registry
    checked = {v["version"]: v for v in loopml_json("monitor", "--since", "1h", cwd=project)["versions"]}
    assert checked["1"]["dataset_drift"] is True
    listed = {v["version"]: v for v in loopml_json("models", "list", cwd=project)}
    assert listed["2"]["aliases"] == ["champion"] or "champion" in listed["2"]["aliases"]

    # a server that polls the remote registry follows a rollback and a promote made elsewhere
    proc, url = serve(project, tmp_path / "serve2.log", {"LOOPML_SERVE__REGISTRY_POLL_S": "1"})
    try:
        assert served_versions(url) == ["2"]
        loopml("models", "rollback", "--reason", "team stack test", cwd=project)
        wait_until(lambda: served_versions(url) == ["1"])
        loopml("models", "promote", "2", "--reason", "team stack test", cwd=project)
        wait_until(lambda: served_versions(url) == ["2"])
    finally:
        stop(proc)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("postgresql+psycopg2://loopml:wrong-pw@127.0.0.1:{pg}/mlflow", "password authentication failed"),
        ("postgresql+psycopg2://loopml:{pw}@127.0.0.1:{pg}/no_such_db", 'database "no_such_db" does not exist'),
        ("postgresql+psycopg2://loopml:{pw}@127.0.0.1:1/mlflow", "Connection refused"),
        ("postgresql+nodriver://loopml:{pw}@127.0.0.1:{pg}/mlflow", "Can't load plugin"),
        ("http://loopml:{pw}@127.0.0.1:1", "cannot reach the MLflow server at http://127.0.0.1:1"),
    ],
)
def test_a_broken_store_is_one_short_line_without_secrets(team_stack, tmp_path, uri, expected):
    pg = team_stack["LOOPML_STACK_POSTGRES"].rsplit(":", 1)[1].split("/")[0]
    password = team_stack["LOOPML_STACK_POSTGRES"].split(":")[2].split("@")[0]
    uri = uri.format(pg=pg, pw=password)
    project = new_project(tmp_path, "digits")
    done = loopml("models", "list", cwd=project, env={"MLFLOW_TRACKING_URI": uri}, check=False, timeout=60)
    assert done.returncode == 1
    assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert password not in done.stderr + done.stdout and "wrong-pw" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3, done.stderr


def test_postgres_uri_without_the_default_driver_names_the_package(team_stack, tmp_path):
    """SQLAlchemy 2.1 reads postgresql:// as psycopg 3, which loopml[team] does not install."""
    pg = team_stack["LOOPML_STACK_POSTGRES"].replace("+psycopg2", "")
    project = new_project(tmp_path, "digits")
    done = loopml("models", "list", cwd=project, env={"MLFLOW_TRACKING_URI": pg}, check=False, timeout=60)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        assert done.returncode == 1 and "pip install 'psycopg[binary]'" in done.stderr, done.stderr
        assert "postgresql+psycopg2://" in done.stderr
    else:
        assert done.returncode == 0, done.stderr


def test_the_same_registry_through_the_database_directly(team_stack, tmp_path):
    """MLFLOW_TRACKING_URI may also name the PostgreSQL database itself (no server in between)."""
    project = new_project(tmp_path, "digits")
    listed = loopml_json("models", "list", cwd=project,
                         env={"MLFLOW_TRACKING_URI": team_stack["LOOPML_STACK_POSTGRES"]})  # fmt: skip
    assert isinstance(listed, list)
    assert json.dumps(listed).count('"name": "digits"') == len(listed)


def test_data_versions_travel_through_the_s3_remote(team_stack, tmp_path):
    import hashlib

    project = new_project(tmp_path, "digits")
    make_fast(project)
    secrets = {k: team_stack[k] for k in ("MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in secrets.items()))
    refused = loopml("run", "--push", cwd=project, check=False)
    assert refused.returncode == 1 and "--push needs a data remote" in refused.stderr
    assert not (project / "outputs" / "train.json").exists()  # refused before any work

    prefix = f"dvc-{tmp_path.name}"
    loopml("data", "remote", "add", f"s3://{team_stack['LOOPML_STACK_BUCKET']}/{prefix}",
           "--endpoint-url", team_stack["MLFLOW_S3_ENDPOINT_URL"], cwd=project)  # fmt: skip
    ran = loopml_json("run", "--push", cwd=project)
    assert ran["ok"] and ran["push"]["files"] >= 3, ran.get("push")  # raw data, model folder, traffic
    assert "AWS_SECRET_ACCESS_KEY" not in (project / "loopml.yaml").read_text()

    # a colleague's fresh clone has no data and no model until it pulls them from S3
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@loopml.invalid"]
    subprocess.run([*git, "add", "-A"], cwd=project, check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", "the project"], cwd=project, check=True, capture_output=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True, capture_output=True)
    assert not (clone / "data" / "raw" / "digits.parquet").exists() and not (clone / "outputs" / "model").exists()
    (clone / ".env").write_text((project / ".env").read_text())  # secrets travel by other means than git
    pulled = loopml_json("data", "pull", cwd=clone)
    assert pulled["files"] >= 3

    def md5(path: Path) -> str:
        return hashlib.md5(path.read_bytes()).hexdigest()

    for path in ("data/raw/digits.parquet", "outputs/model/weights.pt"):
        assert md5(clone / path) == md5(project / path), path
    again = loopml_json("run", cwd=clone)  # same data, same code, same model: nothing to do
    assert again["ok"] and [s["status"] for s in again["stages"]] == ["cached"] * 6, again

    (clone / ".env").write_text((project / ".env").read_text().replace(team_stack["AWS_SECRET_ACCESS_KEY"], "nope"))
    denied = loopml("data", "push", cwd=clone, check=False)
    assert denied.returncode == 1 and "refused these credentials" in denied.stderr, denied.stderr
    assert "Traceback" not in denied.stderr and "nope" not in denied.stderr


def test_a_remote_input_is_digested_by_its_content(team_stack, tmp_path, monkeypatch):
    import boto3

    from loopml.data.io import file_digest

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, team_stack[key])
    monkeypatch.setenv("AWS_ENDPOINT_URL", team_stack["MLFLOW_S3_ENDPOINT_URL"])
    s3 = boto3.client("s3")
    bucket, key = team_stack["LOOPML_STACK_BUCKET"], f"raw/{tmp_path.name}.csv"
    s3.put_object(Bucket=bucket, Key=key, Body=b"a,b\n1,2\n")
    first = file_digest(f"s3://{bucket}/{key}")
    assert first.startswith("etag:") and first != "remote"
    assert file_digest(f"s3://{bucket}/{key}") == first
    s3.put_object(Bucket=bucket, Key=key, Body=b"a,b\n1,3\n")
    assert file_digest(f"s3://{bucket}/{key}") != first  # new bytes, new digest
