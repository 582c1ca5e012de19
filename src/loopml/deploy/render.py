"""`loopml deploy render TARGET`: write a deployment recipe from the bundled templates.

Targets are folders under `templates/`; each file is rendered with Jinja2 (`{{ ... }}`),
with `${...}` left alone for Docker Compose and the shell.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.errors import ConfigError

if TYPE_CHECKING:
    from loopml.project import Project

TARGETS = {
    "serve": "the serving image's build context: Dockerfile, the model exported from the registry, requirements",
    "compose": "the team stack in one compose file: loopml serve (and a canary), MLflow on PostgreSQL, MinIO, "
    "Prometheus, Alertmanager, Grafana and the loop watcher",
    "k8s": "Kubernetes manifests (kustomize base, production and canary overlays): Deployment, Service, HPA, PDB, "
    "ServiceMonitor, PrometheusRule, HTTPRoute; a KServe InferenceService; a training Job",
    "k8s-train": "Kubernetes training only: a Kubeflow Trainer v2 TrainJob, a PyTorchJob and a plain Job (also in k8s)",
    "ci": "CI pipelines for the project: GitHub Actions and GitLab CI (lint, test, gate, image, promote)",
    "slurm": "training on a SLURM cluster: an sbatch script (srun torchrun, rendezvous on the first node, requeue) "
    "and an Apptainer definition of the training image",
    "devenv": "a GPU deep-learning dev environment with loopml, MLflow and DVC: CUDA + cuDNN, PyTorch, "
    "JupyterLab, SSH (compose)",
    "monitoring": "Prometheus scrape config and alert rules (with promtool tests), Alertmanager, Grafana dashboards",
    "all": "serve, compose, k8s, ci, slurm and devenv into one folder, with a README from build to rollout to rollback",
}
ALL = ("serve", "compose", "k8s", "ci", "slurm", "devenv")
# nvidia/cuda cudnn-devel images the dev environment builds on: (PyTorch wheel index, the newest torch
# release published on it and its torchvision, Ubuntu release of the image). 12.4 is what the course material uses; 13.0
# what current drivers (the lent H100s: 580) run.
DEVENV_CUDA = {
    "12.4.1": ("cu124", "2.6.0", "0.21.0", "22.04"),
    "12.6.3": ("cu126", "2.9.1", "0.24.1", "24.04"),
    "12.8.1": ("cu128", "2.9.1", "0.24.1", "24.04"),
    "12.9.1": ("cu129", "2.8.0", "0.23.0", "24.04"),
    "13.0.2": ("cu130", "2.9.1", "0.24.1", "24.04"),
}
DEFAULT_CUDA = "12.8.1"
PYPI_TORCH_CUDA = "12.8.1"  # the CUDA runtime of PyPI's Linux torch wheel: what CI's `pip install loopml` trains with
# The compose stack's third-party images, pinned (PostgreSQL major, MinIO and mc releases, Prometheus,
# Alertmanager and Grafana versions); MLflow's image follows the MLflow that renders it.
STACK_IMAGES = {
    "postgres_version": "17",
    "minio_image": "minio/minio:RELEASE.2025-04-22T22-12-26Z",
    "mc_image": "minio/mc:RELEASE.2025-04-16T18-13-26Z",
    "prometheus_image": "prom/prometheus:v3.5.0",
    "alertmanager_image": "prom/alertmanager:v0.28.1",
    "grafana_image": "grafana/grafana:12.1.1",
}
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


@dataclass(frozen=True)
class Release:
    """The version compose, k8s and ci ship, as its image names it."""

    name: str
    version: str
    alias: str
    image: str  # repository:tag of the serving image
    repository: str
    tag: str
    gpu: bool
    cuda: str | None  # the image's CUDA runtime version under --gpu


def render(target: str, out: Path, force: bool = False, cuda: str = DEFAULT_CUDA, user: str = "dev",
           monitoring: MonitoringTargets | None = None, project: Project | None = None,
           image: ImageChoice | None = None) -> dict[str, Any]:  # fmt: skip
    """Write `target`'s files into `out`: what was written, and the facts it was rendered from."""
    if target not in TARGETS:
        raise ConfigError(f'unknown deploy target "{target}"; expected one of {", ".join(TARGETS)}')
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} is not empty; choose another --out or pass --force to overwrite its files")
    image = image or ImageChoice()
    if target == "all":
        return _render_all(out, cuda, user, project, image)
    if target == "devenv":
        context = _devenv_context(cuda, user, out)
    elif target == "monitoring":
        context = _monitoring_context(monitoring or MonitoringTargets(), project)
    elif target == "serve":
        context = _image_context(image, project, out)
    else:
        context = _release_context(target, image, project)
    if target == "compose":
        context = {**context, **STACK_IMAGES, **_installed("psycopg2-binary", "boto3"),
                   "project_dir": os.path.relpath(project.root, out.resolve())}  # fmt: skip
    if target in ("k8s", "k8s-train"):
        context = {**context, **_cluster_context(project, context)}
    if target == "slurm":
        context = {**context, **_slurm_context(project, image, out)}
    written = _write(target, out, context)
    if target == "k8s":  # the monitoring alert rules, as the Prometheus Operator takes them
        written.append(_prometheus_rule(out, project, context["app"]))
    if target in ("serve", "devenv", "slurm"):
        written += [name for name in ("requirements.txt", "wheels/", "model/") if (out / name).exists()]
    if target == "monitoring":
        written += _dashboards(out)
    if target == "compose":  # the stack's own Prometheus, Alertmanager and Grafana files, wired to its services
        inside = MonitoringTargets(serve="serve:8000", gpu="gpu-exporter:9400" if image.gpu else "",
                                   alertmanager="alertmanager:9093", webhook="http://watcher:8765/alerts",
                                   webhook_token_file="/run/secrets/alert_token",
                                   prometheus_url="http://prometheus:9090")  # fmt: skip
        stack = _monitoring_context(inside, project)
        written += [f"monitoring/{name}" for name in _write("monitoring", out / "monitoring", stack)]
        written += [f"monitoring/{name}" for name in _dashboards(out / "monitoring")]
    return {"target": target, "out": str(out), "files": written, **_plain(context)}


