"""Turning `model:` in loopml.yaml into an object: a factory function from a file, or a class."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from loopml.config import ModelConfig
from loopml.errors import ModelError


def load_factory(spec: str, root: Path):
    """`"model.py:build"` → the function, imported from the project folder."""
    file_name, func_name = spec.rsplit(":", 1)
    path = (root / file_name).resolve()
    if not path.is_file():
        raise ModelError(f'model.factory: no file {path}; fix model.factory in loopml.yaml (e.g. "model.py:build")')
    module_name = f"loopml_user_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise ModelError(f"model.factory: importing {path.name} failed: {type(exc).__name__}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        available = [n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_")]
        raise ModelError(
            f"model.factory: {path.name} has no function {func_name!r}; functions there: {available or 'none'}"
        )
    return func


def call_factory(func, spec: str, **kwargs: Any):
    """Call a user factory, passing only the arguments it accepts; its errors become ModelError."""
    params = inspect.signature(func).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = kwargs if takes_all else {k: v for k, v in kwargs.items() if k in params}
    try:
        return func(**accepted)
    except Exception as exc:
        raise ModelError(f"model.factory {spec} raised {type(exc).__name__}: {exc}") from exc


def build_estimator(cfg: ModelConfig, root: Path):
    """A fresh, unfitted scikit-learn-compatible estimator (optionally behind a StandardScaler)."""
    if cfg.factory:
        estimator = call_factory(load_factory(cfg.factory, root), cfg.factory, **cfg.params)
    else:
        cls = import_dotted(cfg.estimator)
        try:
            estimator = cls(**cfg.params)
        except TypeError as exc:
            raise ModelError(f"model.params do not fit {cfg.estimator}: {exc}") from None
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
        raise ModelError(f"model: {type(estimator).__name__} has no fit/predict; it is not an estimator")
    if cfg.standardize:
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        estimator = make_pipeline(StandardScaler(), estimator)
    return estimator


def import_dotted(path: str):
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ModelError(f'model.estimator must be a dotted path like "sklearn.svm.SVC"; got "{path}"')
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"model.estimator: cannot import {module_name} ({exc}); install it (e.g. `pip install loopml[boost]` "
            "for xgboost/lightgbm) or fix the path"
        ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ModelError(f"model.estimator: {module_name} has no {attr!r}") from None
