"""Bad model code gets a short message, exit code 1, and nothing reaches the registry."""

import pytest
import yaml

from tests.conftest import FAST, loopml, loopml_json

pytestmark = pytest.mark.slow


def train_fails(project, env=None) -> str:
    proc = loopml("train", cwd=project, env={**FAST, **(env or {})}, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return " ".join(proc.stderr.split())


def set_model(project, **model) -> None:
    """Edit model: in loopml.yaml (the keys that choose code are read from the file only)."""
    config = yaml.safe_load((project / "loopml.yaml").read_text())
    config["model"].update(model)
    (project / "loopml.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def test_factory_errors_are_explained(digits):
    set_model(digits, factory="model.py:make")
    assert "has no function 'make'" in train_fails(digits)
    set_model(digits, factory="nets.py:build")
    assert "no file" in train_fails(digits)
    set_model(digits, factory="model.py:build")
    message = train_fails(digits, {"LOOPML_MODEL__PARAMS__CHANNELS": "-4"})
    assert "model.factory model.py:build raised" in message
    (digits / "model.py").write_text(
        (digits / "model.py").read_text().replace("2 * channels * 16, n_outputs", "2 * channels * 16, 3")
    )
    assert "returns shape (2, 3)" in train_fails(digits)
    assert loopml_json("models", "list", cwd=digits) == []


def test_unknown_estimator_is_explained(tabular):
    set_model(tabular, estimator="sklearn.linear_model.LogisticRegresion")
    assert "has no 'LogisticRegresion'" in train_fails(tabular)
    set_model(tabular, estimator="xgboostt.XGBClassifier")
    assert "cannot import" in train_fails(tabular)
