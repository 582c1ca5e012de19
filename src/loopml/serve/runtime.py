"""A model version loaded for serving: the packaged Predictor plus what the protocols need.

Every request is reduced to one canonical form — a float64 matrix with the model's features
in training order — so the batcher can stack requests from any protocol, and predictions
equal offline `Predictor.predict` on the same rows (columns are restored to their training
dtypes before the model sees them).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ModelError

logger = logging.getLogger(__name__)

V2_DTYPES = {np.dtype("bool"): "BOOL", np.dtype("int8"): "INT8", np.dtype("int16"): "INT16",
             np.dtype("int32"): "INT32", np.dtype("int64"): "INT64", np.dtype("uint8"): "UINT8",
             np.dtype("uint16"): "UINT16", np.dtype("uint32"): "UINT32", np.dtype("uint64"): "UINT64",
             np.dtype("float16"): "FP16", np.dtype("float32"): "FP32", np.dtype("float64"): "FP64"}  # fmt: skip


@dataclass
class ModelSource:
    """Where a served model comes from: a registry alias (re-resolved on reload) or a fixed URI/path."""

    name: str
    uri: str  # models:/name@alias, models:/name/3, or a package folder
    alias: str | None = None


class ModelRuntime:
    def __init__(self, predictor, name: str, version: str, source: str):
        self.predictor = predictor
        self.name = name
        self.version = version
        self.source = source
        self.features: list[str] = predictor.features
        self.n_features = len(self.features)
        self.task = predictor.task
        self.classes = predictor.classes
        dtypes = predictor.meta.get("feature_dtypes") or {}
        self.feature_dtypes = {c: np.dtype(dtypes.get(c, "float64")) for c in self.features}
        self.needs_cast = any(t != np.float64 for t in self.feature_dtypes.values())
        kinds = {t.kind for t in self.feature_dtypes.values()}
        dtypes = set(self.feature_dtypes.values())
        self.input_datatype = (
            "INT64" if kinds and kinds <= {"i", "u"} else "FP32" if dtypes == {np.dtype("float32")} else "FP64"
        )
        sample = self.predict(np.zeros((1, self.n_features)))
        self.output_dtypes = {k: v.dtype for k, v in sample.items()}
        self.load_seconds = 0.0

    @classmethod
    def load(cls, source: ModelSource, version: str, device: str | None = None) -> ModelRuntime:
        from loopml.train.package import Predictor

        started = time.perf_counter()
        if Path(source.uri).is_dir():
            predictor = Predictor(source.uri, device=device or _best_device())
        else:
            from loopml import registry

            # An alias may move while we load: load the version it pointed at when resolved.
            uri = f"models:/{source.name}/{version}" if source.alias else source.uri
            predictor = registry.load_predictor(uri)
            if device or _best_device() != "cpu":
                predictor = Predictor(predictor.path, device=device or _best_device())
        runtime = cls(predictor, source.name, version, source.uri)
        runtime.load_seconds = time.perf_counter() - started
        return runtime

    # -- prediction ------------------------------------------------------------------------
    def predict(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for a batch: `predict` (labels or values) and, for classifiers, `probabilities`."""
        if self.needs_cast:  # integer or float32 features: give the model its training dtypes
            frame = pd.DataFrame(matrix, columns=self.features).astype(self.feature_dtypes)
            outputs = {"predict": _plain_array(self.predictor.predict(frame))}
            proba = self.predictor.predict_proba(frame) if self.task == "classification" else None
        else:
            labels, proba = self.predictor.infer_matrix(matrix)
            outputs = {"predict": _plain_array(labels)}
        if proba is not None:
            outputs["probabilities"] = np.asarray(proba, dtype=np.float32)
        return outputs

    def warm_up(self, batch_size: int) -> None:
        """Run the model once per batch shape it will see most, before reporting ready."""
        for rows in sorted({1, batch_size}):
            self.predict(np.zeros((rows, self.n_features)))

    def reference_profile(self):
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
        return {
            "name": self.name,
            "versions": versions,
            "platform": f"loopml_{self.predictor.kind}",
            "inputs": [
                {
                    "name": "input",
                    "datatype": self.input_datatype,
                    "shape": [-1, self.n_features],
                    "parameters": {"feature_names": self.features},
                }
            ],  # fmt: skip
            "outputs": self.output_specs(),
        }


def resolve_version(source: ModelSource, tracking_uri: str | None) -> str:
    """The registry version a source points at now (a package folder is "local")."""
    if not source.uri.startswith("models:/"):
        return "local"
    from loopml import registry

    return registry.resolve_version(source.uri, tracking_uri)


def v2_datatype(dtype: np.dtype) -> str:
    if dtype.kind in ("U", "S", "O"):
        return "BYTES"
    return V2_DTYPES.get(np.dtype(dtype), "FP64")


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


def check_matrix(matrix: np.ndarray, n_features: int, nan_policy: str) -> None:
    """Shape and value checks shared by every protocol; raise ModelError for the caller."""
    if matrix.ndim != 2 or matrix.shape[1] != n_features:
        raise ModelError(f"expected shape [rows, {n_features}] (one column per feature); got {list(matrix.shape)}")
    if matrix.shape[0] == 0:
        raise ModelError("the request has no rows")
    if nan_policy == "reject" and not np.isfinite(matrix).all():
        row, column = np.argwhere(~np.isfinite(matrix))[0]
        raise ModelError(
            f"row {row}, feature {column} is {matrix[row, column]}; NaN and infinity are rejected "
            "(serve.nan_policy: reject)"
        )
