"""`loopml deploy render TARGET`: write a deployment recipe from the bundled templates.

Targets are folders under `templates/`; each file is rendered with Jinja2 (`{{ ... }}`),
with `${...}` left alone for Docker Compose and the shell.
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.errors import ConfigError

if TYPE_CHECKING:
    from loopml.project import Project

TARGETS = {
    "devenv": "a GPU deep-learning dev environment: CUDA + cuDNN, PyTorch, JupyterLab, SSH (compose)",
    "serve": "the serving image's build context: Dockerfile, the model exported from the registry, requirements",
    "monitoring": "Prometheus scrape config and alert rules (with promtool tests), Alertmanager, Grafana dashboards",
}
# CUDA 12.x images of nvidia/cuda and the PyTorch wheel index built for each.
CUDA_TORCH_INDEX = {"12.6": "cu126", "12.8": "cu128", "12.9": "cu129"}
DEFAULT_CUDA = "12.8.1"
EXECUTABLE = {"entrypoint.sh"}


@dataclass(frozen=True)
class MonitoringTargets:
    """Where the monitoring stack finds loopml and where it sends alerts."""

    serve: str = "127.0.0.1:8000"  # host:port of `loopml serve`
    gpu: str = "127.0.0.1:9400"  # host:port of `loopml gpu export` (dcgm-exporter's port)
    alertmanager: str = "127.0.0.1:9093"
    webhook: str = "http://127.0.0.1:8765/alerts"  # where Alertmanager posts alerts (the loop watcher)
    webhook_token_file: str = "loopml-alert-token"  # holds LOOPML_ALERT_TOKEN (relative: beside alertmanager.yml)
    prometheus_url: str = "http://127.0.0.1:9090"  # for Grafana's datasource
    interval: str = "15s"  # scrape and rule evaluation
    alert_for: str = "5m"  # how long a serving or GPU condition must hold before it fires
    drift_for: str = "10m"  # ... a drift condition


@dataclass(frozen=True)
class ImageChoice:
    """What `render serve` puts in the image."""

    model: str | None = None  # NAME@ALIAS or models:/NAME/VERSION; None: the project's champion
    gpu: bool = False
    pull: bool = False  # pull the model from the registry at start instead of copying it in
    image: str | None = None  # the tag the README's commands use


def render(target: str, out: Path, force: bool = False, cuda: str = DEFAULT_CUDA, user: str = "dev",
           monitoring: MonitoringTargets | None = None, project: Project | None = None,
           image: ImageChoice | None = None) -> dict[str, Any]:  # fmt: skip
    if target not in TARGETS:
        raise ConfigError(f'unknown deploy target "{target}"; expected one of {", ".join(TARGETS)}')
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} is not empty; choose another --out or pass --force to overwrite its files")
    if target == "devenv":
        context = _devenv_context(cuda, user)
    elif target == "monitoring":
        context = _monitoring_context(monitoring or MonitoringTargets(), project)
    else:
        context = _image_context(image or ImageChoice(), project, out)
    import jinja2

    env = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for relative, template in _templates(resources.files("loopml.deploy").joinpath("templates", target)):
        name = relative.removesuffix(".j2").replace("dot-", ".")  # dot-dockerignore: packaged without a dot
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.from_string(template.read_text()).render(**context))
        if path.name in EXECUTABLE:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        written.append(name)
    if target == "serve":
        written += [name for name in ("requirements.txt", "wheels/", "model/") if (out / name).exists()]
    if target == "monitoring":
        from loopml.deploy.monitoring import DASHBOARDS, dashboard

        for uid in DASHBOARDS:
            name = f"grafana/dashboards/{uid}.json"
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(json.dumps(dashboard(uid), indent=2) + "\n")
            written.append(name)
    return {"target": target, "out": str(out), "files": written, **context}


def _image_context(choice: ImageChoice, project: Project | None, out: Path) -> dict[str, Any]:
    from loopml.deploy.image import export

    if project is None:
        raise ConfigError("`loopml deploy render serve` runs inside a project: cd into one (it exports a "
                          "registered version of the project's model)")  # fmt: skip
    facts = export(project, choice.model, out, choice.gpu, choice.pull)
    model_arg = f"models:/{facts.name}/{facts.version}" if choice.pull else f"/srv/{facts.name}/model"
    if choice.pull and facts.alias:
        model_arg = f"models:/{facts.name}@{facts.alias}"
    tag = choice.image or f"{facts.name}:v{facts.version}"
    return {**asdict(facts), "image": tag, "model_arg": model_arg}


def _templates(folder, prefix: str = ""):
    """(relative path, template) for every file under `folder`, depth first, in name order."""
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.startswith(("_", ".")):
            continue
        if entry.is_dir():
            yield from _templates(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry


def _devenv_context(cuda: str, user: str) -> dict[str, Any]:
    minor = ".".join(cuda.split(".")[:2])
    if minor not in CUDA_TORCH_INDEX or len(cuda.split(".")) != 3:
        raise ConfigError(
            f'--cuda must be a full CUDA 12.x image version like "12.8.1"; got "{cuda}" '
            f"(PyTorch publishes wheels for {', '.join(CUDA_TORCH_INDEX)})"
        )
    return {"cuda": cuda, "cuda_minor": minor, "torch_index": f"https://download.pytorch.org/whl/{CUDA_TORCH_INDEX[minor]}",
            "user": user}  # fmt: skip


def _monitoring_context(targets: MonitoringTargets, project: Project | None) -> dict[str, Any]:
    """The addresses, plus thresholds from the project's loopml.yaml (defaults outside a project)."""
    from loopml.config import MonitorConfig

    for name in ("serve", "gpu", "alertmanager"):
        value = getattr(targets, name)
        if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}", value):
            raise ConfigError(f"--{name} must be host:port, like 127.0.0.1:8000; got {value!r}")
    for name in ("webhook", "prometheus_url"):
        if not getattr(targets, name).startswith(("http://", "https://")):
            raise ConfigError(f"--{name.replace('_', '-')} must be an http(s) URL; got {getattr(targets, name)!r}")
    for name in ("interval", "alert_for", "drift_for"):
        if not re.fullmatch(r"\d+(ms|s|m|h)", getattr(targets, name)):
            raise ConfigError(f"--{name.replace('_', '-')} must be a Prometheus duration like 30s, 5m or 1h; "
                              f"got {getattr(targets, name)!r}")  # fmt: skip
    monitor = project.config.monitor if project else MonitorConfig()
    return {
        "name": project.config.name if project else "loopml",
        **asdict(targets),
        "down_for": targets.alert_for,
        "psi_alert": monitor.psi_alert,
        "error_share": 0.01,
        "p99_s": 1.0,
        "queue_wait_s": 0.5,
        "gpu_temp_c": 85,
        "gpu_memory_share": 0.95,
        "group_wait": "10s",
        "group_interval": "1m",
        "dashboards_path": "/var/lib/grafana/dashboards/loopml",
    }
