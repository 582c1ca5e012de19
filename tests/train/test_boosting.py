"""XGBoost and LightGBM end to end on the tabular template (string labels): trained with early
stopping on the validation split, gated, registered, and served over /invocations and the V2
protocol with the same labels as offline predictions."""

from __future__ import annotations

import subprocess

import httpx
import pandas as pd
import pytest
import yaml

from tests.conftest import BIN, free_port, loopml, new_project, tool_env, wait_ready

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("estimator", "params"),
    [("xgboost.XGBClassifier", {"n_estimators": 300, "max_depth": 3, "learning_rate": 0.1}),
     ("lightgbm.LGBMClassifier", {"n_estimators": 300, "learning_rate": 0.05, "verbose": -1})],
)  # fmt: skip
def test_booster_trains_with_early_stopping_and_serves(tmp_path, estimator, params):
    project = new_project(tmp_path, "tabular")
    config = yaml.safe_load((project / "loopml.yaml").read_text())
    config["model"] = {"type": "sklearn", "estimator": estimator, "params": params}
    (project / "loopml.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    loopml("run", cwd=project)
    trained = yaml.safe_load((project / "outputs" / "train.json").read_text())
    assert trained["stopped_early"] is True and trained["best_epoch"] < 300, trained["figure"]
    assert "of 300 rounds" in trained["figure"]
    assert yaml.safe_load((project / "outputs" / "register.json").read_text())["champion"] is True

    rows = pd.read_parquet(project / "data" / "raw" / "breast_cancer.parquet").drop(columns="diagnosis").head(40)
    from loopml_runtime import Predictor

    offline = list(Predictor(project / "outputs" / "model").predict(rows))
    assert set(offline) <= {"benign", "malignant"} and len(set(offline)) == 2  # decoded, not class indices
    port = free_port()
    server = subprocess.Popen([str(BIN / "loopml"), "serve", "--port", str(port), "--no-access-log"], cwd=project,
                              env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, server)
        split = {"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}}
        answer = httpx.post(f"{url}/invocations", json=split, timeout=30).json()
        assert list(answer["predictions"]) == offline
        name = config["name"]
        v2 = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP64",
                          "data": rows.to_numpy().ravel().tolist()}]}  # fmt: skip
        outputs = httpx.post(f"{url}/v2/models/{name}/infer", json=v2, timeout=30).json()["outputs"]
        assert next(o for o in outputs if o["name"] == "predict")["data"] == offline
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_early_stopping_off_fits_every_round(tmp_path):
    project = new_project(tmp_path, "tabular")
    config = yaml.safe_load((project / "loopml.yaml").read_text())
    config["model"] = {"type": "sklearn", "estimator": "lightgbm.LGBMClassifier",
                       "params": {"n_estimators": 50, "verbose": -1}}  # fmt: skip
    config["train"]["early_stopping_rounds"] = 0
    (project / "loopml.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    loopml("validate", cwd=project)
    loopml("train", cwd=project)
    trained = yaml.safe_load((project / "outputs" / "train.json").read_text())
    assert "rounds" not in trained["figure"] and trained["stopped_early"] is None
