"""The only module that imports MLflow: runs, metrics, artifacts, lineage, registry, aliases.

Conventions (DESIGN.md §4): the experiment and the registered model are named after the
project; alias `champion` serves, `challenger` is the newest model that passed the gates;
every alias move is recorded on the version as tags (who, when, why, previous champion).
Models are logged as MLflow pyfunc models wrapping a loopml package, so
`mlflow.pyfunc.load_model(...)` works for users who never heard of loopml.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from loopml.errors import RegistryError
from loopml.project import Project

logger = logging.getLogger(__name__)
# MLflow's advice (type hints on predict, integer columns, ambiguous dataset sources) is for
# people writing pyfunc models by hand; loopml passes explicit signatures and sources.
warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

CHAMPION, CHALLENGER = "champion", "challenger"
TAG = "loopml."  # prefix of every tag loopml writes


@contextmanager
def _no_warnings_shown() -> Iterator[None]:
    """MLflow's subclass hook re-enables its own advice with `simplefilter("once")`, so no filter can
    silence "Add type hints to the `predict` method"; hide what is shown while the class is made."""
    shown = warnings.showwarning
    warnings.showwarning = lambda *args, **kwargs: None
    try:
        yield
    finally:
        warnings.showwarning = shown


with _no_warnings_shown():

    class LoopmlPyfunc(mlflow.pyfunc.PythonModel):
        """MLflow's view of a loopml package: `predict(DataFrame)` → predictions."""

        def load_context(self, context) -> None:
            from loopml.train.package import Predictor

            self.predictor = Predictor(context.artifacts["package"])

        def predict(self, context, model_input, params=None):
            frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
            return self.predictor.predict(frame)


def connect(project: Project) -> MlflowClient:
    """Point MLflow at the project's store and make sure its experiment exists."""
    os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    use_store(project.tracking_uri)
    if project.tracking_uri.startswith("sqlite:///"):
        project.state.mkdir(parents=True, exist_ok=True)
    name = project.config.name
    try:
        if mlflow.get_experiment_by_name(name) is None:
            local = project.tracking_uri.startswith("sqlite:") or "://" not in project.tracking_uri
            mlflow.create_experiment(name, artifact_location=project.artifact_location if local else None)
        mlflow.set_experiment(name)
    except MlflowException as exc:
        raise RegistryError(f"MLflow at {project.tracking_uri} refused: {_short(exc)}") from None
    return MlflowClient()


@contextmanager
def run(project: Project, run_id: str | None = None, system_metrics: bool = False) -> Iterator[str]:
    """Start (or continue, given `run_id`) an MLflow run; yields its id."""
    connect(project)
    if system_metrics:
        from mlflow.system_metrics import (
            set_system_metrics_samples_before_logging,
            set_system_metrics_sampling_interval,
        )

        set_system_metrics_sampling_interval(1)  # seconds; short runs still get readings
        set_system_metrics_samples_before_logging(1)
    with mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics or None) as active:
        yield active.info.run_id


def log_params(params: dict[str, Any]) -> None:
    flat = _flatten(params)
    items = list(flat.items())
    for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
        mlflow.log_params(dict(items[i : i + 100]))


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def set_tags(tags: dict[str, Any]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_artifact(path: Path, folder: str | None = None) -> None:
    mlflow.log_artifact(str(path), artifact_path=folder)


def log_dataset(frame: pd.DataFrame, source: str, digest: str, target: str, context: str) -> None:
    dataset = mlflow.data.from_pandas(frame, source=source, targets=target, name=Path(source).name)
    mlflow.log_input(dataset, context=context, tags={"loopml.digest": digest})


def log_model(package: Path, example: pd.DataFrame, requirements: list[str]) -> str:
    """Log a loopml package as an MLflow pyfunc model; returns its model URI."""
    from mlflow.models import infer_signature

    from loopml.train.package import Predictor

    predictions = Predictor(package).predict(example)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=LoopmlPyfunc(),
        artifacts={"package": str(package)},
        signature=infer_signature(example, predictions),
        input_example=example.head(2),
        pip_requirements=requirements,
    )
    return info.model_uri


