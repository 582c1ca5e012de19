"""A loopml project on disk: its root, its validated config, and where every stage writes.

The layout is a contract shared by the stages, `dvc.yaml` and the tests:

    loopml.yaml            the config (committed)
    schema.yaml            the pinned pandera schema (committed)
    data/raw/...           raw data (DVC-tracked; never modified by loopml)
    data/traffic/          labelled live traffic the loop adds (DVC-tracked with `dvc add`)
    outputs/<stage>.json   each stage's result: seconds, key figure, details (DVC outputs)
    outputs/model/         the packaged model the train stage produced
    reports/               evaluation.html and metrics.json
    reports/loop.log       every decision of `loopml monitor --watch`, for people
    .loopml/               local state: mlflow.db, artifacts/, checkpoints/, inference/ (git-ignored)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from loopml.config import CONFIG_FILE, Config, load_config
from loopml.errors import ConfigError

STAGES = ("prepare", "validate", "train", "evaluate", "register")


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
        """Secrets from `.env` become environment variables (the real environment wins)."""
        env_file = self.root / ".env"
        if env_file.is_file():
            from dotenv import load_dotenv

            load_dotenv(env_file, override=False)

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

    def write_result(self, stage: str, result: dict[str, Any]) -> None:
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.result_path(stage).write_text(json.dumps(result, indent=2, default=str) + "\n")

    def read_result(self, stage: str) -> dict[str, Any] | None:
        path = self.result_path(stage)
        return json.loads(path.read_text()) if path.is_file() else None

    def require_result(self, stage: str, before: str) -> dict[str, Any]:
        result = self.read_result(stage)
        if result is None:
            raise ConfigError(
                f"{self.result_path(stage)} is missing: run `loopml {stage}` before `loopml {before}` "
                "(or `loopml run` for the whole pipeline)"
            )
        return result
