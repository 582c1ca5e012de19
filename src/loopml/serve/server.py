"""From `loopml serve` arguments to a running uvicorn server (uvloop, httptools)."""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

from loopml.config import MonitorConfig, ServeConfig
from loopml.errors import ConfigError
from loopml.serve.app import ServeSettings, create_app
from loopml.serve.runtime import ModelSource

logger = logging.getLogger(__name__)


def resolve(model: str | None, canary: str | None, project=None, overrides: dict | None = None,
            name: str | None = None) -> ServeSettings:  # fmt: skip
    """Settings from a model spec (NAME@ALIAS, models:/..., a package folder, or the project's
    champion), an optional canary ALIAS:PERCENT, loopml.yaml's `serve:` and CLI overrides."""
    base = project.config.serve.model_dump() if project else {}
    try:
        serve = ServeConfig(**{**base, **{k: v for k, v in (overrides or {}).items() if v is not None}})
    except ValueError as exc:
        raise ConfigError(f"serve settings: {exc}") from None
    default_name = name or (project.config.name if project else None)
    primary = _source(model, default_name)
    canary_source, percent = None, 0.0
    if canary:
        alias, _, share = canary.rpartition(":")
        try:
            percent = float(share)
        except ValueError:
            percent = -1
        if not alias or not 0 <= percent <= 100:
            raise ConfigError(f'--canary must look like "challenger:10" (an alias and a percent 0-100); got "{canary}"')
        canary_source = ModelSource(primary.name, f"models:/{primary.name}@{alias}", alias)
    keys = tuple(k.strip() for k in os.environ.get("LOOPML_API_KEYS", "").split(",") if k.strip())
    monitor = project.config.monitor if project else MonitorConfig()
    log_dir = str(project.root / monitor.log_dir) if project else None
    return ServeSettings(
        primary=primary, serve=serve, canary=canary_source, canary_percent=percent,
        tracking_uri=project.tracking_uri if project else os.environ.get("MLFLOW_TRACKING_URI"),
        admin_token=os.environ.get("LOOPML_ADMIN_TOKEN") or None, api_keys=keys, monitor=monitor, log_dir=log_dir,
    )  # fmt: skip


def _source(model: str | None, default_name: str | None) -> ModelSource:
    if model is None:
        if not default_name:
            raise ConfigError("no model to serve: pass --model NAME@ALIAS, models:/..., or a package folder, "
                              "or run inside a project (its champion is served)")  # fmt: skip
        return ModelSource(default_name, f"models:/{default_name}@champion", "champion")
    path = Path(model)
    if path.is_dir():
        if not (path / "loopml-model.json").is_file():
            raise ConfigError(f"{model} is a folder but not a loopml model package (no loopml-model.json)")
        return ModelSource(default_name or path.resolve().parent.name, str(path.resolve()))
    spec = model.removeprefix("models:/")
    if "@" in spec:
        name, alias = spec.split("@", 1)
        return ModelSource(name, f"models:/{name}@{alias}", alias)
    if "/" in spec and model.startswith("models:/"):
        return ModelSource(spec.split("/")[0], model)
    raise ConfigError(
        f'--model must be NAME@ALIAS, models:/NAME/VERSION, models:/NAME@ALIAS or a package folder; got "{model}"'
    )


def settings_to_json(settings: ServeSettings) -> str:
    raw = asdict(settings)
    raw["serve"] = settings.serve.model_dump()  # pydantic models inside the dataclass
    raw["monitor"] = settings.monitor.model_dump()
    return json.dumps(raw)


def settings_from_json(text: str) -> ServeSettings:
    raw = json.loads(text)
    return ServeSettings(
        primary=ModelSource(**raw["primary"]), serve=ServeConfig(**raw["serve"]),
        canary=ModelSource(**raw["canary"]) if raw["canary"] else None, canary_percent=raw["canary_percent"],
        tracking_uri=raw["tracking_uri"], admin_token=raw["admin_token"], api_keys=tuple(raw["api_keys"]),
        access_log=raw["access_log"], monitor=MonitorConfig(**raw["monitor"]), log_dir=raw["log_dir"],
    )  # fmt: skip


def configure_access_log(enabled: bool) -> None:
    """Access lines are JSON, one per request, on stderr; no payloads are ever logged."""
    log = logging.getLogger("loopml.access")
    log.propagate = False
    log.handlers[:] = []
    if enabled:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    else:
        log.setLevel(logging.WARNING)


def run(settings: ServeSettings) -> None:
    import uvicorn

    cfg = settings.serve
    configure_access_log(settings.access_log)
    common = {"host": cfg.host, "port": cfg.port, "loop": "uvloop", "http": "httptools", "log_level": "warning",
              "access_log": False, "lifespan": "on", "timeout_graceful_shutdown": 30}  # fmt: skip
    if cfg.workers == 1:
        uvicorn.run(create_app(settings), **common)
    else:  # each worker process builds its own app (and model copy) from the environment
        os.environ["LOOPML_SERVE_SETTINGS"] = settings_to_json(settings)
        uvicorn.run("loopml.serve.app:from_environment", factory=True, workers=cfg.workers, **common)
