"""Your own data, end to end, with no code written: a raw churn CSV (an ID, text categories, a date,
missing values, a true/false column, a yes/no target) and a regression CSV (scikit-learn's diabetes) go from
`loopml init --from` through `loopml run` to a served model that takes the file's own columns over
both protocols; messy tables get warnings that name the column and the setting."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
import yaml

from loopml import examples
from loopml.serve.settings import ServeSettings
from loopml.uri import ModelRef
from loopml_runtime import Predictor
from tests.conftest import NO_WALL_CLOCK_GATE, loopml, loopml_json
from tests.serve.conftest import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    raw = examples.churn(2000, seed=3)
    examples.write(raw, str(root / "churn.csv"))
    created = loopml_json("init", "churn", "--from", "churn.csv", "--target", "churned", cwd=root)
    project = root / "churn"
    result = loopml_json("run", cwd=project)
    assert result["ok"], result
    return project, root / "churn.csv", created


def test_init_reads_the_task_and_the_roles(churn):
    project, source, created = churn
    assert created["task"] == "classification" and "text" in created["task_reason"]
    assert created["roles"] == {"customer_id": "id", "plan": "categorical", "region": "categorical",
                                "tenure_months": "numeric", "monthly_fee": "numeric", "support_tickets": "numeric",
                                "signup_date": "datetime", "payment": "categorical",
                                "paperless": "boolean"}  # fmt: skip
    config = yaml.safe_load((project / "loopml.yaml").read_text())
    assert config["data"]["columns"]["customer_id"] == "id" and config["data"]["path"] == str(source)
    assert not (project / "prepare.py").exists()


def test_the_report_shows_baseline_curves_importance_and_data(churn):
    project, _, _ = churn
    evaluated = json.loads((project / "outputs" / "evaluate.json").read_text())
    assert evaluated["registrable"] and evaluated["baseline"]["name"] == "most_frequent"
    assert evaluated["metrics"]["accuracy"] > evaluated["baseline"]["metrics"]["accuracy"] + 0.1
    html = (project / "reports" / "evaluation.html").read_text()
    for words in ("baseline (most_frequent)", "Δ vs baseline", "Precision-recall", "Permutation importance",
                  "Class balance", "HistGradientBoostingClassifier", "datetime columns", "best round"):  # fmt: skip
        assert words in html, words
    assert "customer_id" in html.split("id columns")[1][:200]  # listed as an excluded ID


def test_served_model_takes_the_raw_columns_over_both_protocols(churn):
    project, source, _ = churn
    rows = pd.read_csv(source).drop(columns=["churned"]).head(40)
    rows.loc[3, "plan"] = "platinum"  # a category training never saw: answered, and counted
    rows.loc[5, "monthly_fee"] = None  # a missing value: the model imputes it
    offline = Predictor(project / "outputs" / "model").predict(rows)
    settings = ServeSettings(primary=ModelRef.champion("churn"), tracking_uri=f"sqlite:///{project}/.loopml/mlflow.db",
                             access_log=False)  # fmt: skip
    live = LiveServer(settings)
    try:
        records = json.loads(rows.to_json(orient="records"))
        answer = live.client.post("/invocations", json={"dataframe_records": records})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == offline.tolist() and set(offline) <= {"yes", "no"}
        csv = io.StringIO()
        rows.to_csv(csv, index=False)
        as_csv = live.client.post("/invocations", content=csv.getvalue(), headers={"content-type": "text/csv"})
        assert as_csv.json()["predictions"] == offline.tolist()

        client = triton.InferenceServerClient(url=f"127.0.0.1:{live.port}")
        meta = client.get_model_metadata("churn")
        kinds = {i["name"]: i["datatype"] for i in meta["inputs"]}
        assert kinds["plan"] == "BYTES" and kinds["signup_date"] == "BYTES" and kinds["monthly_fee"] == "FP64"
        assert kinds["paperless"] == "BOOL"
        assert "customer_id" not in kinds  # an ID is not an input
        inputs = []
        for column, datatype in kinds.items():
            values = rows[column].to_numpy()
            tensor = triton.InferInput(column, [len(rows)], datatype)
            if datatype == "BYTES":
                tensor.set_data_from_numpy(np.array([str(v) if v is not None else "" for v in values], dtype=object))
            elif datatype == "BOOL":
                tensor.set_data_from_numpy(values.astype(bool))
            else:
                tensor.set_data_from_numpy(values.astype(np.int64 if datatype == "INT64" else np.float64))
            inputs.append(tensor)
        result = client.infer("churn", inputs, outputs=[triton.InferRequestedOutput("predict")])
        got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predict").tolist()]
        assert got == offline.tolist()
        metrics = live.client.get("/metrics").text
        assert 'loopml_unseen_values_total{column="plan",model="churn",version="1"}' in metrics
        wrong = live.client.post("/invocations", json={"dataframe_records": [{**records[0], "tenure_months": "ten"}]})
        assert wrong.status_code == 400 and "tenure_months" in wrong.json()["error"]
    finally:
        live.stop()


def test_changing_the_data_path_retrains_on_the_new_data(churn, tmp_path):
    project, source, _ = churn
    other = tmp_path / "churn-2026.csv"
    pd.read_csv(source).head(1500).to_csv(other, index=False)  # new rows within the pinned schema
    config = yaml.safe_load((project / "loopml.yaml").read_text())
    config["data"]["path"] = str(other)
    (project / "loopml.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = loopml_json("run", cwd=project)
    statuses = {s["name"]: s["status"] for s in result["stages"]}
    assert statuses["validate"] == "ran" and statuses["train"] == "ran", statuses
    assert json.loads((project / "outputs" / "validate.json").read_text())["rows"] == 1500


def test_a_regression_table_runs_end_to_end(tmp_path, monkeypatch):
    """diabetes from raw CSV to a served model, then the loop on it: live MAE from feedback, a retrain
    on the labelled traffic, a canary judged on MAE."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    frame.to_csv(tmp_path / "diabetes.csv", index=False)
    created = loopml_json("init", "dia", "--from", "diabetes.csv", "--target", "target", "--copy", cwd=tmp_path)
    assert created["task"] == "regression" and created["data"] == "data/raw/diabetes.csv"
    project = tmp_path / "dia"
    assert loopml_json("run", cwd=project)["ok"]
    evaluated = json.loads((project / "outputs" / "evaluate.json").read_text())
    assert evaluated["metrics"]["r2"] > 0.3 and evaluated["baseline"]["name"] == "mean"
    assert "Residuals and predicted vs actual" in (project / "reports" / "evaluation.html").read_text()
    scored = tmp_path / "scored.csv"
    frame.drop(columns="target").head(50).to_csv(tmp_path / "new.csv", index=False)
    loopml("predict", "-i", str(tmp_path / "new.csv"), "-o", str(scored), cwd=project)
    assert len(pd.read_csv(scored)) == 50 and pd.read_csv(scored)["prediction"].between(0, 400).all()
    regression_loop(project, frame, "target", monkeypatch)