def _render_all(out: Path, cuda: str, user: str, project: Project | None, image: ImageChoice) -> dict[str, Any]:
    """Every shipping target into its own subfolder of `out`, then the README that ties them together."""
    if project is None:
        raise ConfigError("`loopml deploy render all` runs inside a project: cd into one (it ships the project's "
                          "registered model)")  # fmt: skip
    results = {}
    for target in ALL:
        results[target] = render(target, out / target, force=True, cuda=cuda, user=user, project=project,
                                 image=image)  # fmt: skip
    context = {**_release_context("all", image, project), "devenv_cuda": results["devenv"]["cuda"]}
    context = {**context, **_cluster_context(project, context)}
    written = _write("all", out, context)
    files = written + [f"{target}/{name}" for target, result in results.items() for name in result["files"]]
    return {"target": "all", "out": str(out), "files": files, "image": context["image"],
            "targets": {t: r["out"] for t, r in results.items()}}  # fmt: skip


def _write(target: str, out: Path, context: dict[str, Any]) -> list[str]:
    """Render the templates of `target` into `out`; the relative names written."""

    env = _jinja()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for relative, _ in _templates(resources.files("loopml.deploy").joinpath("templates", target)):
        name = relative.removesuffix(".j2").replace("dot-", ".")  # dot-dockerignore: packaged without a dot
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template(f"{target}/{relative}").render(**context))
        if path.name in EXECUTABLE:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        written.append(name)
    if target == "compose":  # secrets of this stack, generated once: an existing .env is the user's
        env_file = out / ".env"
        if not env_file.exists():
            env_file.write_text(_secrets())
            env_file.chmod(0o600)
            written.append(".env")
    return written


