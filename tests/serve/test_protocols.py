"""Both protocols against a real server: tritonclient (binary and JSON) and every MLflow format
return exactly the offline predictions."""

import io

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton

from loopml_runtime import Predictor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rows(digits_run):
    frame = pd.read_parquet(digits_run / "data" / "raw" / "digits.parquet").drop(columns="label").head(20)
    offline = Predictor(digits_run / "outputs" / "model")
    return frame, offline.predict(frame), offline.predict_proba(frame)


def test_tritonclient_health_metadata_and_infer(server, rows):
    frame, expected, proba = rows
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("digits")
    assert meta["inputs"][0]["shape"] == [-1, 64] and meta["inputs"][0]["datatype"] == "FP64"
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {"predict": "INT64", "probabilities": "FP32"}
    for binary in (True, False):
        tensor = triton.InferInput("input", [len(frame), 64], "FP64")
        tensor.set_data_from_numpy(frame.to_numpy(np.float64), binary_data=binary)
        outputs = [triton.InferRequestedOutput("predict", binary_data=binary),
                   triton.InferRequestedOutput("probabilities", binary_data=binary)]  # fmt: skip
        result = client.infer("digits", [tensor], outputs=outputs)
        assert result.as_numpy("predict").tolist() == expected.tolist()
        np.testing.assert_allclose(result.as_numpy("probabilities"), proba, rtol=1e-5, atol=1e-6)
    versioned = client.infer("digits", [tensor], model_version="1")
    assert versioned.get_response()["model_version"] == "1"


def test_per_feature_tensors(server, rows):
    frame, expected, _ = rows
    inputs = [{"name": c, "shape": [len(frame)], "datatype": "FP64", "data": frame[c].tolist()} for c in frame.columns]
    response = server.client.post("/v2/models/digits/infer", json={"inputs": inputs, "outputs": [{"name": "predict"}]})
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == expected.tolist()


@pytest.mark.parametrize(
    "style", ["dataframe_split", "dataframe_records", "instances", "inputs", "inputs_columns", "csv"]
)
def test_every_mlflow_format(server, rows, style):
    frame, expected, _ = rows
    if style == "csv":
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        response = server.client.post("/invocations", content=buffer.getvalue(), headers={"content-type": "text/csv"})
    else:
        body = {
            "dataframe_split": {"dataframe_split": frame.to_dict(orient="split", index=False)},
            "dataframe_records": {"dataframe_records": frame.to_dict(orient="records")},
            "instances": {"instances": frame.to_numpy().tolist()},
            "inputs": {"inputs": frame.to_numpy().tolist()},
            "inputs_columns": {"inputs": frame.to_dict(orient="list")},
        }[style]
        response = server.client.post("/invocations", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected.tolist()}
    assert response.headers["x-model-version"] == "1"


def test_mlflow_health_and_version(server):
    assert server.client.get("/ping").status_code == 200
    assert server.client.get("/health").status_code == 200
    assert server.client.get("/version").text.count(".") >= 1


def test_tritonclient_gets_1000_row_answers(server, digits_run):
    frame = pd.read_parquet(digits_run / "data" / "raw" / "digits.parquet").drop(columns="label").head(1000)
    expected = Predictor(digits_run / "outputs" / "model").predict(frame)
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    tensor = triton.InferInput("input", [1000, 64], "FP64")
    tensor.set_data_from_numpy(frame.to_numpy(np.float64), binary_data=True)
    result = client.infer("digits", [tensor], outputs=[triton.InferRequestedOutput("predict", binary_data=True)])
    assert result.as_numpy("predict").tolist() == expected.tolist()  # max_batch_size 256: split and reassembled
