"""The text template end to end: `loopml init --template text` + `loopml run` fine-tunes the packaged
MiniLM with LoRA offline, passes its gates and registers; real uvicorn then serves strings to an
unmodified tritonclient (BYTES, JSON and binary) and to every MLflow format, refuses bad text with a
4xx, counts cut texts, and raises its drift gauges when the traffic turns to another topic."""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("transformers")
pytest.importorskip("peft")

import tritonclient.http as triton  # noqa: E402

from loopml.config import MonitorConfig  # noqa: E402
from loopml.examples import tickets  # noqa: E402
from loopml.project import Project  # noqa: E402
from loopml.registry import Registry  # noqa: E402
from loopml_runtime import Predictor  # noqa: E402
from tests.conftest import loopml, new_project  # noqa: E402
from tests.serve.conftest import LiveServer, settings_for  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    project = new_project(tmp_path_factory.mktemp("text"), "text")
    path = project / "loopml.yaml"
    config = yaml.safe_load(path.read_text())
    # one epoch (0.91 validation accuracy here; the template's four reach 0.99 on the test rows, see
    # bench/text.py) under gates lowered to match: what is tested is the loop, not the last point
    config["train"]["epochs"] = 1
    config["gates"].update(accuracy=">= 0.8", f1_macro=">= 0.8", latency_p95_ms="<= 10000")
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    loopml("run", cwd=project, timeout=900)
    return project


@pytest.fixture(scope="module")
def server(text_run):
    monitor = MonitorConfig(every_s=0.5, min_rows=100, window=300)
    log_dir = str(Project(text_run).inference_log)  # where `loopml monitor` reads the traffic
    live = LiveServer(settings_for(text_run, max_delay_ms=2, monitor=monitor, log_dir=log_dir))
    yield live
    live.stop()


def test_the_template_fine_tunes_minilm_with_lora_and_registers(text_run):
    train = json.loads((text_run / "outputs/train.json").read_text())
    assert train["estimator"] == "all-MiniLM-L6-v2 + LoRA r=8" and "0.33% of 22.8M weights trained" in train["figure"]
    evaluated = json.loads((text_run / "outputs/evaluate.json").read_text())
    assert evaluated["metrics"]["accuracy"] >= 0.85 and evaluated["registrable"]
    assert json.loads((text_run / "outputs/register.json").read_text())["version"] == "1"
    registry = Registry.of(Project(text_run))
    run = registry.client.get_run(train["run_id"])
    assert 0 < run.data.metrics["trainable_share"] < 0.01
    assert run.data.metrics["peak_rss_mb"] > 100 and run.data.metrics["truncated_rows"] == 0
    package = text_run / "outputs/model"
    assert (package / "encoder/tokenizer.json").is_file() and (package / "encoder/model.safetensors").is_file()
    from safetensors import safe_open

    with safe_open(package / "encoder/model.safetensors", "pt") as weights:
        assert not [k for k in weights.keys() if "lora" in k]  # noqa: SIM118 - safe_open is no dict; merged before packaging
    optimized = json.loads((text_run / "outputs/optimize.json").read_text())
    variants = {v["name"]: v for v in optimized["variants"]}
    assert set(variants) == {"base", "onnx", "onnx_int8"}  # the text template's auto
    assert variants["onnx"]["status"] in ("chosen", "passed") and variants["onnx"]["agreement"] >= 0.995
    assert variants["onnx_int8"]["status"] != "failed", variants["onnx_int8"]["reason"]
    assert variants["onnx_int8"]["metrics"]["size_mb"] < variants["onnx"]["metrics"]["size_mb"] / 2
    profile = json.loads((package / "reference_profile.json").read_text())
    watched = {c["name"] for c in profile["columns"]}
    assert {"text.length", "text.oov_rate", "text.embedding_1", "__prediction__"} <= watched


def test_tritonclient_sends_strings_and_every_mlflow_format_agrees(server, text_run):
    messages = ["my parcel never arrived, please help", "I was charged twice for the invoice",
                "the app crashes every time I open it", "I cannot reset my password"]  # fmt: skip
    offline = Predictor(text_run / "outputs/model").predict(pd.DataFrame({"text": messages})).tolist()
    assert offline == ["delivery", "billing", "technical", "account"]
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    meta = client.get_model_metadata(Project(text_run).config.name)
    chosen = json.loads((text_run / "outputs/optimize.json").read_text())["chosen"]
    assert meta["platform"] == ("loopml_text" if chosen == "base" else "onnxruntime_onnx")  # the registered one
    assert meta["inputs"][0]["datatype"] == "BYTES"
    for binary in (True, False):
        tensor = triton.InferInput("text", [len(messages)], "BYTES")
        tensor.set_data_from_numpy(np.asarray(messages, dtype=np.object_), binary_data=binary)
        wanted = [triton.InferRequestedOutput("predict", binary_data=binary)]
        result = client.infer(meta["name"], [tensor], outputs=wanted)
        assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predict")] == offline
    bodies = [({"inputs": {"text": messages}}, "application/json"),
              ({"instances": [{"text": m} for m in messages]}, "application/json"),
              ({"dataframe_split": {"columns": ["text"], "data": [[m] for m in messages]}}, "application/json"),
              (pd.DataFrame({"text": messages}).to_csv(index=False), "text/csv")]  # fmt: skip
    for body, content_type in bodies:
        data = body if isinstance(body, str) else json.dumps(body)
        answer = server.client.post("/invocations", content=data, headers={"content-type": content_type})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == offline


