"""The trust model (README, "Security"): which code loopml runs and from where.

`model.estimator` names a class with fit/predict, never any callable; `model.factory` is a file
inside the project unless `model.allow_external_code`; the keys that choose code come from
loopml.yaml alone (not the environment, not `.env`); checkpoints load as data only; YAML is read
with limits."""

from __future__ import annotations

import pickle

import pytest
import yaml

from loopml.config import load_config
from loopml.errors import ConfigError
from tests.conftest import loopml

VALID = {"name": "demo", "task": "classification", "data": {"path": "data.parquet", "target": "label"},
         "model": {"type": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"}}  # fmt: skip


def write(tmp_path, config) -> object:
    path = tmp_path / "loopml.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


def train_fails(project, env=None) -> str:
    proc = loopml("train", cwd=project, env=env, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return " ".join(proc.stderr.split())


@pytest.mark.slow
def test_estimator_must_be_an_estimator_class(tabular, tmp_path):
    config = yaml.safe_load((tabular / "loopml.yaml").read_text())
    marker = tmp_path / "pwned"
    config["model"] = {"type": "sklearn", "estimator": "os.system", "params": {"command": f"touch {marker}"},
                       "standardize": False}  # fmt: skip
    (tabular / "loopml.yaml").write_text(yaml.safe_dump(config))
    loopml("validate", cwd=tabular)
    message = train_fails(tabular)
    assert "os.system is a builtin_function_or_method without fit and predict" in message
    assert not marker.exists()


@pytest.mark.slow
def test_factory_outside_the_project_needs_an_opt_in(digits, tmp_path):
    outside = tmp_path / "elsewhere.py"
    outside.write_text((digits / "model.py").read_text())
    config = yaml.safe_load((digits / "loopml.yaml").read_text())
    config["model"]["factory"] = "../elsewhere.py:build"
    (digits / "loopml.yaml").write_text(yaml.safe_dump(config))
    loopml("validate", cwd=digits)
    message = train_fails(digits, {"LOOPML_TRAIN__EPOCHS": "1"})
    assert "lies outside the project" in message and "model.allow_external_code: true" in message


def test_code_choosing_keys_come_from_the_file_only(tmp_path):
    path = write(tmp_path, VALID)
    with pytest.raises(ConfigError, match="LOOPML_MODEL__ESTIMATOR: model.estimator chooses which code runs"):
        load_config(path, {"LOOPML_MODEL__ESTIMATOR": "os.system"})
    with pytest.raises(ConfigError, match="LOOPML_MODEL__FACTORY"):
        load_config(path, {"LOOPML_MODEL__FACTORY": "evil.py:run"})
    allowed = load_config(path, {"LOOPML_MODEL__ESTIMATOR": "sklearn.svm.SVC", "LOOPML_ALLOW_CODE_OVERRIDES": "1"})
    assert allowed.model.estimator == "sklearn.svm.SVC"
    assert load_config(path, {"LOOPML_MODEL__PARAMS__MAX_ITER": "50"}).model.params == {"max_iter": 50}  # data


def test_dotenv_sets_secrets_not_settings(tmp_path, monkeypatch):
    from loopml.project import Project

    write(tmp_path, VALID)
    (tmp_path / ".env").write_text("LOOPML_MODEL__ESTIMATOR=os.system\nLOOPML_TRAIN__EPOCHS=99\n"
                                   "MLFLOW_TRACKING_TOKEN=t0ken\n")  # fmt: skip
    for name in ("LOOPML_MODEL__ESTIMATOR", "LOOPML_TRAIN__EPOCHS", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    project = Project.find(tmp_path)
    import os

    assert os.environ.get("MLFLOW_TRACKING_TOKEN") == "t0ken"
    assert "LOOPML_MODEL__ESTIMATOR" not in os.environ and "LOOPML_TRAIN__EPOCHS" not in os.environ
    assert project.config.model.estimator == "sklearn.linear_model.LogisticRegression"
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")


def test_yaml_is_read_with_limits(tmp_path):
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    )
    with pytest.raises(ConfigError, match="billion laughs"):
        load_config(write(tmp_path, laughs + yaml.safe_dump(VALID)), {})
    many = "".join(f"k{i}: &a{i} 1\n" for i in range(150)) + "refs: [" + ", ".join(f"*a{i}" for i in range(150)) + "]\n"
    with pytest.raises(ConfigError, match="more than 100 aliases"):
        load_config(write(tmp_path, many), {})
    with pytest.raises(ConfigError, match="at most"):
        load_config(write(tmp_path, "x: " + "y" * (2 << 20)), {})


@pytest.mark.slow
def test_a_crafted_checkpoint_cannot_run_code(digits, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    loopml("validate", cwd=digits)
    checkpoint = digits / ".loopml" / "checkpoints" / "last.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(pickle.dumps({"fingerprint": "x", "payload": Exploit()}))
    message = train_fails(digits, {"LOOPML_TRAIN__EPOCHS": "1", "LOOPML_RESUME": "1"})
    assert "last.pt" in message and ("damaged" in message or "not a loopml checkpoint" in message)
    assert "without --resume" in message and not marker.exists()
