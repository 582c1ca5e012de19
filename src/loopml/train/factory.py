"""Turning `model:` in loopml.yaml into an object: a factory function from a project file, or a class.

What runs is stated (README, "Security"): `model.factory` names a Python file *inside the project*
(outside only with `model.allow_external_code: true`), `model.estimator` names a *class* with fit
and predict from an importable module (not any callable: `os.system` is refused), and both come from
loopml.yaml alone, never from the environment (see `config.CODE_KEYS`).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any

from loopml.config import ModelConfig
from loopml.errors import ModelError
from loopml_runtime.predictor import import_user_file


def factory_path(spec: str, root: Path, allow_external: bool = False) -> Path:
    """The file `"model.py:build"` names, checked to lie inside the project."""
    file_name = spec.rsplit(":", 1)[0]
    path = (root / file_name).resolve()
    if not allow_external and not path.is_relative_to(root.resolve()):
        raise ModelError(
            f"model.factory: {path} lies outside the project {root}; loopml runs code from the project only. "
            "Copy the file into the project, or set model.allow_external_code: true in loopml.yaml to trust it"
        )
    if not path.is_file():
        raise ModelError(f'model.factory: no file {path}; fix model.factory in loopml.yaml (e.g. "model.py:build")')
    return path


def load_factory(spec: str, root: Path, allow_external: bool = False):
    """`"model.py:build"` -> the function, imported from the project folder."""
    path = factory_path(spec, root, allow_external)
    func_name = spec.rsplit(":", 1)[1]
    try:
        module = import_user_file(path)
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
    """A fresh, unfitted scikit-learn-compatible estimator (preprocessing is added by the stage)."""
    if cfg.factory:
        estimator = call_factory(load_factory(cfg.factory, root, cfg.allow_external_code), cfg.factory, **cfg.params)
        what = f"model.factory {cfg.factory} returned {type(estimator).__name__}"
    else:
        cls = estimator_class(cfg.estimator)
        try:
            estimator = cls(**cfg.params)
        except TypeError as exc:
            raise ModelError(f"model.params do not fit {cfg.estimator}: {exc}") from None
        what = f"model.estimator {cfg.estimator}"
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
        raise ModelError(f"{what}, which has no fit/predict: it is not an estimator")
    return estimator


def estimator_class(path: str) -> type:
    """The class `path` names; it must be a class with fit and predict (a scikit-learn estimator)."""
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
    found = getattr(module, attr, None)
    if found is None:
        raise ModelError(f"model.estimator: {module_name} has no {attr!r}")
    if not inspect.isclass(found) or not (hasattr(found, "fit") and hasattr(found, "predict")):
        raise ModelError(
            f"model.estimator: {path} is {'a ' + type(found).__name__ if not inspect.isclass(found) else 'a class'} "
            "without fit and predict; it must name an estimator class (e.g. sklearn.linear_model.LogisticRegression)"
        )
    return found


def distribution_of(estimator: object) -> tuple[str, ...]:
    """pip distributions the estimator's class comes from, beyond scikit-learn (for requirements)."""
    root = type(estimator).__module__.split(".")[0]
    return {"xgboost": ("xgboost",), "lightgbm": ("lightgbm",), "catboost": ("catboost",)}.get(root, ())
