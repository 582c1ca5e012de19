"""`loopml init` → `loopml run` → `loopml run`: the whole spine on real DVC, MLflow and PyTorch."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from loopml.registry import use_store
from loopml_runtime import Predictor
from tests.conftest import FAST, loopml, loopml_json

pytestmark = pytest.mark.slow


def client_for(project) -> MlflowClient:
    use_store(f"sqlite:///{project / '.loopml' / 'mlflow.db'}")
    return MlflowClient()


def test_init_refuses_non_empty_dir(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    proc = loopml("init", "busy", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "is not empty" in proc.stderr and "--force" in proc.stderr
    assert loopml("init", "busy", "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "busy" / ".git").is_dir() and (tmp_path / "busy" / ".dvc").is_dir()


def test_first_run_registers_champion_second_is_cached(digits_run):
    registered = json.loads((digits_run / "outputs" / "register.json").read_text())
    assert registered["version"] == "1" and set(registered["aliases"]) == {"champion", "challenger"}
    again = loopml_json("run", cwd=digits_run, env=FAST)
    assert again["ok"] and [s["status"] for s in again["stages"]] == ["cached"] * 6
    table = loopml("run", cwd=digits_run, env=FAST).stdout
    assert "register" in table and "cached" in table and "digits v1" in table


def test_mlflow_run_carries_params_metrics_lineage_and_report(digits_run):
    trained = json.loads((digits_run / "outputs" / "train.json").read_text())
    client = client_for(digits_run)
    run = client.get_run(trained["run_id"])
    assert run.data.params["train.epochs"] == "3" and run.data.params["model.type"] == "torch"
    assert "env.torch" in run.data.params
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 3
    for metric in ("accuracy", "f1_macro", "roc_auc", "latency_p95_ms", "size_mb"):
        assert metric in run.data.metrics
    assert any(k.startswith("system/") for k in run.data.metrics)  # MLflow system metrics
    assert run.data.tags["loopml.data_digest"] == trained["data_digest"]
    assert run.data.tags["loopml.git_commit"] and run.data.tags["loopml.registered"] == "True"
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.name == "digits.parquet"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    assert {"reports/evaluation.html", "reports/metrics.json"} <= artifacts
    version = client.get_model_version("digits", "1")
    assert version.tags["loopml.data_digest"] == trained["data_digest"]
    assert json.loads(version.tags["loopml.gates"])[0]["passed"] is True


def test_every_version_carries_its_reference_profile(digits_run):
    from loopml.data.profile import PREDICTION_COLUMN, Profile

    client_for(digits_run)
    local = mlflow.artifacts.download_artifacts("models:/digits@champion")
    stored = next(Path(local).rglob("reference_profile.json"))  # inside the logged package folder
    profile = Profile.from_dict(json.loads(stored.read_text()))
    assert len(profile.columns) == 65 and profile.columns[PREDICTION_COLUMN].kind == "categorical"
    assert profile.columns["pixel_10"].present > 1000


def test_registered_model_loads_with_plain_mlflow(digits_run):
    frame = pd.read_parquet(digits_run / "data" / "raw" / "digits.parquet").drop(columns="label").head(50)
    client_for(digits_run)
    served = mlflow.pyfunc.load_model("models:/digits@champion").predict(frame)
    # the champion is the variant optimize chose: offline, its own package answers exactly as MLflow's
    # pyfunc does, and as the model as trained does on (nearly) every row
    local = Path(mlflow.artifacts.download_artifacts("models:/digits@champion"))
    registered = Predictor(next(local.rglob("loopml-model.json")).parent)
    assert list(served) == list(registered.predict(frame))
    trained = Predictor(digits_run / "outputs" / "model").predict(frame)
    assert np.mean(np.asarray(served) == trained) >= 0.98


def test_report_is_self_contained_html(digits_run):
    html = (digits_run / "reports" / "evaluation.html").read_text()
    assert "Confusion matrix" in html and "ROC curves" in html and "data:image/png;base64," in html
    assert "latency_p95_ms" in html and "no champion yet" in html and "<script" not in html


def test_failing_gates_block_registration(digits_copy):
    strict = {**FAST, "LOOPML_GATES__ACCURACY": ">= 0.9999"}
    evaluated = loopml_json("evaluate", cwd=digits_copy, env=strict)
    assert not evaluated["registrable"]
    proc = loopml("register", cwd=digits_copy, env=strict, check=False)
    assert proc.returncode == 1 and "failed 1 gate(s)" in proc.stderr and "accuracy >= 0.9999" in proc.stderr
    assert [v["version"] for v in loopml_json("models", "list", cwd=digits_copy)] == ["1"]
    piped = loopml("run", "--force", "--json", cwd=digits_copy, env=strict, check=False)
    assert piped.returncode == 1 and "stopped at stage 'register'" in piped.stderr
    statuses = {s["name"]: s["status"] for s in json.loads(piped.stdout)["stages"]}
    assert statuses == {"prepare": "ran", "validate": "ran", "train": "ran", "evaluate": "ran", "optimize": "ran",
                        "register": "failed"}  # fmt: skip
    assert "nothing to optimize" in json.loads((digits_copy / "outputs" / "optimize.json").read_text())["figure"]
    assert [v["version"] for v in loopml_json("models", "list", cwd=digits_copy)] == ["1"]


def test_new_champion_promote_and_rollback_record_who_and_why(digits_copy):
    forced = loopml_json("run", "--force", cwd=digits_copy, env=FAST)
    assert forced["ok"] and {s["status"] for s in forced["stages"]} == {"ran"}
    versions = {v["version"]: v for v in loopml_json("models", "list", cwd=digits_copy)}
    assert "champion" in versions["2"]["aliases"]  # same seed, same model: not worse than v1
    assert versions["2"]["tags"]["loopml.previous_champion"] == "1"

    back = loopml_json("models", "rollback", "--reason", "canary errors", cwd=digits_copy)
    assert back["version"] == "1" and "champion" in back["aliases"]
    stamp = json.loads(back["tags"]["loopml.champion_by"])
    assert stamp["why"].startswith("rollback from v2") and "canary errors" in stamp["why"] and stamp["who"]

    again = loopml_json("models", "promote", "2", "-m", "fixed", cwd=digits_copy)
    assert "champion" in again["aliases"] and json.loads(again["tags"]["loopml.champion_by"])["why"] == "fixed"
    missing = loopml("models", "promote", "9", cwd=digits_copy, check=False)
    assert missing.returncode == 1 and "no version '9'" in missing.stderr and "versions: 2, 1" in missing.stderr
    human = loopml("models", "list", cwd=digits_copy).stdout
    assert "champion" in human and "fixed" in human


def test_tabular_template_trains_a_sklearn_estimator(tabular):
    result = loopml_json("run", cwd=tabular)
    assert result["ok"], result
    evaluated = json.loads((tabular / "outputs" / "evaluate.json").read_text())
    assert evaluated["metrics"]["accuracy"] >= 0.93 and evaluated["metrics"]["roc_auc"] >= 0.97
    client_for(tabular)
    frame = pd.read_parquet(tabular / "data" / "raw" / "breast_cancer.parquet").head(20)
    predictions = mlflow.pyfunc.load_model("models:/tabular@champion").predict(frame.drop(columns="diagnosis"))
    assert set(predictions) <= {"malignant", "benign"}
