"""Bad model code gets a short message, exit code 1, and nothing reaches the registry."""

import pytest

from tests.conftest import FAST, loopml, loopml_json

pytestmark = pytest.mark.slow


def train_fails(project, env=None) -> str:
    proc = loopml("train", cwd=project, env={**FAST, **(env or {})}, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return " ".join(proc.stderr.split())


def test_factory_errors_are_explained(digits):
    assert "has no function 'make'" in train_fails(digits, {"LOOPML_MODEL__FACTORY": "model.py:make"})
    assert "no file" in train_fails(digits, {"LOOPML_MODEL__FACTORY": "nets.py:build"})
    message = train_fails(digits, {"LOOPML_MODEL__PARAMS__CHANNELS": "-4"})
    assert "model.factory model.py:build raised" in message
    (digits / "model.py").write_text(
        (digits / "model.py").read_text().replace("2 * channels * 16, n_outputs", "2 * channels * 16, 3")
    )
    assert "returns shape (2, 3)" in train_fails(digits)
    assert loopml_json("models", "list", cwd=digits) == []


def test_unknown_estimator_is_explained(tabular):
    message = train_fails(tabular, {"LOOPML_MODEL__ESTIMATOR": "sklearn.linear_model.LogisticRegresion"})
    assert "has no 'LogisticRegresion'" in message
    assert "cannot import" in train_fails(tabular, {"LOOPML_MODEL__ESTIMATOR": "xgboostt.XGBClassifier"})