def _jinja():
    """Templates by path under templates/ (so one may import another's macros); nothing escaped."""
    import jinja2

    folder = str(resources.files("loopml.deploy").joinpath("templates"))
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folder), keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined, autoescape=False)  # fmt: skip


def _slurm_context(project: Project, choice: ImageChoice, out: Path) -> dict[str, Any]:
    """The allocation (from train.distributed and deploy.slurm_*) and the training image's contents."""
    from importlib.metadata import version

    from loopml.deploy.image import CPU_TORCH_INDEX, loopml_wheel

    distributed, deploy = project.config.train.distributed, project.config.deploy
    if distributed.nproc_per_node == "gpu" and not choice.gpu:
        raise ConfigError('train.distributed.nproc_per_node is "gpu": render with --gpu (one worker per GPU, '
                          "deploy.gpus per node), or set a number of processes")  # fmt: skip
    nproc = deploy.gpus if distributed.nproc_per_node == "gpu" else distributed.nproc_per_node
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    torch = version("torch").partition("+")[0]
    pins = {name: version(name) for name in ("torch", "mlflow", "dvc")}
    pins["torch"] = torch
    out.mkdir(parents=True, exist_ok=True)
    (out / "requirements.txt").write_text("# the training image's pinned stack; loopml comes from wheels/\n"
                                          + "".join(f"{k}=={v}\n" for k, v in pins.items()))  # fmt: skip
    loopml_wheel(out / "wheels")
    return {"nnodes": distributed.nnodes, "nproc": nproc, "gpus_per_node": deploy.gpus if choice.gpu else 0,
            "cpus_per_task": deploy.slurm_cpus_per_task, "partition": deploy.slurm_partition,
            "time_limit": deploy.slurm_time, "rdzv_port": 29500, "max_restarts": distributed.max_restarts,
            "base_image": f"nvidia/cuda:{PYPI_TORCH_CUDA}-runtime-ubuntu24.04" if choice.gpu else
            f"python:{python}-slim",
            "torch_index": "https://download.pytorch.org/whl/cu128" if choice.gpu else CPU_TORCH_INDEX}  # fmt: skip


def _cluster_context(project: Project, context: dict[str, Any]) -> dict[str, Any]:
    """What the manifests add: a DNS-safe app name, the HPA's queue target, where KServe finds the
    model, and the repository the training Job clones (the project's git remote, when it has one)."""
    deploy = project.config.deploy
    app = re.sub(r"[^a-z0-9-]+", "-", project.config.name.lower()).strip("-")[:50] or "model"
    done = subprocess.run(["git", "remote", "get-url", "origin"], cwd=project.root, capture_output=True, text=True)
    branch = subprocess.run(["git", "branch", "--show-current"], cwd=project.root, capture_output=True, text=True)
    context_git = {"app": app, "queue_target": format(deploy.target_queue_rows, "g"),
            "storage_uri": f"{deploy.model_store.rstrip('/')}/{project.config.name}/v{context['version']}",
            "git_url": done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else
            f"https://git.example.com/team/{project.config.name}.git",
            "git_branch": branch.stdout.strip() or "main", **_ddp_shape(project)}  # fmt: skip
    context_git["git_archive"] = _archive_url(context_git["git_url"], context_git["git_branch"])
    return context_git


def _archive_url(git_url: str, branch: str) -> str:
    """The git host's tarball of `branch` (GitHub and GitLab serve one), for a pod without git."""
    match = re.match(r"^(?:https://|git@)(github\.com|gitlab\.com)[/:](.+?)(?:\.git)?$", git_url)
    if not match:
        return f"https://git.example.com/archive/{branch}.tar.gz"
    host, path = match.groups()
    if host == "github.com":
        return f"https://github.com/{path}/archive/refs/heads/{branch}.tar.gz"
    return f"https://gitlab.com/{path}/-/archive/{branch}/{path.rsplit('/', 1)[-1]}-{branch}.tar.gz"


