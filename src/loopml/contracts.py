"""What the stages hand each other: frozen result types, their one JSON round trip, the tag names.

Each stage returns one of these; the CLI prints it, `--json` dumps it, DVC tracks the file it is
written to (`outputs/<stage>.json`), and the next stage (or the loop) reads it back typed:

    write_json(path, result)            # any result below, nested dataclasses included
    read_json(path, TrainResult)        # -> TrainResult, checked field by field

Registry tags are named here (`Tag`), so no module spells "loopml.data_digest" itself.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")


class Tag:
    """Names of the tags loopml writes on MLflow runs and model versions."""

    PREFIX = "loopml."
    STAGE = "loopml.stage"
    DATA_DIGEST = "loopml.data_digest"
    GIT_COMMIT = "loopml.git_commit"
    DEVICE = "loopml.device"
    VARIANT = "loopml.variant"  # "base", or the optimize variant registered (onnx_int8, prune_50, ...)
    RUNTIME = "loopml.runtime"  # what runs the registered model: torch, sklearn, onnxruntime
    OPSET = "loopml.onnx_opset"
    AGREEMENT = "loopml.agreement"  # share of test rows the variant labels as the trained model does
    GATES = "loopml.gates"
    METRIC = "loopml.metric."  # + metric name, on versions: the evaluated figures
    REGISTERED = "loopml.registered"
    VERSION = "loopml.version"
    GATES_PASSED = "loopml.gates_passed"
    BEATS_CHAMPION = "loopml.beats_champion"
    PREVIOUS_CHAMPION = "loopml.previous_champion"
    ROLLED_BACK = "loopml.rolled_back"
    REJECTED = "loopml.rejected"
    CANARY = "loopml.canary"
    MONITOR = "loopml.monitor"
    LOOP_DECISION = "loopml.loop.decision"
    DECISION = "loopml.decision"
    REASON = "loopml.reason"
    EVIDENCE = "loopml.evidence"
    SINCE = "loopml.since"
    DATASET_DRIFT = "loopml.dataset_drift"
    DIGEST_INPUT = "loopml.digest"

    @staticmethod
    def moved_by(alias: str) -> str:
        """Who moved `alias` onto a version, when and why (a JSON stamp)."""
        return f"loopml.{alias}_by"


# -- stage results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One failed data check: the column, the check, how many rows, a few examples."""

    column: str
    check: str
    rows: int
    examples: list[str]


@dataclass(frozen=True)
class DataWarning:
    """Something a colleague would point out about the data; `setting` silences it."""

    column: str | None
    kind: str  # id_like, constant, empty, mixed_types, date_as_text, extra_column, duplicates, ...
    message: str
    setting: str


@dataclass(frozen=True)
class ValidateResult:
    STAGE: ClassVar[str] = "validate"
    seconds: float
    figure: str
    rows: int
    columns: int
    schema: str
    schema_pinned_now: bool
    data_digest: str
    warnings: list[DataWarning] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)  # column -> role (numeric, categorical, ...)


@dataclass(frozen=True)
class TrainResult:
    STAGE: ClassVar[str] = "train"
    seconds: float
    figure: str
    run_id: str
    model_uri: str
    data_digest: str
    git_commit: str
    device: str
    estimator: str  # what was fitted, e.g. "HistGradientBoostingClassifier" or "model.py:build"
    params: dict[str, Any] = field(default_factory=dict)
    epochs_run: int | None = None  # torch models only, from here on
    best_epoch: int | None = None
    stopped_early: bool | None = None
    resumed_from_epoch: int | None = None
    batch_size: int | None = None
    precision: str | None = None
    samples_per_s: float | None = None
    fit_seconds: float | None = None  # scikit-learn models
    history: list[dict[str, float]] = field(default_factory=list)
    world_size: int | None = None  # torch: processes that trained it (DDP)


@dataclass(frozen=True)
class GateResult:
    metric: str
    kind: str  # "threshold", "vs_champion" or "vs_baseline"
    rule: str  # e.g. ">= 0.95"
    value: float | None  # the metric (threshold) or the difference (vs_champion, vs_baseline)
    passed: bool
    note: str = ""


@dataclass(frozen=True)
class Rival:
    """Another model's figures on the same test rows: the champion, or the baseline."""

    name: str  # "v3" for a champion, "most_frequent" / "mean" for the baseline
    metrics: dict[str, float]


@dataclass(frozen=True)
class EvaluateResult:
    STAGE: ClassVar[str] = "evaluate"
    seconds: float
    figure: str
    report: str
    metrics: dict[str, float]
    gates: list[GateResult]
    registrable: bool  # every threshold (and baseline) gate passed
    becomes_champion: bool  # ... and every champion gate too
    champion: Rival | None = None
    baseline: Rival | None = None

    @property
    def failed(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]


