"""The only module that imports MLflow: runs, metrics, artifacts, the model registry, aliases.

Conventions (DESIGN.md §4): the experiment and the registered model are named after the project;
alias `champion` serves, `challenger` is the newest model that passed the gates; every alias move
is recorded on the version as tags (who, when, why, previous champion). Models are logged as MLflow
pyfunc models carrying `loopml_runtime`, so `mlflow.pyfunc.load_model(...)` works where loopml is
not installed.

Errors are classified: `NotFound` when the registry answered "no such thing", `RegistryUnavailable`
for everything else (no answer, an error answer, a damaged store), raised within seconds (a quick
probe first, bounded retries) and naming the store without its secrets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import json
import logging
import os
import re
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from loopml.contracts import AliasMove, ModelVersion, Tag, plain
from loopml.errors import LoopmlError, NotFound, RegistryError, RegistryUnavailable
from loopml.store import check_sqlite, redact
from loopml.uri import CHALLENGER, CHAMPION, ModelRef

if TYPE_CHECKING:
    import pandas as pd

    from loopml.data.profile import Profile
    from loopml.project import Project
    from loopml_runtime import Predictor

logger = logging.getLogger(__name__)
# MLflow's advice (type hints on predict, integer columns, ambiguous dataset sources) is for
# people writing pyfunc models by hand; loopml passes explicit signatures and sources.
warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Against a tracking server MLflow writes "View run ... at: URL" to stdout when a run ends: stdout is
# loopml's (`--json` output must parse), so it stays quiet.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# A dead or failing tracking server must fail in seconds, not after MLflow's default 7 retries
# with exponential backoff (4 min 12 s measured): 2 retries, short timeouts. The user's own
# MLFLOW_HTTP_REQUEST_* settings win.
for _var, _value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                     ("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.5"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")):  # fmt: skip
    os.environ.setdefault(_var, _value)
PROBE_TIMEOUT_S = 3.0
DRIVER_PACKAGES = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "pymysql": "pymysql"}
PACKAGE_FOLDER = "model"  # log_model stores the package under the model's artifacts/model


class Registry:
    """MLflow bound to one project: its store, its experiment and its registered model name."""

    def __init__(self, tracking_uri: str, name: str, artifact_location: str | None = None):
        self.tracking_uri = tracking_uri
        self.name = name
        self.where = redact(tracking_uri)
        self._artifact_location = artifact_location
        self._check_store()
        with self._errors("open the store"):  # MLflow checks (and migrates) a SQL store's tables here
            use_store(tracking_uri)
            self.client = MlflowClient()
        self._experiment_id: str | None = None

    @classmethod
    def of(cls, project: Project) -> Registry:
        local = project.tracking_uri.startswith("sqlite:")
        return cls(project.tracking_uri, project.config.name, project.artifact_location if local else None)

    # -- the store -------------------------------------------------------------------------
    def _check_store(self) -> None:
        """Refuse a damaged SQLite store, probe a server: fast, clear failures before any work."""
        uri = self.tracking_uri
        if uri.startswith("sqlite:///"):
            path = Path(uri.removeprefix("sqlite:///"))
            check_sqlite(path)
            path.parent.mkdir(parents=True, exist_ok=True)
        elif uri.startswith(("http://", "https://")):
            self._probe()
        elif self._database():
            self._probe_database()

    def _database(self) -> bool:
        """A database URI (postgresql://, mysql+pymysql://, ...) that MLflow opens with SQLAlchemy."""
        scheme = self.tracking_uri.split("://", 1)[0]
        return "://" in self.tracking_uri and not scheme.startswith(("http", "sqlite", "file", "databricks"))

    def _probe_database(self) -> None:
        """One connection with a short timeout: MLflow itself retries a failing database for 1 min 44 s."""
        import sqlalchemy

        scheme = self.tracking_uri.split("://", 1)[0]
        timeout = {"connect_timeout": int(PROBE_TIMEOUT_S)} if scheme.startswith(("postgresql", "mysql")) else {}
        try:
            engine = sqlalchemy.create_engine(self.tracking_uri, poolclass=sqlalchemy.pool.NullPool,
                                              connect_args=timeout)  # fmt: skip
            with engine.connect():
                pass
        except ModuleNotFoundError as exc:
            raise self._driver_missing(exc) from None
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
            detail = redact(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300])
            raise RegistryUnavailable(
                f"cannot open the tracking database {self.where}: {detail}; check MLFLOW_TRACKING_URI (the "
                "environment or the project's .env): host, port, user, password and database name, and that the "
                "database exists"
            ) from None

    def _driver_missing(self, exc: ModuleNotFoundError) -> RegistryUnavailable:
        # postgresql:// means psycopg 3 to SQLAlchemy 2.1, psycopg2 to earlier versions
        scheme = self.tracking_uri.split("://", 1)[0].split("+")[0]
        package = DRIVER_PACKAGES.get(exc.name or "", exc.name)
        return RegistryUnavailable(
            f"the tracking URI {self.where} needs the Python module {exc.name!r}, which is not installed: "
            f"pip install {package}, or name an installed driver in the URI, e.g. {scheme}+psycopg2://… "
            "(pip install 'loopml[team]' installs psycopg2)"
        )

    def _probe(self) -> None:
        url = self.tracking_uri.rstrip("/") + "/health"
        request = urllib.request.Request(redact(url))
        auth = re.match(r"https?://([^/@]+)@", self.tracking_uri)
        if auth:  # the probe sends the URI's credentials as MLflow would
            import base64

            request.add_header("authorization", "Basic " + base64.b64encode(auth[1].encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
                if response.status >= 400:
                    raise RegistryUnavailable(f"the MLflow server at {self.where} answered {response.status}")
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise RegistryUnavailable(
                    f"the MLflow server at {self.where} answered {exc.code} {exc.reason} to a health check; "
                    "look at the server's log, or point MLFLOW_TRACKING_URI at a working server"
                ) from None
            # 401/403/404: /health may sit behind auth or a proxy path; the real calls will tell
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryUnavailable(
                f"cannot reach the MLflow server at {self.where} ({reason}); start it, or point "
                "MLFLOW_TRACKING_URI at a running one (unset it for the project's local store)"
            ) from None

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            with self._errors("open the experiment"):
                found = self.client.get_experiment_by_name(self.name)
                if found is None:
                    self._experiment_id = self.client.create_experiment(
                        self.name, artifact_location=self._artifact_location
                    )
                else:
                    self._experiment_id = found.experiment_id
        return self._experiment_id

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Classify whatever MLflow or its store raises."""
        try:
            yield
        except LoopmlError:
            raise
        except MlflowException as exc:
            text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
                exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in text
            ):
                raise NotFound(text) from None
            if "/mlflow-artifacts/" in text:  # the server proxies artifacts and its artifact store failed
                raise RegistryUnavailable(
                    f"the MLflow server at {self.where} could not {doing}: its artifact store failed. "
                    "`loopml doctor` shows the store's answer; check the server's --artifacts-destination "
                    "(the bucket must exist) and its AWS_* credentials and MLFLOW_S3_ENDPOINT_URL"
                ) from None
            raise RegistryUnavailable(f"MLflow at {self.where} failed to {doing}: {redact(text)}") from None
        except ModuleNotFoundError as exc:
            if not self._database():
                raise
            raise self._driver_missing(exc) from None
        except Exception as exc:
            if type(exc).__module__.split(".")[0] not in ("sqlalchemy", "sqlite3", "requests", "urllib3", "botocore",
                                                          "boto3", "psycopg2", "psycopg"):  # fmt: skip
                raise
            text = redact(str(exc).splitlines()[0][:300])
            hint = ""
            if "malformed" in text or "not a database" in text:
                hint = "; the store file is damaged: restore it from a backup, or move it away to start a new store"
            raise RegistryUnavailable(f"MLflow at {self.where} failed to {doing}: {text}{hint}") from None

    # -- runs ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def run(self, run_id: str | None = None, name: str | None = None, system_metrics: bool = False) -> Iterator[str]:
        """Start (or continue, given `run_id`) an MLflow run; yields its id. A run that raises ends
        FAILED, never RUNNING."""
        experiment = self.experiment_id()
        use_store(self.tracking_uri)
        if system_metrics:
            from mlflow.system_metrics import (
                set_system_metrics_samples_before_logging,
                set_system_metrics_sampling_interval,
            )

            set_system_metrics_sampling_interval(1)  # seconds; short runs still get readings
            set_system_metrics_samples_before_logging(1)
        with self._errors("start a run"):
            active = mlflow.start_run(run_id=run_id, experiment_id=experiment, run_name=name,
                                      log_system_metrics=system_metrics or None)  # fmt: skip
        status = "FINISHED"
        try:
            yield active.info.run_id
        except BaseException:
            status = "FAILED"
            raise
        finally:
            with contextlib.suppress(Exception):  # a store that broke mid-run: the original error matters
                mlflow.end_run(status)

    def run_exists(self, run_id: str) -> bool:
        try:
            with self._errors("look up a run"):
                self.client.get_run(run_id)
            return True
        except NotFound:
            return False

    def log_params(self, params: dict[str, Any]) -> None:
        items = list(_flatten(params).items())
        with self._errors("log parameters"):
            for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
                mlflow.log_params(dict(items[i : i + 100]))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        with self._errors("log metrics"):
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def set_tags(self, tags: dict[str, Any]) -> None:
        with self._errors("set tags"):
            mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        with self._errors(f"store {path.name}"):
            mlflow.log_artifact(str(path), artifact_path=folder)

    def log_text(self, text: str, artifact_file: str) -> None:
        with self._errors(f"store {artifact_file}"):
            mlflow.log_text(text, artifact_file)

    def log_dataset(self, frame: pd.DataFrame, source: str, digest: str, target: str, context: str) -> None:
        with self._errors("log the dataset"):
            dataset = mlflow.data.from_pandas(frame, source=source, targets=target, name=Path(source).name)
            mlflow.log_input(dataset, context=context, tags={Tag.DIGEST_INPUT: digest})

    def log_model(self, package: Path, example: pd.DataFrame, requirements: list[str], name: str = "model") -> str:
        """Log a package as an MLflow pyfunc model carrying `loopml_runtime`; returns its model URI.
        `name`: "model" for the trained model, "model-<variant>" for an optimized one."""
        import loopml_runtime
        from loopml_runtime.pyfunc import LoopmlPyfunc

        predictor = loopml_runtime.Predictor(package)
        signature = _signature(predictor, example)
        runtime_code = str(Path(loopml_runtime.__file__).parent)
        # The package is given relative to its folder, so MLmodel records no absolute path of this machine.
        with _cwd(package.parent), self._errors("log the model"):
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=LoopmlPyfunc(),
                artifacts={"package": package.name},
                code_paths=[runtime_code],
                signature=signature,
                input_example=_example(predictor, example),
                pip_requirements=requirements,
            )
        return info.model_uri

    # -- versions and aliases --------------------------------------------------------------
    def version_by_alias(self, alias: str) -> ModelVersion | None:
        """The version holding `alias`, or None when no version does (other failures raise)."""
        try:
            with self._errors(f"look up {self.name}@{alias}"):
                version = self.client.get_model_version_by_alias(self.name, alias)
        except NotFound:
            return None
        return _version(version).with_aliases(list(getattr(version, "aliases", []) or [alias]))

    def champion(self) -> ModelVersion | None:
        return self.version_by_alias(CHAMPION)

    def resolve(self, ref: ModelRef) -> str:
        """The version number `ref` points at now."""
        if ref.version is not None:
            return self.describe(ref.version).version
        found = self.version_by_alias(ref.alias)
        if found is None:
            raise NotFound(f"{ref.name} has no version with alias {ref.alias!r}" + (
                "; `loopml run` registers the first champion" if ref.alias == CHAMPION else ""))  # fmt: skip
        return found.version

    def download(self, version: str) -> Path:
        """The local package folder of a registered version (downloaded from the artifact store)."""
        return self.export(version)[1]

    def export(self, version: str) -> tuple[Path, Path]:
        """A registered version downloaded: (the MLflow model folder, with MLmodel and its pinned
        requirements.txt; the loopml package folder inside it)."""
        from loopml_runtime import META_FILE

        with self._errors(f"download {self.name} v{version}"):
            local = Path(mlflow.artifacts.download_artifacts(f"models:/{self.name}/{version}"))
        found = sorted(local.rglob(META_FILE))
        if not found:
            raise RegistryUnavailable(f"{self.name} v{version} at {self.where} holds no loopml package "
                                      f"(no {META_FILE}); was it logged by loopml?")  # fmt: skip
        return local, found[0].parent

    def load(self, version: str, device: str = "cpu") -> Predictor:
        from loopml_runtime import PackageError, Predictor

        path = self.download(version)
        try:
            return Predictor(path, device=device)
        except PackageError as exc:
            raise RegistryError(f"{self.name} v{version}: {exc}") from None

    def register(self, run_id: str, model_uri: str, tags: dict[str, Any], aliases: list[str],
                 reason: str) -> tuple[ModelVersion, bool]:  # fmt: skip
        """The run's version (reused if this run was registered before: register is idempotent per
        run, also when several processes register at once), with `aliases` moved onto it.
        Returns (version, reused)."""
        with self._lock("register"):
            existing = self._versions_of_run(run_id)
            reused = bool(existing)
            with self._errors(f"register {self.name}"):
                if reused:
                    version = existing[0]
                else:
                    self._ensure_model()
                    # MLflow 3 logs models as models:/m-<id>; a tracking server (not a local store)
                    # refuses that source unless the model id comes with it
                    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
                    version = self.client.create_model_version(
                        self.name,
                        model_uri,
                        run_id=run_id,
                        tags={k: str(v) for k, v in tags.items()},
                        model_id=model_id,
                    )
            for alias in aliases:
                self._move_alias(alias, str(version.version), reason)
            return self.describe(str(version.version)), reused

    def _versions_of_run(self, run_id: str) -> list:
        try:
            with self._errors("search versions"):
                found = self.client.search_model_versions(f"name='{self.name}' and run_id='{run_id}'")
        except NotFound:
            return []
        return sorted(found, key=lambda v: int(v.version))

    def _ensure_model(self) -> None:
        try:
            self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            self.client.create_registered_model(self.name)

    def promote(self, version: str, reason: str, alias: str = CHAMPION) -> ModelVersion:
        self.describe(version)  # a missing version is a clear error, before anything moves
        self._move_alias(alias, version, reason)
        return self.describe(version)

    def rollback(self, reason: str) -> ModelVersion:
        """Move `champion` back to the version it replaced."""
        current = self.champion()
        if current is None:
            raise RegistryError(f"{self.name} has no champion to roll back")
        previous = current.previous_champion
        if not previous:
            raise RegistryError(
                f"champion v{current.version} replaced no earlier champion; nothing to roll back to "
                "(use `loopml models promote VERSION` to pick one)"
            )
        self.tag_version(current.version, {Tag.ROLLED_BACK: _stamp(reason)})
        self._move_alias(CHAMPION, previous, f"rollback from v{current.version}: {reason}", record_previous=False)
        return self.describe(previous)

    def describe(self, version: str) -> ModelVersion:
        """One version with the aliases it holds now."""
        try:
            with self._errors(f"read {self.name} v{version}"):
                found = self.client.get_model_version(self.name, str(version))
        except NotFound:
            known = [v.version for v in self.versions()]
            raise NotFound(f"{self.name} has no version {version!r}; versions: {', '.join(known) or 'none'}") from None
        return _version(found).with_aliases(self._aliases_of(str(found.version)))

    def versions(self) -> list[ModelVersion]:
        """Every version, newest first, each with its aliases."""
        try:
            with self._errors(f"list the versions of {self.name}"):
                found = self.client.search_model_versions(f"name='{self.name}'")
                aliases = self.client.get_registered_model(self.name).aliases if found else {}
        except NotFound:
            return []
        described = [_version(v).with_aliases([a for a, n in aliases.items() if str(n) == str(v.version)])
                     for v in found]  # fmt: skip
        return sorted(described, key=lambda v: int(v.version), reverse=True)

    def package_file(self, version: str, name: str) -> Path | None:
        """One file of a version's package (downloaded alone: weights stay put); None when the package
        has no such file. A missing version is an error."""
        self.describe(version)
        uri = f"models:/{self.name}/{version}/artifacts/{PACKAGE_FOLDER}/{name}"
        try:
            with self._errors(f"download {name} of v{version}"):
                return Path(mlflow.artifacts.download_artifacts(uri))
        except NotFound:
            return None
        except RegistryUnavailable as exc:
            if "No such file" in str(exc) or "does not exist" in str(exc) or "not found" in str(exc).lower():
                return None
            raise

    def reference_profile(self, version: str) -> Profile | None:
        """The reference profile inside a version's package; None only for packages without one.
        The loop asks for it every cycle."""
        from loopml.data.profile import Profile

        local = self.package_file(version, "reference_profile.json")
        return None if local is None else Profile.from_dict(json.loads(local.read_text()))

    def package_meta(self, version: str) -> dict[str, Any]:
        """The package's loopml-model.json: inputs, classes, target range."""
        from loopml_runtime import META_FILE

        local = self.package_file(version, META_FILE)
        if local is None:
            raise RegistryError(f"{self.name} v{version} holds no loopml package ({META_FILE} missing)")
        return json.loads(local.read_text())

    def tag_version(self, version: str, tags: dict[str, Any]) -> None:
        with self._errors(f"tag {self.name} v{version}"):
            for key, value in tags.items():
                self.client.set_model_version_tag(self.name, str(version), key, str(value))

    def reject(self, version: str, reason: str) -> None:
        """A challenger that lost: tagged with why, and no longer `challenger`."""
        self.tag_version(version, {Tag.REJECTED: _stamp(reason)})
        holder = self.version_by_alias(CHALLENGER)
        if holder is not None and holder.version == str(version):
            with self._errors("remove the challenger alias"):
                self.client.delete_registered_model_alias(self.name, CHALLENGER)

    def _aliases_of(self, version: str) -> list[str]:
        with self._errors(f"read the aliases of {self.name}"):
            aliases = self.client.get_registered_model(self.name).aliases
        return [a for a, v in aliases.items() if str(v) == version]

    def _move_alias(self, alias: str, version: str, reason: str, record_previous: bool = True) -> None:
        if alias == CHAMPION and record_previous:
            old = self.champion()
            if old is not None and old.version != str(version):
                self.tag_version(version, {Tag.PREVIOUS_CHAMPION: old.version})
        with self._errors(f"move {alias} to v{version}"):
            self.client.set_registered_model_alias(self.name, alias, str(version))
        self.tag_version(version, {Tag.moved_by(alias): _stamp(reason)})
        logger.info("%s@%s -> v%s (%s)", self.name, alias, version, reason)

    @contextlib.contextmanager
    def _lock(self, what: str) -> Iterator[None]:
        """A lock shared by every loopml process on this machine using this store."""
        import hashlib
        import tempfile

        folder = Path(tempfile.gettempdir()) / "loopml-locks"
        folder.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(f"{self.tracking_uri}|{self.name}|{what}".encode()).hexdigest()[:24]
        with open(folder / f"{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


# -- helpers ------------------------------------------------------------------------------------


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


def _version(version) -> ModelVersion:
    created = dt.datetime.fromtimestamp(version.creation_timestamp / 1000).isoformat(timespec="seconds")
    return ModelVersion(version.name, str(version.version), version.run_id, version.source, created,
                        list(getattr(version, "aliases", []) or []), dict(version.tags or {}))  # fmt: skip


def _signature(predictor, example: pd.DataFrame):
    """The MLflow signature of the raw input columns and the prediction."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    types = {"bool": "boolean", "string": "string", "datetime": "string"}  # dates travel as ISO 8601 text
    columns = []
    for spec in predictor.inputs:
        if spec.kind == "number":
            kind = "long" if (spec.dtype or "").startswith(("int", "uint")) else "double"
        else:
            kind = types[spec.kind]
        columns.append(ColSpec(kind, spec.name, required=False))
    predictions = predictor.predict(example.head(2))
    out = "string" if predictions.dtype.kind in "OUS" else "long" if predictions.dtype.kind in "iu" else "double"
    return ModelSignature(inputs=Schema(columns), outputs=Schema([ColSpec(out)]))


def _example(predictor, example: pd.DataFrame) -> pd.DataFrame:
    """Two conformed rows, complete ones when there are, as a JSON client sends them: dates as ISO
    text, booleans as true/false (conform holds them as 1.0/0.0, which MLflow's schema check refuses
    for a boolean column)."""
    complete = example.dropna()
    rows = predictor.conform((complete if len(complete) >= 2 else example).head(2))
    for spec in predictor.inputs:
        if spec.kind == "datetime":
            rows[spec.name] = rows[spec.name].dt.strftime("%Y-%m-%dT%H:%M:%S").astype(object)
        elif spec.kind == "bool":
            values = rows[spec.name]
            rows[spec.name] = values.astype(bool) if values.notna().all() else values.map(
                lambda v: None if pd.isna(v) else bool(v)).astype(object)  # fmt: skip
    return rows


def _stamp(reason: str) -> str:
    who = os.environ.get("LOOPML_USER") or getpass.getuser()
    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return json.dumps(plain(AliasMove(who, when, reason)))


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@contextlib.contextmanager
def _cwd(folder: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)
