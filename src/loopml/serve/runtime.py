"""A model version loaded for serving: the packaged Predictor plus what the protocols need, and the
loader seam that finds it (the registry by default; a test hands in its own).

Requests arrive as `Rows` (a float64 matrix for all-numeric models, a `Table` of raw columns
otherwise) and predictions equal offline `Predictor.predict` on the same rows.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from loopml.errors import ModelInputError
from loopml.serve.protocols import Signature, input_datatype, v2_datatype
from loopml.serve.rows import Rows, Table
from loopml.uri import ModelRef
from loopml_runtime import InputError, Predictor

logger = logging.getLogger(__name__)


class ModelRuntime:
    def __init__(self, predictor: Predictor, name: str, version: str, source: str):
        self.predictor = predictor
        self.name = name
        self.version = version
        self.source = source
        self._truncated_reported = 0
        self.inputs = Signature(predictor.inputs)
        self.features: list[str] = predictor.features
        self.numeric = predictor.numeric
        self.task = predictor.task
        self.classes = predictor.classes
        self.accepts_missing = predictor.accepts_missing
        # Triton's platform names where one fits: an optimized ONNX variant is "onnxruntime_onnx"
        self.platform = "onnxruntime_onnx" if predictor.runtime == "onnxruntime" else f"loopml_{predictor.kind}"
        self.profile = self._reference_profile()
        # categories seen in training, per text input: other values are answered and counted
        self.known = {c: {str(v) for v in self.profile.columns[c].categories}
                      for c in self.features if self.profile and c in self.profile.columns
                      and self.profile.columns[c].kind == "categorical" and self._kind(c) == "string"}  # fmt: skip
        self.output_dtypes = {k: v.dtype for k, v in self.predict(self.sample(1)).items()}
        self.load_seconds = 0.0

    def _kind(self, name: str) -> str:
        return next(i.kind for i in self.inputs if i.name == name)

    # -- prediction ------------------------------------------------------------------------
    def predict(self, rows: Rows) -> dict[str, np.ndarray]:
        """Outputs for a batch: `predict` (labels or values) and, for classifiers, `probabilities`."""
        try:
            if isinstance(rows, Table):
                labels, proba = self.predictor.infer(rows.frame())
            else:
                labels, proba = self.predictor.infer_matrix(rows)
        except InputError as exc:
            raise ModelInputError(str(exc)) from None
        outputs = {"predict": _plain_array(labels)}
        if proba is not None:
            outputs["probabilities"] = np.asarray(proba, dtype=np.float32)
        return outputs

    def check(self, rows: Rows, nan_policy: str) -> None:
        """Shape and value checks shared by every protocol; ModelInputError for the caller."""
        if len(rows) == 0:
            raise ModelInputError("the request has no rows")
        if isinstance(rows, np.ndarray):
            if rows.ndim != 2 or rows.shape[1] != len(self.features):
                raise ModelInputError(f"expected shape [rows, {len(self.features)}] (one column per input); got "
                                      f"{list(rows.shape)}")  # fmt: skip
            numbers = [(None, rows)]
        else:
            numbers = [(name, values) for name, values in rows.columns.items() if values.dtype == np.float64]
        if nan_policy != "reject":
            return
        for name, values in numbers:
            bad = np.isinf(values) if self.accepts_missing else ~np.isfinite(values)
            if bad.any():
                where = np.argwhere(bad)[0]
                row, column = (where[0], where[1]) if name is None else (where[0], name)
                label = self.features[column] if name is None else column
                what = "infinity" if self.accepts_missing else "NaN (missing) and infinity"
                raise ModelInputError(f"row {row}, input {label!r} is {values[tuple(where)]}; {what} cannot be taken "
                                      "by this model (serve.nan_policy: reject)")  # fmt: skip

    def unseen(self, rows: Rows) -> Counter:
        """Values of text inputs this model never saw in training, per input (answered, and counted)."""
        found: Counter = Counter()
        if isinstance(rows, Table):
            for name, known in self.known.items():
                values = rows.columns[name]
                found[name] = sum(1 for v in values if v is not None and v not in known)
        return found

    def newly_truncated(self) -> int:
        """Text rows cut to max_length since the last call (the predictor counts them as it runs)."""
        cut = self.predictor.truncated_rows - self._truncated_reported
        self._truncated_reported += cut
        return cut

    def sample(self, n: int) -> Rows:
        """n harmless rows (zeros, an empty category, a short text, a date) to warm the model up with."""
        if self.numeric:
            return np.zeros((n, len(self.features)))
        columns: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            if spec.kind in ("number", "bool"):
                columns[spec.name] = np.zeros(n)
            elif spec.kind == "datetime":
                columns[spec.name] = np.asarray(["2000-01-01"] * n, dtype=object)
            else:  # a text model needs words; a category may be empty
                columns[spec.name] = np.asarray(["warm up" if spec.role == "text" else ""] * n, dtype=object)
        return Table(columns, n)

    def warm_up(self, batch_size: int) -> None:
        """Run the model once per batch shape it will see most, before reporting ready."""
        for rows in sorted({1, batch_size}):
            self.predict(self.sample(rows))

    def _reference_profile(self):
        """The training data's profile shipped in the package, or None for packages without one."""
        import json

        from loopml.data.profile import Profile

        path = Path(self.predictor.path) / "reference_profile.json"
        return Profile.from_dict(json.loads(path.read_text())) if path.is_file() else None

    # -- metadata --------------------------------------------------------------------------
    def output_specs(self) -> list[dict[str, Any]]:
        specs = []
        for name, dtype in self.output_dtypes.items():
            shape = [-1] if name == "predict" else [-1, len(self.classes or [])]
            specs.append({"name": name, "datatype": v2_datatype(dtype), "shape": shape})
        return specs

    def metadata(self, versions: list[str]) -> dict[str, Any]:
        per_input = [{"name": i.name, "datatype": input_datatype(i), "shape": [-1],
                      "parameters": {"kind": i.kind, "role": i.role or i.kind}} for i in self.inputs]  # fmt: skip
        if self.numeric:  # one [rows, inputs] tensor, or one tensor per input
            kinds = {input_datatype(i) for i in self.inputs}
            inputs = [{"name": "input", "datatype": kinds.pop() if len(kinds) == 1 else "FP64",
                       "shape": [-1, len(self.features)], "parameters": {"feature_names": self.features}}]  # fmt: skip
        else:
            inputs = per_input
        return {"name": self.name, "versions": versions, "platform": self.platform,
                "inputs": inputs, "outputs": self.output_specs(),
                "parameters": {"columns": per_input, "accepts_missing": self.accepts_missing}}  # fmt: skip


