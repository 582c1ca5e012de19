"""`loopml serve` as a user runs it, and `loopml predict` on files."""

import signal
import subprocess

import httpx
import pandas as pd
import pytest

from loopml_runtime import Predictor
from tests.conftest import BIN, free_port, loopml, loopml_json, tool_env, wait_ready

pytestmark = pytest.mark.slow


def test_serve_command_answers_then_stops_cleanly_on_ctrl_c(digits_run):
    port = free_port()
    proc = subprocess.Popen([str(BIN / "loopml"), "serve", "--port", str(port)], cwd=digits_run, env=tool_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        response = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"instances": [[0.0] * 64]})
        assert response.status_code == 200 and len(response.json()["predictions"]) == 1
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert '"path":"/invocations","status":200' in err  # JSON access log, no payload
    assert "0.0, 0.0" not in err


def test_serve_binds_loopback_by_default_and_refuses_bad_canary(digits_run):
    from loopml.project import Project
    from loopml.serve.settings import resolve

    assert resolve(None, None, Project(digits_run)).serve.host == "127.0.0.1"
    proc = loopml("serve", "--canary", "challenger", cwd=digits_run, check=False, timeout=60)
    assert proc.returncode == 1 and 'must look like "challenger:10"' in proc.stderr


def test_predict_streams_files_in_chunks(digits_run, tmp_path):
    source = tmp_path / "rows.parquet"
    frame = pd.read_parquet(digits_run / "data" / "raw" / "digits.parquet").drop(columns="label")
    frame.to_parquet(source, index=False)
    out = tmp_path / "scored.parquet"
    summary = loopml_json("predict", "--input", str(source), "--output", str(out), "--chunk-rows", "500", "--proba",
                          cwd=digits_run)  # fmt: skip
    assert summary["rows"] == len(frame) and summary["version"] == "1"
    scored = pd.read_parquet(out)
    expected = Predictor(digits_run / "outputs" / "model").predict(frame)
    assert scored["prediction"].tolist() == expected.tolist()
    assert list(scored.columns[:64]) == list(frame.columns) and "proba_9" in scored.columns
    csv_out = tmp_path / "scored.csv"
    loopml("predict", "-i", str(source), "-o", str(csv_out), "--model", str(digits_run / "outputs" / "model"),
           cwd=tmp_path)  # fmt: skip
    assert pd.read_csv(csv_out)["prediction"].tolist() == expected.tolist()
    for alias in (source, f"file://{source}", tmp_path / "link.parquet", tmp_path / "hard.parquet"):
        if str(alias).endswith("link.parquet"):
            alias.symlink_to(source)
        elif str(alias).endswith("hard.parquet"):
            import os

            os.link(source, alias)
        same = loopml("predict", "-i", str(source), "-o", str(alias), cwd=digits_run, check=False)
        assert same.returncode == 1 and "never overwrites input" in same.stderr, alias
    assert pd.read_parquet(source).equals(frame)  # not one row lost


def test_settings_round_trip_through_json(digits_run):
    from loopml.project import Project
    from loopml.serve.settings import ServeSettings, resolve

    settings = resolve("digits@challenger", "champion:25", Project(digits_run), {"workers": 3, "max_batch_size": 8})
    assert ServeSettings.model_validate_json(settings.model_dump_json()) == settings
    assert settings.canary.alias == "champion" and settings.canary_percent == 25 and settings.serve.workers == 3