@dataclass(frozen=True)
class RegisterResult:
    STAGE: ClassVar[str] = "register"
    seconds: float
    figure: str
    version: str
    aliases: list[str]
    champion: bool
    reused: bool = False  # this run was registered before: its version is reused


@dataclass(frozen=True)
class VariantReport:
    """One optimize variant as judged: its figures on the test rows, and why it was kept or not."""

    name: str  # "base" for the trained model, else e.g. "onnx_int8", "prune_50"
    runtime: str  # torch, sklearn or onnxruntime
    status: str  # chosen, passed, rejected (built, but failed a gate or the agreement) or failed (not built)
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)  # quality, latency (batch 1 and batch), size
    agreement: float | None = None  # share of test rows labelled as the original labels them
    max_delta: float | None = None  # largest |Δ probability| on rows labelled alike (regression: |Δ output| / std)
    objective: float | None = None  # the figure the choice minimizes (throughput: its negative)
    pareto: bool = False  # no other built variant is both better on the objective and on quality
    details: dict[str, str] = field(default_factory=dict)  # exporter, opset, ratio, rank, seconds to build


@dataclass(frozen=True)
class OptimizeResult:
    STAGE: ClassVar[str] = "optimize"
    seconds: float
    figure: str
    run_id: str  # the training run the variants were made from
    chosen: str  # "base" when the original stays
    model_uri: str  # what `register` registers: the chosen variant's logged model
    objective: str
    threads: int
    batch_size: int
    report: str
    cpu_flags: list[str] = field(default_factory=list)  # avx512_vnni, amx_int8, ...: what int8 speed depends on
    variants: list[VariantReport] = field(default_factory=list)

    @property
    def choice(self) -> VariantReport | None:
        return next((v for v in self.variants if v.name == self.chosen), None)


@dataclass(frozen=True)
class AliasMove:
    """Who moved an alias onto a version, when and why."""

    who: str
    when: str
    why: str


@dataclass(frozen=True)
class ModelVersion:
    """A registered version as loopml reads it: aliases, lineage and the tags loopml wrote."""

    name: str
    version: str
    run_id: str | None
    source: str
    created: str
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return {k.removeprefix(Tag.METRIC): float(v) for k, v in self.tags.items() if k.startswith(Tag.METRIC)}

    @property
    def data_digest(self) -> str:
        return self.tags.get(Tag.DATA_DIGEST, "")

    @property
    def previous_champion(self) -> str | None:
        return self.tags.get(Tag.PREVIOUS_CHAMPION) or None

    def moved(self, alias: str) -> AliasMove | None:
        raw = self.tags.get(Tag.moved_by(alias))
        if not raw:
            return None
        try:
            return from_plain(AliasMove, json.loads(raw))
        except (ValueError, TypeError):
            return None

    def with_aliases(self, aliases: list[str]) -> ModelVersion:
        return dataclasses.replace(self, aliases=sorted(aliases))


STAGE_RESULTS: dict[str, type] = {cls.STAGE: cls for cls in (ValidateResult, TrainResult, EvaluateResult,
                                                                OptimizeResult, RegisterResult)}  # fmt: skip


# -- one JSON round trip ------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """JSON-ready: dataclasses as dicts, NumPy scalars and arrays as Python, paths as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    if hasattr(value, "tolist") and callable(value.tolist):  # NumPy scalars and arrays
        return plain(value.tolist())
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def to_json(value: Any) -> str:
    return json.dumps(plain(value), indent=2) + "\n"


def write_json(path: Path, value: Any) -> None:
    """Write atomically (a temporary file renamed into place): a reader never sees half a file."""
    from loopml.fileio import write_text_atomic

    write_text_atomic(path, to_json(value))


def read_json(path: Path, cls: type[T]) -> T:
    return from_plain(cls, json.loads(path.read_text()))


def from_plain(cls: Any, data: Any) -> Any:
    """Build `cls` (a dataclass, or a typing form of them) from JSON data, field by field."""
    origin = typing.get_origin(cls)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(cls) if a is not type(None)]
        if data is None:
            return None
        for option in options:
            try:
                return from_plain(option, data)
            except (TypeError, ValueError, KeyError):
                continue
        raise ValueError(f"{data!r} fits none of {options}")
    if origin is list:
        (item,) = typing.get_args(cls) or (Any,)
        return [from_plain(item, v) for v in data]
    if origin is dict:
        _, item = typing.get_args(cls) or (Any, Any)
        return {k: from_plain(item, v) for k, v in data.items()}
    if dataclasses.is_dataclass(cls):
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__} needs an object; got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]  # fmt: skip
        if missing:
            raise KeyError(f"{cls.__name__} lacks {missing}")
        return cls(**{k: from_plain(hints[k], v) for k, v in data.items() if k in known})
    if cls is float and isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if cls in (int, str, bool) and not isinstance(data, cls):
        raise TypeError(f"expected {cls.__name__}; got {data!r}")
    return data
