"""`loopml.yaml` as pydantic models, with one loader that explains every mistake.

Every error names the file, the key path, what was expected and what was found, and for
an unknown key suggests the closest valid one. `LOOPML_<SECTION>__<KEY>=value` environment
variables override the file (values are parsed as YAML, so `LOOPML_TRAIN__EPOCHS=3` is an int).
Secrets never belong here: they come from the environment or a `.env` file.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loopml.errors import ConfigError

CONFIG_FILE = "loopml.yaml"
ENV_PREFIX = "LOOPML_"

# The metrics `loopml evaluate` computes, by task: the names gates may use.
METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc"),
    "regression": ("mae", "rmse", "r2"),
}
SYSTEM_METRICS = ("latency_p50_ms", "latency_p95_ms", "size_mb")
# Which way is better, for the default champion comparison and for reports.
HIGHER_IS_BETTER = {"accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "r2"}
PRIMARY_METRIC = {"classification": "accuracy", "regression": "rmse"}

GATE_PATTERN = re.compile(r"^\s*(>=|<=|>|<|==)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")
SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_?key|access_?key)", re.IGNORECASE)


class Section(BaseModel):
    """A config section: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid")


class DataConfig(Section):
    path: str  # the raw dataset (Parquet or CSV, local or any fsspec URL); loopml never writes it
    target: str  # the column to predict
    test_size: float = Field(0.2, gt=0, lt=1)  # share of rows held out for evaluation
    seed: int = 42  # seeds the train/test split, so every stage sees the same split
    schema_file: str = "schema.yaml"  # where `validate` pins the inferred pandera schema
    # Labelled live traffic the loop adds (Parquet files, DVC-tracked): appended to `path` when
    # validating and training, so a retrained model learns from what production now looks like.
    traffic: str = "data/traffic"
    # Extra checks per column, each like ">= 0", "between 0 and 16", "in [a, b]", "not null",
    # "unique", "matches ^[A-Z]+$".
    rules: dict[str, list[str]] = {}


class ModelConfig(Section):
    type: Literal["torch", "sklearn"]
    factory: str | None = None  # "model.py:build": a function returning an nn.Module or estimator
    estimator: str | None = None  # or the dotted path of a scikit-learn-compatible class
    params: dict[str, Any] = {}  # keyword arguments for the factory or the estimator
    standardize: bool = True  # scale features to zero mean / unit variance (fit on train only)

    @field_validator("factory")
    @classmethod
    def _factory_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^:]+\.py:[A-Za-z_]\w*", value):
            raise ValueError(f'must look like "model.py:build" (a file and a function); got "{value}"')
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if self.type == "torch" and not self.factory:
            raise ValueError('a torch model needs factory: "model.py:build"')
        if self.type == "sklearn" and bool(self.factory) == bool(self.estimator):
            raise ValueError(
                "a sklearn model needs exactly one of estimator "
                '(e.g. "sklearn.ensemble.RandomForestClassifier") or factory ("model.py:build")'
            )
        return self


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)  # upper bound; early stopping may end sooner
    batch_size: int | Literal["auto"] = "auto"  # auto: largest that fits on a GPU, 64 on CPU
    lr: float = Field(1e-3, gt=0)  # AdamW learning rate
    weight_decay: float = Field(0.0, ge=0)
    device: str = "auto"  # auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where the GPU has it
    seed: int = 42  # seeds weights, shuffling and dropout
    patience: int = Field(3, ge=0)  # early stopping: epochs without val-loss gain; 0 disables
    val_size: float = Field(0.1, gt=0, lt=1)  # share of the training rows used for early stopping

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f'must be a positive integer or "auto"; got {value}')
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f'must be one of auto, cpu, cuda, cuda:N, mps; got "{value}"')
        return value


