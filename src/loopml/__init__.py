"""loopml: the machine-learning lifecycle as one closed loop.

The public Python surface, curated (everything else is internal and may change):

    from loopml import Project, validate, train, evaluate, register, run, create_app

    project = Project.find()              # the project around the working directory
    validate(project); trained = train(project); evaluate(project); optimize(project); register(project)
    runs, code = run(project)             # the whole pipeline through `dvc repro`
    app = create_app(ServeSettings(primary=ModelRef.parse("digits@champion")))   # an ASGI app

Each stage returns a typed result (`TrainResult`, `EvaluateResult`, ...). Errors meant for the caller
derive from `LoopmlError`. Heavy dependencies (torch, mlflow, dvc) load only when a function needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "Project": "loopml.project",
    "load_config": "loopml.config",
    "Config": "loopml.config",
    "ModelRef": "loopml.uri",
    "init": "loopml.scaffold",
    "validate": "loopml.data.validate",
    "train": "loopml.train.stage",
    "evaluate": "loopml.evaluate.stage",
    "optimize": "loopml.optimize.stage",
    "register": "loopml.registration",
    "run": "loopml.pipeline:repro",
    "drift": "loopml.data.pair:profile_pair",
    "compare": "loopml.data.drift",
    "create_app": "loopml.serve.app",
    "ServeSettings": "loopml.serve.settings",
    "predict_file": "loopml.serve.batch",
    "Predictor": "loopml_runtime",
    "ValidateResult": "loopml.contracts",
    "TrainResult": "loopml.contracts",
    "EvaluateResult": "loopml.contracts",
    "OptimizeResult": "loopml.contracts",
    "RegisterResult": "loopml.contracts",
    "ModelVersion": "loopml.contracts",
    "LoopmlError": "loopml.errors",
    "ConfigError": "loopml.errors",
    "DataError": "loopml.errors",
    "ModelError": "loopml.errors",
    "ModelInputError": "loopml.errors",
    "GateFailed": "loopml.errors",
    "RegistryError": "loopml.errors",
    "NotFound": "loopml.errors",
    "RegistryUnavailable": "loopml.errors",
    "PipelineError": "loopml.errors",
}
__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "EvaluateResult",
    "GateFailed",
    "LoopmlError",
    "ModelError",
    "ModelInputError",
    "ModelRef",
    "ModelVersion",
    "NotFound",
    "OptimizeResult",
    "PipelineError",
    "Predictor",
    "Project",
    "RegisterResult",
    "RegistryError",
    "RegistryUnavailable",
    "ServeSettings",
    "TrainResult",
    "ValidateResult",
    "compare",
    "create_app",
    "drift",
    "evaluate",
    "init",
    "load_config",
    "optimize",
    "predict_file",
    "register",
    "run",
    "train",
    "validate",
]

if TYPE_CHECKING:
    from loopml.config import Config, load_config
    from loopml.contracts import (
        EvaluateResult,
        ModelVersion,
        OptimizeResult,
        RegisterResult,
        TrainResult,
        ValidateResult,
    )
    from loopml.data.drift import compare
    from loopml.data.validate import validate
    from loopml.errors import (
        ConfigError,
        DataError,
        GateFailed,
        LoopmlError,
        ModelError,
        ModelInputError,
        NotFound,  # fmt: skip
        PipelineError,
        RegistryError,
        RegistryUnavailable,
    )
    from loopml.evaluate.stage import evaluate
    from loopml.optimize.stage import optimize
    from loopml.project import Project
    from loopml.registration import register
    from loopml.scaffold import init
    from loopml.serve.app import create_app
    from loopml.serve.batch import predict_file
    from loopml.serve.settings import ServeSettings
    from loopml.train.stage import train
    from loopml.uri import ModelRef
    from loopml_runtime import Predictor


def __getattr__(name: str) -> Any:
    """Exports load on first use, so `import loopml` (and `loopml --help`) stays fast."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'loopml' has no attribute {name!r}")
    import importlib

    module, _, attr = _EXPORTS[name].partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value
    return value