def _ddp_shape(project: Project) -> dict[str, Any]:
    """The training jobs' shape, from train.distributed: nodes, processes per node, restarts."""
    distributed = project.config.train.distributed
    nproc = project.config.deploy.gpus if distributed.nproc_per_node == "gpu" else distributed.nproc_per_node
    return {"train_nnodes": distributed.nnodes, "train_nproc": nproc, "train_restarts": distributed.max_restarts}


def _prometheus_rule(out: Path, project: Project, app: str) -> str:
    """overlays/production/prometheusrule.yaml: the rules of `render monitoring`'s alerts.yml (one
    owner of the rules) wrapped as a PrometheusRule."""
    import yaml

    rules = yaml.safe_load(_jinja().get_template("monitoring/alerts.yml.j2").render(
        **_monitoring_context(MonitoringTargets(), project)))  # fmt: skip
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": app, "labels": {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "loopml"}},
            "spec": {"groups": rules["groups"]}}  # fmt: skip
    name = "overlays/production/prometheusrule.yaml"
    (out / name).write_text("# The alert rules of `loopml deploy render monitoring`, for the Prometheus Operator.\n"
                            + yaml.safe_dump(rule, sort_keys=False, width=120))  # fmt: skip
    return name


def _dashboards(out: Path) -> list[str]:
    from loopml.deploy.monitoring import DASHBOARDS, dashboard

    written = []
    for uid in DASHBOARDS:
        name = f"grafana/dashboards/{uid}.json"
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(json.dumps(dashboard(uid), indent=2) + "\n")
        written.append(name)
    return written


def _secrets() -> str:
    import secrets

    lines = [
        "# Secrets of this compose stack, generated by `loopml deploy render compose`: keep this file out",
        "# of git (.gitignore here says so). Change any value before the first `docker compose up`.",
    ]
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "LOOPML_ADMIN_TOKEN", "LOOPML_ALERT_TOKEN",
                 "GF_SECURITY_ADMIN_PASSWORD"):  # fmt: skip
        lines.append(f"{name}={secrets.token_urlsafe(24)}")
    return "\n".join(lines) + "\n"


def _installed(*packages: str) -> dict[str, str]:
    """{"<package>_version": version} of what runs here, to pin the same in a rendered image."""
    from importlib.metadata import PackageNotFoundError, version

    pins = {}
    for package in packages:
        try:
            pins[f"{package.split('-')[0]}_version"] = version(package)
        except PackageNotFoundError:
            raise ConfigError(f"{package} is not installed here, and the rendered image pins the version that is: "
                              "pip install 'loopml[team]'") from None  # fmt: skip
    return pins


def _plain(context: dict[str, Any]) -> dict[str, Any]:
    """The context as JSON-ready values (the deploy section as a dict)."""
    return {key: value.model_dump() if hasattr(value, "model_dump") else value for key, value in context.items()}


def _image_context(choice: ImageChoice, project: Project | None, out: Path) -> dict[str, Any]:
    from loopml.deploy.image import export

    if project is None:
        raise ConfigError("`loopml deploy render serve` runs inside a project: cd into one (it exports a "
                          "registered version of the project's model)")  # fmt: skip
    facts = export(project, choice.model, out, choice.gpu, choice.pull)
    model_arg = f"models:/{facts.name}/{facts.version}" if choice.pull else f"/srv/{facts.name}/model"
    if choice.pull and facts.alias:
        model_arg = f"models:/{facts.name}@{facts.alias}"
    return {**asdict(facts), "image": _release(project, choice, facts).image, "model_arg": model_arg}


def _release(project: Project, choice: ImageChoice, facts) -> Release:
    repository = project.config.deploy.image or project.config.name.lower()
    tag = f"v{facts.version}"
    if choice.image:
        repository, _, tag = choice.image.rpartition(":") if ":" in choice.image.rsplit("/", 1)[-1] else \
            (choice.image, "", tag)  # fmt: skip
    return Release(name=facts.name, version=facts.version, alias=facts.alias, image=f"{repository}:{tag}",
                   repository=repository, tag=tag, gpu=choice.gpu, cuda=facts.cuda)  # fmt: skip