class GatesConfig(Section):
    """Absolute thresholds on metrics plus comparisons with the current champion.

    In `loopml.yaml` both live flat in `gates:`, e.g. `{accuracy: ">= 0.95",
    vs_champion: {accuracy: ">= -0.005"}}`; `vs_champion` thresholds apply to
    candidate minus champion.
    """

    thresholds: dict[str, str] = {}
    vs_champion: dict[str, str] = {}

    @model_validator(mode="before")
    @classmethod
    def _split(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or "thresholds" in raw:
            return raw
        raw = dict(raw)
        vs = raw.pop("vs_champion", {}) or {}
        return {"thresholds": raw, "vs_champion": vs}

    @field_validator("thresholds", "vs_champion")
    @classmethod
    def _gate_shape(cls, gates: dict[str, str]) -> dict[str, str]:
        for metric, expr in gates.items():
            if not isinstance(expr, str) or not GATE_PATTERN.match(expr):
                raise ValueError(f'{metric} must look like ">= 0.95"; got "{expr}"')
        return gates


class ServeConfig(Section):
    host: str = "127.0.0.1"  # loopback unless told otherwise: exposing a model is a decision
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1)  # uvicorn worker processes, each with its own model copy
    max_batch_size: int = Field(64, ge=1)  # rows per model call; a request's own rows count
    max_delay_ms: float = Field(2.0, ge=0)  # a batch leaves this long after its first request
    max_queue: int = Field(4096, ge=1)  # queued rows before 503 + Retry-After
    timeout_ms: float = Field(10_000, gt=0)  # a request still unanswered then gets 504
    max_body_mb: float = Field(16, gt=0)  # larger bodies get 413
    nan_policy: Literal["reject", "allow"] = "reject"  # reject: NaN/inf input is a 400
    registry_poll_s: float = Field(30, ge=0)  # how often to look for a new champion; 0 disables


class MonitorConfig(Section):
    window: int = Field(5000, ge=10)  # rows of recent traffic compared with the reference profile
    every_s: float = Field(10.0, gt=0)  # how often the server recomputes live drift (off the hot path)
    psi_warn: float = Field(0.1, gt=0)
    psi_alert: float = Field(0.25, gt=0)  # a column drifted at this PSI ...
    wasserstein: float = Field(0.1, gt=0)  # ... or this Wasserstein distance / reference std (numeric)
    jensen_shannon: float = Field(0.1, gt=0)  # ... or this Jensen-Shannon distance (categorical)
    drift_share: float = Field(0.5, gt=0, le=1)  # dataset drift when this share of columns drifted
    log: bool = True  # keep an inference log (Parquet; ids, time, inputs, outputs, version; no secrets)
    log_dir: str = ".loopml/inference"  # relative to the project
    log_keep_files: int = Field(200, ge=1)  # oldest log files are deleted past this many


class LoopConfig(Section):
    """`loopml monitor --watch`: when to retrain, and how a challenger earns the champion alias."""

    server: str = "http://127.0.0.1:8000"  # the loopml server canaries run on (admin token: LOOPML_ADMIN_TOKEN)
    check_every_s: float = Field(60, gt=0)  # how often the watcher reads the inference log
    since: str = "1h"  # traffic older than this is not looked at ("30m", "6h", "2d")
    min_rows: int = Field(500, ge=1)  # rows of traffic before drift may trigger a retrain
    on_drift: bool = True  # dataset drift of the champion's traffic triggers a retrain
    max_metric_drop: float | None = Field(0.05, ge=0)  # live accuracy this far below the evaluated one
    # (regression: live MAE this share above the evaluated one) triggers a retrain; null: never
    min_labelled: int = Field(200, ge=1)  # labelled traffic rows needed to judge performance or retrain
    canary_percent: float = Field(20, gt=0, le=100)  # share of traffic the challenger gets
    canary_min_labelled: int = Field(100, ge=1)  # labelled rows per version before the canary is judged
    canary_max_wait_s: float = Field(1800, gt=0)  # still undecided then: roll back
    promote_margin: float = 0.0  # challenger minus champion live accuracy (regression: MAE gain) needed
    max_latency_ratio: float = Field(1.5, gt=0)  # challenger p95 latency / champion p95 latency, at most
    max_error_rate: float = Field(0.01, ge=0, le=1)  # challenger 5xx share above the champion's, at most
    cooldown_s: float = Field(600, ge=0)  # after a decision, no new retrain for this long

    @field_validator("since")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