def load_predictor(model_uri: str, tracking_uri: str | None = None):
    """The loopml Predictor inside a logged or registered model (`models:/name@alias`, ...)."""
    if tracking_uri:
        use_store(tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as exc:
        raise RegistryError(f"cannot load {model_uri}: {_short(exc)}") from None
    return model.unwrap_python_model().predictor


# -- registry --------------------------------------------------------------------------


def resolve_version(model_uri: str, tracking_uri: str | None = None) -> str:
    """The version number behind `models:/name@alias` or `models:/name/N`."""
    if tracking_uri:
        use_store(tracking_uri)
    spec = model_uri.removeprefix("models:/")
    client = MlflowClient()
    try:
        if "@" in spec:
            name, alias = spec.split("@", 1)
            return str(client.get_model_version_by_alias(name, alias).version)
        name, _, version = spec.partition("/")
        return str(client.get_model_version(name, version).version)
    except MlflowException as exc:
        raise RegistryError(f"cannot resolve {model_uri}: {_short(exc)}") from None


def champion(project: Project) -> dict[str, Any] | None:
    """The current champion version, or None when there is none yet."""
    return _by_alias(project, CHAMPION)


def _by_alias(project: Project, alias: str) -> dict[str, Any] | None:
    client = connect(project)
    try:
        version = client.get_model_version_by_alias(project.config.name, alias)
    except MlflowException:
        return None
    return _describe(version)


def register(project: Project, model_uri: str, run_id: str, tags: dict[str, Any],
             make_champion: bool, reason: str) -> dict[str, Any]:  # fmt: skip
    """A new registered version with alias `challenger` (and `champion` when `make_champion`)."""
    connect(project)
    name = project.config.name
    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    client = MlflowClient()
    _move_alias(client, name, CHALLENGER, version.version, reason)
    if make_champion:
        _move_alias(client, name, CHAMPION, version.version, reason)
    return _describe(client.get_model_version(name, version.version))


def promote(project: Project, version: str, reason: str, alias: str = CHAMPION) -> dict[str, Any]:
    client = connect(project)
    _version(client, project.config.name, version)
    _move_alias(client, project.config.name, alias, version, reason)
    return _describe(client.get_model_version(project.config.name, version))


def rollback(project: Project, reason: str) -> dict[str, Any]:
    """Move `champion` back to the version it replaced."""
    client = connect(project)
    current = champion(project)
    if current is None:
        raise RegistryError(f"{project.config.name} has no champion to roll back")
    previous = current["tags"].get(TAG + "previous_champion")
    if not previous:
        raise RegistryError(
            f"champion v{current['version']} replaced no earlier champion; nothing to roll back to "
            "(use `loopml models promote VERSION` to pick one)"
        )
    client.set_model_version_tag(project.config.name, current["version"], TAG + "rolled_back", _stamp(reason))
    _move_alias(client, project.config.name, CHAMPION, previous, f"rollback from v{current['version']}: {reason}",
                record_previous=False)  # fmt: skip
    return _describe(client.get_model_version(project.config.name, previous))


def describe(project: Project, version: str) -> dict[str, Any]:
    """One version: aliases it holds now, tags (metrics, gates, alias history), run and source."""
    client = connect(project)
    info = _describe(_version(client, project.config.name, version))
    aliases = client.get_registered_model(project.config.name).aliases
    info["aliases"] = sorted(a for a, v in aliases.items() if str(v) == info["version"])
    return info


def reference_profile(project: Project, version: str):
    """The reference profile shipped inside a registered version's package, or None for packages
    without one. Only that file is fetched: the loop asks for it every cycle, weights stay put."""
    from loopml.data.profile import Profile

    _version(connect(project), project.config.name, version)  # a missing version is an error, not None
    # log_model stores the package folder under the model's artifacts/, by its folder name
    uri = f"models:/{project.config.name}/{version}/artifacts/{project.model_dir.name}/reference_profile.json"
    try:
        local = mlflow.artifacts.download_artifacts(uri)
    except (MlflowException, OSError):
        return None
    return Profile.from_dict(json.loads(Path(local).read_text()))


def tag_version(project: Project, version: str, tags: dict[str, Any]) -> None:
    client = connect(project)
    for key, value in tags.items():
        client.set_model_version_tag(project.config.name, version, key, str(value))


def reject(project: Project, version: str, reason: str) -> None:
    """A challenger that lost: tagged with why, and no longer `challenger`."""
    client = connect(project)
    name = project.config.name
    client.set_model_version_tag(name, version, TAG + "rejected", _stamp(reason))
    try:
        if str(client.get_model_version_by_alias(name, CHALLENGER).version) == str(version):
            client.delete_registered_model_alias(name, CHALLENGER)
    except MlflowException:
        pass  # no challenger alias: nothing to remove


def list_versions(project: Project) -> list[dict[str, Any]]:
    client = connect(project)
    name = project.config.name
    try:
        versions = client.search_model_versions(f"name='{name}'")
        aliases = client.get_registered_model(name).aliases  # search results leave aliases out
    except MlflowException:
        return []
    described = []
    for version in versions:
        info = _describe(version)
        info["aliases"] = sorted(a for a, v in aliases.items() if str(v) == info["version"])
        described.append(info)
    return sorted(described, key=lambda v: int(v["version"]), reverse=True)


def _move_alias(client: MlflowClient, name: str, alias: str, version: str, reason: str,
                record_previous: bool = True) -> None:  # fmt: skip
    if alias == CHAMPION and record_previous:
        try:
            old = client.get_model_version_by_alias(name, CHAMPION).version
        except MlflowException:
            old = None
        if old and old != str(version):
            client.set_model_version_tag(name, version, TAG + "previous_champion", old)
    client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, f"{TAG}{alias}_by", _stamp(reason))
    logger.info("%s@%s -> v%s (%s)", name, alias, version, reason)