def _release_context(target: str, choice: ImageChoice, project: Project | None) -> dict[str, Any]:
    """compose, k8s, ci (and all's README): the release they ship and the project's deploy settings."""
    from importlib.metadata import version

    from loopml import __version__
    from loopml.deploy.image import describe

    if project is None:
        raise ConfigError(f"`loopml deploy render {target}` runs inside a project: cd into one (it reads the "
                          "deploy: section of loopml.yaml and the registered model)")  # fmt: skip
    cfg = project.config
    if target in ("ci", "slurm"):  # they train the version they ship: no registered model is needed to render them
        repository = cfg.deploy.image or cfg.name.lower()
        release = Release(name=cfg.name, version="", alias="", image=f"{repository}:vVERSION", repository=repository,
                          tag="", gpu=choice.gpu, cuda=PYPI_TORCH_CUDA)  # fmt: skip
    else:
        release = _release(project, choice, describe(project, choice.model, choice.gpu))
    return {**asdict(release), "deploy": cfg.deploy, "task": cfg.task, "loopml_version": __version__,
            "mlflow_version": version("mlflow"), "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "canary_alias": "challenger", "target": target}  # fmt: skip


def _templates(folder, prefix: str = ""):
    """(relative path, template) for every file under `folder`, depth first, in name order."""
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.startswith(("_", ".")):
            continue
        if entry.is_dir():
            yield from _templates(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry


def _devenv_context(cuda: str, user: str, out: Path) -> dict[str, Any]:
    """The CUDA image, its PyTorch build, and the pinned loopml, MLflow and DVC the loop needs inside."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    from loopml.deploy.image import loopml_wheel

    full = {".".join(v.split(".")[:2]): v for v in DEVENV_CUDA}.get(cuda, cuda)
    if full not in DEVENV_CUDA:
        raise ConfigError(f'--cuda {cuda}: no nvidia/cuda image with a PyTorch build for it; expected one of '
                          f'{", ".join(DEVENV_CUDA)} (or its major.minor, like 12.4)')  # fmt: skip
    index, torch, torchvision, ubuntu = DEVENV_CUDA[full]
    pins = {}
    for package in ("mlflow", "dvc", "numpy", "scipy", "pandas", "scikit-learn", "matplotlib", "tqdm"):
        try:
            pins[package] = installed(package)
        except PackageNotFoundError:  # not here: the newest release is taken
            pins[package] = None
    out.mkdir(parents=True, exist_ok=True)
    (out / "requirements.txt").write_text(
        "# the dev environment's Python packages (torch comes from the CUDA index in the Dockerfile);\n"
        "# loopml itself comes from wheels/. Pinned to what rendered this file.\n"
        + "".join(f"{name}=={pin}\n" if pin else f"{name}\n" for name, pin in pins.items())
        + "jupyterlab>=4.2,<5\nseaborn>=0.13,<1\n"
    )  # fmt: skip
    loopml_wheel(out / "wheels")
    return {"cuda": full, "cuda_minor": ".".join(full.split(".")[:2]), "cuda_major": full.split(".")[0],
            "ubuntu": ubuntu, "torch": torch, "torchvision": torchvision,
            "torch_index": f"https://download.pytorch.org/whl/{index}", "user": user,
            "pins": pins}  # fmt: skip


def _monitoring_context(targets: MonitoringTargets, project: Project | None) -> dict[str, Any]:
    """The addresses, plus thresholds from the project's loopml.yaml (defaults outside a project)."""
    from loopml.config import MonitorConfig

    for name in ("serve", "gpu", "alertmanager"):
        value = getattr(targets, name)
        if name == "gpu" and not value:
            continue  # no GPU exporter to scrape
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
