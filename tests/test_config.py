"""loopml.yaml loading: every mistake names the file, key path, expectation and finding."""

from pathlib import Path

import pytest

from loopml.config import load_config
from loopml.errors import ConfigError

VALID = """
name: demo
task: classification
data: {path: data.parquet, target: label}
model: {type: torch, factory: "model.py:build", params: {channels: 8}}
train: {epochs: 5, batch_size: auto}
gates: {accuracy: ">= 0.9", vs_champion: {accuracy: ">= -0.01"}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "loopml.yaml"
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str, environ=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ or {})
    return str(info.value)


def test_valid_file_loads_with_defaults(tmp_path):
    cfg = load_config(write(tmp_path, VALID), {})
    assert cfg.train.epochs == 5 and cfg.train.lr == 1e-3 and cfg.train.device == "auto"
    assert cfg.gates.thresholds == {"accuracy": ">= 0.9"}
    assert cfg.gates.vs_champion == {"accuracy": ">= -0.01"}


def test_typo_names_key_path_and_suggests(tmp_path):
    message = error(tmp_path, VALID.replace("epochs: 5", "epoch: 5"))
    assert "loopml.yaml" in message and "train.epoch: unknown key" in message
    assert 'did you mean "epochs"' in message


def test_wrong_type_shows_expected_and_found(tmp_path):
    message = error(tmp_path, VALID.replace("epochs: 5", "epochs: ten"))
    assert "train.epochs" in message and "integer" in message and "'ten'" in message


def test_bad_gate_expression(tmp_path):
    message = error(tmp_path, VALID.replace('">= 0.9"', '"0.9 or more"'))
    assert 'accuracy must look like ">= 0.95"' in message and "0.9 or more" in message


def test_unknown_gate_metric_suggests(tmp_path):
    message = error(tmp_path, VALID.replace('accuracy: ">= 0.9"', 'acuracy: ">= 0.9"'))
    assert "gates.acuracy" in message and 'did you mean "accuracy"' in message


def test_bad_yaml_names_line(tmp_path):
    message = error(tmp_path, "name: demo\ntask: [classification\n")
    assert "not valid YAML" in message and "line" in message


def test_missing_required_key(tmp_path):
    assert "data: required key is missing" in error(
        tmp_path, "name: x\ntask: regression\nmodel: {type: torch, factory: m.py:f}\n"
    )


def test_bad_factory_shape(tmp_path):
    message = error(tmp_path, VALID.replace('"model.py:build"', '"build"'))
    assert "model.factory" in message and 'must look like "model.py:build"' in message


def test_env_overrides_are_typed(tmp_path):
    cfg = load_config(write(tmp_path, VALID), {"LOOPML_TRAIN__EPOCHS": "7", "LOOPML_MODEL__PARAMS__CHANNELS": "4",
                                               "LOOPML_ADMIN_TOKEN": "not-config"})  # fmt: skip
    assert cfg.train.epochs == 7 and cfg.model.params["channels"] == 4


def test_bad_env_override_is_explained(tmp_path):
    message = error(tmp_path, VALID, {"LOOPML_TRAIN__LR": "fast"})
    assert "train.lr" in message and "'fast'" in message


def test_secrets_are_refused(tmp_path):
    message = error(tmp_path, VALID + "tracking: {password: hunter2}\n")
    assert "secrets do not belong in loopml.yaml" in message and "hunter2" not in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="loopml init"):
        load_config(tmp_path / "loopml.yaml", {})


def test_loop_policy_is_checked(tmp_path):
    cfg = load_config(write(tmp_path, VALID + "loop: {since: 6h, canary_percent: 10}\n"), {})
    assert cfg.loop.since == "6h" and cfg.loop.canary_percent == 10 and cfg.loop.max_metric_drop == 0.05
    message = error(tmp_path, VALID + "loop: {since: soon}\n")
    assert "loop.since" in message and 'like "90s", "30m", "6h" or "2d"' in message and "soon" in message
    message = error(tmp_path, VALID, {"LOOPML_LOOP__CANARY_PERCENT": "0"})
    assert "loop.canary_percent" in message and "greater than 0" in message
    message = error(tmp_path, VALID + "loop: {canary_precent: 5}\n")
    assert 'did you mean "canary_percent"' in message


def test_the_data_remote_is_checked_where_it_is_set_and_never_shows_credentials(tmp_path):
    message = error(tmp_path, VALID + 'remote: {url: "s3://AKIA:s3cret@bucket/x"}\n')
    assert "remote.url: the data remote's URL carries credentials" in message
    assert "s3cret" not in message and "AKIA" not in message
    message = error(tmp_path, VALID + 'remote: {url: "ftp://host/x"}\n')
    assert "remote.url: a scheme DVC does not know" in message
    message = error(tmp_path, VALID + 'remote: {url: "/srv/dvc", endpoint_url: "http://127.0.0.1:9000"}\n')
    assert "endpoint_url is for an s3:// remote" in message
    cfg = load_config(write(tmp_path, VALID + 'remote: {url: "s3://b/x", endpoint_url: "http://127.0.0.1:9000"}\n'), {})
    assert cfg.remote.url == "s3://b/x" and cfg.remote.endpoint_url == "http://127.0.0.1:9000"


def test_deploy_section_checks_quantities_bounds_and_names(tmp_path):
    cfg = load_config(
        write(tmp_path, VALID + "deploy: {image: ghcr.io/acme/demo, memory: 512Mi, canary_weight: 5}\n"), {}
    )
    assert (cfg.deploy.image, cfg.deploy.memory, cfg.deploy.canary_weight, cfg.deploy.cpu) == (
        "ghcr.io/acme/demo", "512Mi", 5, "1")  # fmt: skip
    assert "Kubernetes quantity" in error(tmp_path, VALID + "deploy: {memory: 2GB}\n")
    assert "max_replicas (2) is below replicas (3)" in error(
        tmp_path, VALID + "deploy: {replicas: 3, max_replicas: 2}\n"
    )
    assert "deploy.namespace" in error(tmp_path, VALID + "deploy: {namespace: My_Space}\n")
    assert "deploy.canary_weight" in error(tmp_path, VALID + "deploy: {canary_weight: 150}\n")
    assert load_config(write(tmp_path, VALID + "deploy: {cpu: 2, cpu_limit: 2.5}\n"), {}).deploy.cpu_limit == "2.5"
    message = error(tmp_path, VALID + "deploy: {cpu: 2}\n", {"LOOPML_DEPLOY__CPU": "lots"})
    assert "LOOPML_DEPLOY__CPU" in message and "'lots'" in message