def regression_loop(root, frame: pd.DataFrame, target: str, monkeypatch) -> None:
    """The world moved (targets 30% higher): traffic with feedback written as a server would, the loop
    retrains (real `dvc repro`), and its canary (traffic written during the loop's waits) is judged on MAE."""
    import time

    from loopml.config import MonitorConfig
    from loopml.data import inference_log
    from loopml.monitor.loop import Loop
    from loopml.project import Project
    from loopml.registry import Registry
    from tests.monitor.test_loop_guards import FakeServer

    loop_settings = {"MIN_LABELLED": "100", "MIN_ROWS": "100", "COOLDOWN_S": "0", "CANARY_MIN_LABELLED": "30",
                     "MAX_METRIC_DROP": "0.05"}  # fmt: skip
    for name, value in loop_settings.items():
        monkeypatch.setenv(f"LOOPML_LOOP__{name}", value)
    for name, value in NO_WALL_CLOCK_GATE.items():  # the retrain runs in this process's environment
        monkeypatch.setenv(name, value)
    project = Project(root)
    policy = inference_log.LogPolicy.of(MonitorConfig(), project.inference_log)
    features, moved = frame.drop(columns=target), frame[target] * 1.3
    registry = Registry.of(project)

    def serve(version: str, rows: range) -> None:
        predictor = registry.load(version)
        inputs = features.iloc[list(rows)].reset_index(drop=True)
        ids = [f"v{version}-{time.time_ns()}-{i}" for i in rows]
        log = inference_log.log_frame(ids, [time.time()] * len(ids), [1] * len(ids), version, inputs,
                                      predictor.predict(inputs))  # fmt: skip
        inference_log.write(project.inference_log, "inferences", log, policy)
        labels = [(i, 0, float(moved.iloc[r])) for i, r in zip(ids, rows, strict=True)]
        inference_log.write(project.inference_log, "feedback", inference_log.feedback_frame(labels), policy)

    serve("1", range(300))
    canary = []

    def wait(seconds: float) -> None:  # the canary's traffic arrives while the loop waits
        if not canary:
            serve("1", range(300, 360))
            serve("2", range(360, 420))
            canary.append(True)

    decision = Loop(project, server=FakeServer(), sleep=wait, echo=lambda line: None).cycle()
    assert decision.kind in ("promoted", "rolled_back"), decision.reason
    assert "live mae" in decision.evidence["trigger"]
    live = decision.evidence["canary"]["live"]
    assert live["1"]["labelled"] >= 30 and live["2"]["labelled"] >= 30 and live["2"]["mae"] is not None


