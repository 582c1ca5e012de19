"""What `loopml serve` resolved: the model references, serving knobs, monitoring and secrets, as one
validated pydantic model (`model_dump_json` / `model_validate_json` is its round trip)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from loopml.config import MonitorConfig, Percent, ServeConfig, canary_percent
from loopml.errors import ConfigError
from loopml.uri import NAME, ModelRef


class ServeSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    primary: ModelRef
    serve: ServeConfig = ServeConfig()
    canary: ModelRef | None = None
    canary_percent: Percent = 0.0
    tracking_uri: str | None = None  # where aliases are re-resolved on reload
    admin_token: str | None = None  # LOOPML_ADMIN_TOKEN; admin endpoints are off without it
    api_keys: tuple[str, ...] = ()  # LOOPML_API_KEYS; every route but the health checks needs one when set
    access_log: bool = True
    monitor: MonitorConfig = MonitorConfig()
    log_dir: str | None = None  # where the inference log and feedback go; None: no log

    def __repr__(self) -> str:  # never print the secrets
        return f"ServeSettings(primary={self.primary.uri!r}, canary={self.canary and self.canary.uri!r})"

    __str__ = __repr__


def resolve(model: str | None, canary: str | None, project=None, overrides: dict[str, Any] | None = None,
            access_log: bool = True, name: str | None = None) -> ServeSettings:  # fmt: skip
    """Settings from a model spec (NAME@ALIAS, models:/..., a package folder, or the project's
    champion), an optional canary ALIAS:PERCENT, loopml.yaml's `serve:` and CLI overrides; `name`
    names a package folder (a registry reference carries its own)."""
    base = project.config.serve.model_dump() if project else {}
    try:
        serve = ServeConfig(**{**base, **{k: v for k, v in (overrides or {}).items() if v is not None}})
    except ValidationError as exc:
        problems = "; ".join(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"serve settings: {problems}") from None
    if name is not None and not NAME.match(name):
        raise ConfigError(f"--name must be a model name (letters, digits, _ . -); got {name!r}")
    primary = ModelRef.parse(model, name or (project.config.name if project else None))
    if name is not None and primary.in_registry and primary.name != name:
        raise ConfigError(f"--name {name} names a package folder; {primary.uri} is served as {primary.name}")
    canary_ref, percent = None, 0.0
    if canary:
        alias, _, share = canary.rpartition(":")
        try:
            percent = canary_percent(float(share))
            canary_ref = ModelRef(primary.name).with_alias(alias)
        except (ValueError, ConfigError):
            raise ConfigError(
                f'--canary must look like "challenger:10" (an alias and a percent 0-100); got "{canary}"'
            ) from None
    keys = tuple(k.strip() for k in os.environ.get("LOOPML_API_KEYS", "").split(",") if k.strip())
    monitor = project.config.monitor if project else MonitorConfig()
    return ServeSettings(
        primary=primary, serve=serve, canary=canary_ref, canary_percent=percent,
        tracking_uri=project.tracking_uri if project else os.environ.get("MLFLOW_TRACKING_URI"),
        admin_token=os.environ.get("LOOPML_ADMIN_TOKEN") or None, api_keys=keys, access_log=access_log,
        monitor=monitor, log_dir=str(project.root / monitor.log_dir) if project else _log_dir_outside(),
    )  # fmt: skip


def _log_dir_outside() -> str | None:
    """Outside a project (an image, a pod) the inference log is kept only where LOOPML_MONITOR__LOG_DIR
    says, as inside one: the loop watcher reads the same folder."""
    folder = os.environ.get("LOOPML_MONITOR__LOG_DIR", "").strip()
    if folder and not os.path.isabs(folder):
        raise ConfigError(f"LOOPML_MONITOR__LOG_DIR must be an absolute folder outside a project; got {folder!r}")
    return folder or None