def parse_duration(text: str) -> float:
    """Seconds in "90s", "30m", "6h", "2d" (a bare number is seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not match:
        raise ValueError(f'must be a duration like "90s", "30m", "6h" or "2d"; got "{text}"')
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


class Config(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # the registered model's name
    task: Literal["classification", "regression"]
    data: DataConfig
    model: ModelConfig
    train: TrainConfig = TrainConfig()
    gates: GatesConfig = GatesConfig()
    serve: ServeConfig = ServeConfig()
    monitor: MonitorConfig = MonitorConfig()
    loop: LoopConfig = LoopConfig()

    @model_validator(mode="after")
    def _gate_metrics_exist(self) -> Config:
        known = METRICS[self.task] + SYSTEM_METRICS
        for group, gates in (("gates", self.gates.thresholds), ("gates.vs_champion", self.gates.vs_champion)):
            for metric in gates:
                if metric not in known:
                    hint = _closest(metric, known)
                    raise ValueError(
                        f"{group}.{metric}: unknown metric for a {self.task} task"
                        f"{hint}; expected one of {', '.join(known)}"
                    )
        return self


def load_config(path: Path, environ: dict[str, str] | None = None) -> Config:
    """Read, override from the environment, and validate a project file."""
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; run `loopml init DIR` to create a project, or cd into one") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: not valid YAML ({problem}); fix the syntax") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (name:, task:, ...); got {type(raw).__name__}")
    _refuse_secrets(raw, path)
    _apply_env_overrides(raw, environ)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path)) from None


def _apply_env_overrides(raw: dict[str, Any], environ: dict[str, str]) -> None:
    """Apply `LOOPML_SECTION__KEY=value`; variables naming no config key are left alone."""
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        if keys[0] not in Config.model_fields:
            continue  # e.g. LOOPML_ADMIN_TOKEN: not a config key
        node = raw
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(keys[:-1])} is not a section; cannot override it")
        node[keys[-1]] = _parse_env_value(value)


def _parse_env_value(value: str) -> Any:
    """YAML typing (`3` is an int, `[a, b]` a list); text YAML cannot read stays text (`>= 0.9`)."""
    try:
        return yaml.safe_load(value) if value.strip() else value
    except yaml.YAMLError:
        return value


def _refuse_secrets(raw: Any, path: Path, prefix: str = "") -> None:
    if not isinstance(raw, dict):
        return
    for key, value in raw.items():
        where = f"{prefix}{key}"
        if isinstance(key, str) and SECRET_KEY.search(key):
            raise ConfigError(
                f"{path}: {where}: secrets do not belong in loopml.yaml (it is committed and logged); "
                "put them in the environment or a .env file"
            )
        if where.startswith("model.params") or where.startswith("data.rules"):
            continue  # user-defined names; a column may well be called "token_count"
        _refuse_secrets(value, path, f"{where}.")


def _explain(exc: ValidationError, path: Path) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"] if not str(part).startswith("function-")]
        # pydantic reports union members as extra path parts ("int", "literal['auto']"): drop them.
        loc = [part for part in loc if not re.match(r"^(int|str|float|literal\[|constrained)", part)]
        key = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            hint = _closest(loc[-1], list(parent.model_fields)) if parent else ""
            lines.append(f"{key}: unknown key{hint}")
        elif err["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) or got is None or str(got) in msg else f"; got {got!r}"
            lines.append(f"{key}: {msg}{shown}")
    unique = list(dict.fromkeys(lines))
    return f"{path}: " + ("\n  ".join(unique) if len(unique) == 1 else "\n  " + "\n  ".join(unique))


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _closest(word: str, options: list[str] | tuple[str, ...]) -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f' (did you mean "{match[0]}"?)' if match else ""