def _version(client: MlflowClient, name: str, version: str):
    try:
        return client.get_model_version(name, version)
    except MlflowException:
        known = [v["version"] for v in (_describe(m) for m in client.search_model_versions(f"name='{name}'"))]
        raise RegistryError(f"{name} has no version {version!r}; versions: {', '.join(known) or 'none'}") from None


def _describe(version) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": str(version.version),
        "aliases": list(getattr(version, "aliases", []) or []),
        "run_id": version.run_id,
        "source": version.source,
        "created": dt.datetime.fromtimestamp(version.creation_timestamp / 1000).isoformat(timespec="seconds"),
        "tags": dict(version.tags or {}),
    }


def _stamp(reason: str) -> str:
    who = os.environ.get("LOOPML_USER") or getpass.getuser()
    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return json.dumps({"who": who, "when": when, "why": reason})


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def use_store(uri: str) -> None:
    """Point tracking and the model registry at `uri`, without leaking it into the environment.

    `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI into os.environ, which is where
    loopml reads the *user's* choice from: left there, the first project a process touched
    would win over every later one.
    """
    saved = {var: os.environ.get(var) for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for var, value in saved.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300]


# -- the register stage ----------------------------------------------------------------


def register_stage(project: Project) -> dict[str, Any]:
    """Register the evaluated model if it passed the threshold gates; make it champion if it
    also beat the champion. A failing model stays a logged run and raises `GateFailed`."""
    import time

    from loopml.errors import GateFailed

    started = time.perf_counter()
    trained = project.require_result("train", "register")
    evaluated = project.require_result("evaluate", "register")
    failed = [g for g in evaluated["gates"] if not g["passed"]]
    connect(project)
    if not evaluated["registrable"]:
        with run(project, run_id=trained["run_id"]):
            set_tags({TAG + "registered": False})
        lines = [f"{g['metric']} {g['rule']} ({g['kind']}): got "
                 f"{'n/a' if g['value'] is None else format(g['value'], '.4g')} {g['note']}".rstrip()
                 for g in failed]  # fmt: skip
        raise GateFailed(
            f"the model failed {len(failed)} gate(s); it is logged as run {trained['run_id']} but not "
            "registered:\n  " + "\n  ".join(lines) + f"\nSee {evaluated['report']}; improve the model or "
            "revisit the gates in loopml.yaml."
        )
    metrics = evaluated["metrics"]
    tags = {
        TAG + "data_digest": trained["data_digest"],
        TAG + "git_commit": trained["git_commit"],
        TAG + "device": trained["device"],
        TAG + "variant": "base",
        TAG + "gates": json.dumps(evaluated["gates"]),
        **{f"{TAG}metric.{k}": round(v, 6) for k, v in metrics.items()},
    }
    reason = "passed the gates" + (" and beat the champion" if evaluated["champion"] else ", first champion")
    make_champion = bool(evaluated["becomes_champion"])
    if not make_champion:
        reason = "passed the gates; did not beat the champion"
    if make_champion and evaluated["champion"] and os.environ.get("LOOPML_REGISTER_AS") == CHALLENGER:
        # the loop retrained it: live traffic in a canary, not the test set alone, decides on champion
        make_champion, reason = False, "passed the gates; challenger until its canary is judged"
    version = register(project, trained["model_uri"], trained["run_id"], tags, make_champion, reason)
    with run(project, run_id=trained["run_id"]):
        set_tags({TAG + "registered": True, TAG + "version": version["version"]})
    result = {
        "stage": "register",
        "seconds": round(time.perf_counter() - started, 3),
        "figure": f"{project.config.name} v{version['version']} @ {', '.join(version['aliases'])}",
        "version": version["version"],
        "aliases": version["aliases"],
        "champion": make_champion,
    }
    project.write_result("register", result)
    return result