class ModelLoader(Protocol):
    """Finds and loads model versions for the server (the seam tests replace)."""

    def resolve(self, ref: ModelRef) -> str:
        """The version `ref` points at now ("local" for a package folder)."""

    def load(self, ref: ModelRef, version: str) -> ModelRuntime:
        """The runtime of that version, loaded and ready to warm up."""


class RegistryLoader:
    """The default loader: package folders from disk, everything else from the MLflow registry."""

    def __init__(self, tracking_uri: str | None):
        self.tracking_uri = tracking_uri

    def _registry(self, ref: ModelRef):
        import os

        from loopml.registry import Registry

        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            from loopml.errors import ConfigError

            raise ConfigError(f"{ref.uri} lives in a registry, but no tracking store is set: run inside the project, "
                              "or set MLFLOW_TRACKING_URI")  # fmt: skip
        return Registry(uri, ref.name)

    def resolve(self, ref: ModelRef) -> str:
        return "local" if not ref.in_registry else self._registry(ref).resolve(ref)

    def load(self, ref: ModelRef, version: str) -> ModelRuntime:
        started = time.perf_counter()
        device = _best_device()
        if ref.in_registry:
            predictor = self._registry(ref).load(version, device=device)
        else:
            predictor = Predictor(ref.path, device=device)
        runtime = ModelRuntime(predictor, ref.name, version, ref.uri)
        runtime.load_seconds = time.perf_counter() - started
        return runtime


def _plain_array(values) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind == "O" and all(isinstance(v, str) for v in array.ravel()[:64]):
        return array.astype(str)
    return array


def _best_device() -> str:
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
