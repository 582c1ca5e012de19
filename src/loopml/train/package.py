"""The packaged model: one folder with everything needed to predict, no project required.

    loopml-model.json   kind, task, feature names, classes, scaling, factory, params
    weights.pt          torch state_dict (torch models), plus a copy of the factory file
    estimator.joblib    the fitted estimator (scikit-learn-compatible models)
    schema.yaml         the pinned input schema;  environment.json: packages and device

`Predictor` loads it and predicts exactly as training evaluated; the MLflow pyfunc wrapper
and the server use it, so offline and online predictions agree.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ModelError

META_FILE = "loopml-model.json"
FORMAT_VERSION = 1


def save_package(path: Path, meta: dict[str, Any], model: Any = None, factory_file: Path | None = None,
                 extra_files: dict[str, Path] | None = None) -> None:  # fmt: skip
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    meta = {"format": FORMAT_VERSION, **meta}
    if meta["kind"] == "torch":
        import torch

        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path / "weights.pt")
        shutil.copy(factory_file, path / factory_file.name)
        meta["factory_file"] = factory_file.name
    else:
        import joblib

        joblib.dump(model, path / "estimator.joblib")
    for name, source in (extra_files or {}).items():
        if source.exists():
            shutil.copy(source, path / name)
    (path / META_FILE).write_text(json.dumps(meta, indent=2, default=_plain) + "\n")


def package_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


class Predictor:
    """Loads a packaged model and predicts on DataFrames (columns by name, extra columns ignored)."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        self.path = Path(path)
        meta_file = self.path / META_FILE
        if not meta_file.is_file():
            raise ModelError(f"{self.path}: not a loopml model package (no {META_FILE})")
        self.meta = json.loads(meta_file.read_text())
        self.features: list[str] = self.meta["features"]
        self.classes: list | None = self.meta.get("classes")
        self.task: str = self.meta["task"]
        self.kind: str = self.meta["kind"]
        self.device = device
        self._arrays_ok: bool | None = None
        self._model = self._load()

    def _load(self):
        if self.kind == "sklearn":
            import joblib

            return joblib.load(self.path / "estimator.joblib")
        import torch

        from loopml.train.factory import call_factory, load_factory

        spec = f"{self.meta['factory_file']}:{self.meta['factory'].rsplit(':', 1)[1]}"
        build = load_factory(spec, self.path)
        model = call_factory(build, spec, **self.meta["factory_kwargs"])
        state = torch.load(self.path / "weights.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model.to(self.device).eval()

    # -- inputs -------------------------------------------------------------------------
    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise ModelError(
                f"input lacks {len(missing)} feature column(s) the model needs, e.g. {missing[:5]}; "
                f"expected columns: {self.features[:8]}{' ...' if len(self.features) > 8 else ''}"
            )
        try:
            return frame[self.features].to_numpy(dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"input features must be numeric: {exc}") from None

    # -- predictions --------------------------------------------------------------------
    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if self.kind == "sklearn":
            return np.asarray(self._model.predict(frame[self.features] if self.features else frame))
        return self.predict_matrix(self.matrix(frame))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray | None:
        if self.task != "classification":
            return None
        if self.kind == "sklearn":
            if not hasattr(self._model, "predict_proba"):
                return None
            return np.asarray(self._model.predict_proba(frame[self.features]))
        return self.predict_proba_matrix(self.matrix(frame))

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """Predictions for a numeric matrix with the features in training order (the serving
        fast path: no DataFrame unless the estimator needs column names)."""
        return self.infer_matrix(x, proba=False)[0]

    def predict_proba_matrix(self, x: np.ndarray) -> np.ndarray | None:
        return self.infer_matrix(x)[1]

    def infer_matrix(self, x: np.ndarray, proba: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(predictions, class probabilities or None) — one forward pass for torch models."""
        classification = self.task == "classification"
        if self.kind == "sklearn":
            if not self._takes_arrays():
                frame = pd.DataFrame(x, columns=self.features)
                return self.predict(frame), self.predict_proba(frame) if proba else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "X does not have valid feature names"
                labels = np.asarray(self._model.predict(x))
                scores = None
                if proba and classification and hasattr(self._model, "predict_proba"):
                    scores = np.asarray(self._model.predict_proba(x))
            return labels, scores
        out = self._forward(x)
        if not classification:
            scale = self.meta["target_scale"]
            return out.reshape(-1) * scale["std"] + scale["mean"], None
        labels = np.asarray(self.classes, dtype=object if _any_str(self.classes) else None)[out.argmax(axis=1)]
        if not proba:
            return labels, None
        out = out - out.max(axis=1, keepdims=True)
        exp = np.exp(out)
        return labels, exp / exp.sum(axis=1, keepdims=True)

    def _takes_arrays(self) -> bool:
        """Does the estimator give the same answers on a bare array as on a DataFrame? (Not when
        it selects columns by name, e.g. a ColumnTransformer.) Checked once, on probe rows."""
        if self._arrays_ok is None:
            probe = np.linspace(-1.0, 1.0, 3 * len(self.features)).reshape(3, -1)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    bare = np.asarray(self._model.predict(probe))
                framed = self.predict(pd.DataFrame(probe, columns=self.features))
                self._arrays_ok = bool(np.array_equal(bare, framed))
            except Exception:
                self._arrays_ok = False
        return self._arrays_ok

    def _forward(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = np.asarray(x, dtype=np.float32)  # the dtype the weights were trained in
        scale = self.meta.get("feature_scale")
        if scale:
            x = (x - np.asarray(scale["mean"], dtype=np.float32)) / np.asarray(scale["std"], dtype=np.float32)
        with torch.inference_mode():
            out = self._model(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        return out.float().cpu().numpy()


def _any_str(values) -> bool:
    return any(isinstance(v, str) for v in values or [])


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)