def test_messy_data_gets_warnings_not_tracebacks(tmp_path):
    examples.write(examples.messy(1000), str(tmp_path / "messy.csv"), legacy=True)  # Latin-1, ";" and ","
    created = loopml("init", "m", "--from", "messy.csv", "--target", "bought", cwd=tmp_path)
    assert "Traceback" not in created.stderr
    config = yaml.safe_load((tmp_path / "m" / "loopml.yaml").read_text())
    assert config["data"]["encoding"] == "cp1252" and config["data"]["delimiter"] == ";"
    assert config["data"]["decimal"] == ","
    assert config["data"]["columns"]["empty column"] == "ignore"
    assert config["data"]["columns"]["row id"] == "id"
    result = loopml_json("validate", cwd=tmp_path / "m")
    kinds = {(w["kind"], w["column"]) for w in result["warnings"]}
    for expected in (("id_like", "row id"), ("empty", "empty column"), ("constant", "constant column"),
                     ("mixed_types", "age"), ("duplicates", None), ("leakage", "leaky status")):  # fmt: skip
        assert expected in kinds, (expected, kinds)
    assert all(w["setting"].startswith("data.checks.") or w["setting"] == "data.encoding" for w in result["warnings"])
    strict = loopml("validate", cwd=tmp_path / "m", env={"LOOPML_DATA__CHECKS__LEAKAGE": "error"}, check=False)
    assert strict.returncode == 1 and "leaky status" in strict.stderr and "Traceback" not in strict.stderr


def test_helpful_dead_ends(tmp_path):
    examples.write(examples.churn(300), str(tmp_path / "c.csv"))
    loopml("init", "c", "--from", "c.csv", "--target", "churned", cwd=tmp_path)
    for args in (["serve"], ["predict", "-i", str(tmp_path / "c.csv"), "-o", str(tmp_path / "o.csv")]):
        proc = loopml(*args, cwd=tmp_path / "c", check=False, timeout=60)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert (
            "no champion yet" in proc.stderr and "loopml run" in proc.stderr and "--model outputs/model" in proc.stderr
        )
    (tmp_path / "broken.csv").write_bytes(b"a,b\n1,2,3\n4,5\n")
    bad = loopml("init", "b", "--from", "broken.csv", "--target", "a", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "more fields than the header" in bad.stderr and "Traceback" not in bad.stderr
