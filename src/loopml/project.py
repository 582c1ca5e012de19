"""A loopml project on disk: its root, its validated config, and where every stage writes.

The layout is a contract shared by the stages, `dvc.yaml` and the tests:

    loopml.yaml            the config (committed)
    schema.yaml            the pinned pandera schema (committed)
    data/raw/...           raw data (DVC-tracked; never modified by loopml)
    data/traffic/          labelled live traffic the loop adds (DVC-tracked with `dvc add`)
    data/quarantine/       labelled traffic that failed validation, with the reason (never trained on)
    outputs/<stage>.json   each stage's typed result (see `contracts`; DVC outputs)
    outputs/model/         the packaged model the train stage produced
    reports/               evaluation.html and metrics.json
    reports/loop.log       every decision of `loopml monitor --watch`, for people
    .loopml/               local state: mlflow.db, artifacts/, checkpoints/, inference/ (git-ignored)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from loopml.config import CONFIG_FILE, ENV_PREFIX, Config, load_config
from loopml.contracts import STAGE_RESULTS, read_json, write_json
from loopml.errors import ConfigError

logger = logging.getLogger(__name__)
STAGES = ("prepare", "validate", "train", "evaluate", "optimize", "register")
R = TypeVar("R")


@dataclass
class Project:
    root: Path

    @classmethod
    def find(cls, start: Path | None = None) -> Project:
        """The project containing `start` (default: the working directory)."""
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / CONFIG_FILE).is_file():
                project = cls(folder)
                project.load_dotenv()
                return project
        raise ConfigError(
            f"no {CONFIG_FILE} in {here} or any parent folder; run `loopml init DIR` "
            "to create a project, or cd into one"
        )

    def load_dotenv(self) -> None:
        """Secrets and runtime settings from `.env` become environment variables (the real
        environment wins). `.env` is git-ignored, so it never changes loopml.yaml's settings:
        `LOOPML_<SECTION>__<KEY>` lines there are ignored with a warning."""
        env_file = self.root / ".env"
        if not env_file.is_file():
            return
        from dotenv import dotenv_values

        sections = {f"{ENV_PREFIX}{name.upper()}__" for name in Config.model_fields}
        for key, value in dotenv_values(env_file).items():
            if value is None or key in os.environ:
                continue
            if any(key.startswith(prefix) for prefix in sections):
                logger.warning("%s: %s is ignored: .env holds secrets, not settings; put it in loopml.yaml "
                               "(or the environment for one run)", env_file, key)  # fmt: skip
                continue
            os.environ[key] = value

    @cached_property
    def config(self) -> Config:
        return load_config(self.root / CONFIG_FILE)

    # -- paths ------------------------------------------------------------------------
    @property
    def data_path(self) -> str:
        path = self.config.data.path
        return path if "://" in path else str(self.root / path)

    @property
    def schema_path(self) -> Path:
        return self.root / self.config.data.schema_file

    @property
    def traffic_dir(self) -> Path:
        return self.root / self.config.data.traffic

    @property
    def quarantine_dir(self) -> Path:
        return self.root / self.config.data.quarantine

    @property
    def inference_log(self) -> Path:
        return self.root / self.config.monitor.log_dir

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def model_dir(self) -> Path:
        return self.outputs / "model"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def state(self) -> Path:
        return self.root / ".loopml"

    @property
    def checkpoint_dir(self) -> Path:
        return self.state / "checkpoints"

    @property
    def tracking_uri(self) -> str:
        """`MLFLOW_TRACKING_URI` wins; otherwise a SQLite store inside the project."""
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.state / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str:
        return (self.state / "artifacts").as_uri()

    # -- stage results -----------------------------------------------------------------
    def result_path(self, stage: str) -> Path:
        return self.outputs / f"{stage}.json"

    def write_result(self, result) -> None:
        write_json(self.result_path(result.STAGE), result)

    def read_result(self, cls: type[R]) -> R | None:
        """The stage's last result, typed; None when the stage has not run (or wrote an older format)."""
        path = self.result_path(cls.STAGE)
        if not path.is_file():
            return None
        try:
            return read_json(path, cls)
        except (ValueError, TypeError, KeyError):
            logger.warning("%s is from another loopml version; the stage runs again", path)
            return None

    def require_result(self, cls: type[R], before: str) -> R:
        result = self.read_result(cls)
        if result is None:
            raise ConfigError(
                f"{self.result_path(cls.STAGE)} is missing: run `loopml {cls.STAGE}` before `loopml {before}` "
                "(or `loopml run` for the whole pipeline)"
            )
        return result

    def stage_figure(self, stage: str) -> str:
        """A stage's key figure for the run table ("" when unknown)."""
        cls = STAGE_RESULTS.get(stage)
        result = self.read_result(cls) if cls else None
        return getattr(result, "figure", "") if result else ""