def test_bad_text_gets_a_4xx_and_long_text_is_cut_and_counted(server, text_run):
    name = Project(text_run).config.name
    for body, expected in (({"inputs": {"text": ["fine", ""]}}, "row 1 holds no text"),
                           ({"inputs": {"text": ["fine", 5]}}, "must hold text; row 1 holds 5")):  # fmt: skip
        answer = server.client.post("/invocations", json=body)
        assert answer.status_code == 400 and expected in answer.json()["error"]
    bad = b"\xff\xfe not utf-8"
    header = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": 4 + len(bad)}}]}).encode()  # fmt: skip
    answer = server.client.post(f"/v2/models/{name}/infer", content=header + struct.pack("<I", len(bad)) + bad,
                                headers={"Inference-Header-Content-Length": str(len(header)),
                                         "content-type": "application/octet-stream"})  # fmt: skip
    assert answer.status_code == 400 and "not valid UTF-8" in answer.json()["error"]
    long_text = "my parcel never arrived and " * 40  # about 200 tokens; the template cuts at 64
    answer = server.client.post("/invocations", json={"inputs": {"text": [long_text, "the app crashes"]}})
    assert answer.status_code == 200 and answer.json()["predictions"][0] == "delivery"
    metrics = server.client.get("/metrics").text
    assert f'loopml_text_truncated_rows_total{{model="{name}",version="1"}} 1.0' in metrics


def _gauge(server, metric: str, name: str) -> float | None:
    for line in server.client.get("/metrics").text.splitlines():
        if line.startswith(f'{metric}{{model="{name}",version="1"}}'):
            return float(line.split()[-1])
    return None


def _send(server, frame: pd.DataFrame) -> None:
    for start in range(0, len(frame), 25):
        part = frame["text"].iloc[start : start + 25].tolist()
        assert server.client.post("/invocations", json={"inputs": {"text": part}}).status_code == 200


def _settled(server, name: str, seconds: float = 120) -> float:
    """The drift verdict on a window taken after the traffic was sent (the monitor runs the encoder
    on the window off the hot path: on a busy machine that takes seconds)."""
    sent = time.time()
    deadline = time.monotonic() + seconds
    while (_gauge(server, "loopml_drift_window_time_seconds", name) or 0) <= sent:
        assert time.monotonic() < deadline, "no drift verdict on the latest traffic"
        time.sleep(0.5)
    return _gauge(server, "loopml_dataset_drift", name)


def test_shifted_text_raises_the_drift_gauges_and_like_text_does_not(server, text_run):
    name = Project(text_run).config.name
    _send(server, tickets(400, seed=11))  # new messages, same kind (the window keeps the last 300 rows)
    assert _settled(server, name) == 0.0
    _send(server, tickets(300, seed=12, style="reviews"))  # product reviews: another topic and style
    assert _settled(server, name) == 1.0
    metrics = server.client.get("/metrics").text
    psi = {line.split('feature="')[1].split('"')[0]: float(line.split()[-1]) for line in metrics.splitlines()
           if line.startswith("loopml_feature_drift") and 'stat="psi"' in line}  # fmt: skip
    assert psi["text.oov_rate"] > 0.25 and psi["text.embedding_1"] > 0.25
    # `loopml monitor` (what the loop checks) reads the logged texts through the version's own encoder
    checked = json.loads(loopml("monitor", "--json", cwd=text_run).stdout)["versions"][0]
    assert checked["dataset_drift"] and "text.oov_rate" in checked["drifted_columns"]


def test_loopml_drift_compares_two_text_files_through_the_model(text_run, tmp_path):
    reference, same, shifted = tmp_path / "reference.csv", tmp_path / "same.csv", tmp_path / "shifted.csv"
    tickets(400, seed=21).to_csv(reference, index=False)
    tickets(300, seed=22).to_csv(same, index=False)
    tickets(300, seed=23, style="reviews").to_csv(shifted, index=False)
    model = str(text_run / "outputs/model")
    calm = json.loads(loopml("drift", str(reference), str(same), "--model", model, "--exclude", "label", "--json",
                             cwd=tmp_path).stdout)  # fmt: skip
    moved = json.loads(loopml("drift", str(reference), str(shifted), "--model", model, "--exclude", "label",
                              "--json", cwd=tmp_path).stdout)  # fmt: skip
    assert not calm["dataset_drift"] and moved["dataset_drift"]
    assert {c["column"] for c in moved["columns"] if c["drifted"]} >= {"text.oov_rate", "text.embedding_1"}
