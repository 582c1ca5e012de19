"""The optimize stage on the trained digits project: through `loopml run` (the session's project),
alone with variants that cannot be built, and an ONNX variant served to an unmodified tritonclient."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from mlflow import MlflowClient

from loopml.config import OptimizeConfig
from loopml.optimize.variants import TrainingRows, build
from loopml.registry import use_store
from loopml.serve.settings import ServeSettings
from loopml.uri import ModelRef
from loopml_runtime import Predictor
from tests.conftest import loopml, loopml_json
from tests.serve.conftest import LiveServer


def test_run_judges_the_variants_and_registers_the_choice(digits_run):
    result = json.loads((digits_run / "outputs" / "optimize.json").read_text())
    trained = json.loads((digits_run / "outputs" / "train.json").read_text())
    assert result["run_id"] == trained["run_id"] and result["threads"] == 1
    by_name = {v["name"]: v for v in result["variants"]}
    assert list(by_name) == ["base", "onnx"]
    onnx = by_name["onnx"]
    assert onnx["status"] in ("passed", "chosen") and onnx["runtime"] == "onnxruntime"
    assert onnx["agreement"] >= 0.995 and onnx["max_delta"] < 1e-3  # fp32: the same network
    for figure in ("accuracy", "latency_p95_ms", "row_p95_ms", "batch_p95_ms", "throughput_rows_s", "size_mb"):
        assert figure in onnx["metrics"] and figure in by_name["base"]["metrics"]
    assert by_name[result["chosen"]]["status"] == "chosen"
    html = (digits_run / "reports" / "optimize.html").read_text()
    assert "data:image/png;base64," in html and "onnxruntime" in html and "<script" not in html

    use_store(f"sqlite:///{digits_run / '.loopml' / 'mlflow.db'}")
    client = MlflowClient()
    version = client.get_model_version("digits", "1")
    assert version.tags["loopml.variant"] == result["chosen"]
    if result["chosen"] == "onnx":
        assert version.tags["loopml.runtime"] == "onnxruntime" and version.tags["loopml.onnx_opset"] == "18"
        assert float(version.tags["loopml.metric.accuracy"]) == pytest.approx(onnx["metrics"]["accuracy"], abs=1e-6)
        assert result["model_uri"] != trained["model_uri"]
    run = client.get_run(trained["run_id"])
    assert "optimize.onnx.row_p95_ms" in run.data.metrics
    assert run.data.tags["loopml.optimize.chosen"] == result["chosen"]


def test_variants_that_cannot_be_built_fail_alone_and_the_original_stays(digits_copy):
    env = {"LOOPML_OPTIMIZE__VARIANTS": "[quantum, prune, onnx_int8_static]",
           "LOOPML_OPTIMIZE__PRUNE_RATIOS": "[1.5]", "LOOPML_OPTIMIZE__CALIBRATION_ROWS": "4"}  # fmt: skip
    result = loopml_json("optimize", cwd=digits_copy, env=env)
    reasons = {v["name"]: (v["status"], v["reason"]) for v in result["variants"]}
    assert reasons["quantum"][0] == "failed" and "unknown" in reasons["quantum"][1]
    assert reasons["prune_150"][0] == "failed" and "must lie in (0, 1)" in reasons["prune_150"][1]
    status, reason = reasons["onnx_int8_static"]
    assert status == "failed" and "calibration needs at least 16" in reason
    trained = json.loads((digits_copy / "outputs" / "train.json").read_text())
    assert result["chosen"] == "base" and result["model_uri"] == trained["model_uri"]
    table = loopml("optimize", cwd=digits_copy, env=env).stdout
    assert "quantum" in table and "failed" in table and "kept the original" in table
    registered = loopml_json("register", cwd=digits_copy)  # the same run: its version, reused
    assert registered["reused"] and registered["version"] == "1"


def test_an_onnx_variant_serves_tritonclient_and_invocations_like_the_original(digits_run, tmp_path):
    frame = pd.read_parquet(digits_run / "data" / "raw" / "digits.parquet")
    X, y = frame.drop(columns="label"), frame["label"].to_numpy()
    original = Predictor(digits_run / "outputs" / "model")
    built = build("onnx", original, tmp_path, OptimizeConfig(), TrainingRows(X, y))
    live = LiveServer(ServeSettings(primary=ModelRef.parse(str(built.package)), access_log=False))
    try:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{live.port}")
        name = ModelRef.parse(str(built.package)).name
        assert client.get_model_metadata(name)["platform"] == "onnxruntime_onnx"
        tensor = triton.InferInput("input", [len(X), 64], "FP64")
        tensor.set_data_from_numpy(X.to_numpy(np.float64), binary_data=True)
        served = client.infer(name, [tensor]).as_numpy("predict")
        expected = original.predict(X)
        assert np.mean(served == expected) >= 0.995
        answer = live.client.post(
            "/invocations", json={"dataframe_split": {"columns": list(X.columns), "data": X.head(300).values.tolist()}}
        )
        assert answer.status_code == 200
        assert np.mean(np.asarray(answer.json()["predictions"]) == expected[:300]) >= 0.995
    finally:
        live.stop()
