"""`loopml deploy`: render deployment recipes (the GPU dev environment, the monitoring stack)."""

from __future__ import annotations

from pathlib import Path

import typer

from loopml.cli.output import console, emit_json

app = typer.Typer(help="Render deployment recipes: Dockerfiles, compose files, monitoring.", no_args_is_help=True)


@app.command("render")
def render(
    target: str = typer.Argument(
        ...,
        help="What to render: serve (the serving image's build context), compose (the team stack), k8s "
        "(kustomize manifests, KServe, training jobs), k8s-train (the training jobs alone), ci (GitHub Actions, "
        "GitLab CI), slurm (sbatch + Apptainer), devenv (GPU Jupyter + "
        "SSH dev environment), monitoring (Prometheus, alerts, Alertmanager, Grafana), or all (into deploy/).",
    ),  # fmt: skip
    out: Path = typer.Option(None, "--out", "-o", help="Folder to write (default: ./<target>, ./deploy for all)."),
    cuda: str = typer.Option(
        "12.8.1", "--cuda", help="devenv: CUDA of the nvidia/cuda base image: 12.4, 12.6, 12.8, 12.9 or 13.0 (or full)."
    ),  # fmt: skip
    model: str = typer.Option(
        None, "--model", "-m", help="serve: NAME@ALIAS or models:/NAME/VERSION (default: the project's champion)."
    ),
    gpu_image: bool = typer.Option(
        False, "--gpu", help="serve, compose, k8s, ci: a CUDA image matching the model's torch, GPUs reserved."
    ),  # fmt: skip
    pull: bool = typer.Option(False, "--pull-at-start", help="serve: no model in the image; pull it at start."),
    image: str = typer.Option(
        None, "--image", help="The serving image REPOSITORY:TAG (default: deploy.image or NAME, tag vVERSION)."
    ),  # fmt: skip
    serve: str = typer.Option("127.0.0.1:8000", "--serve", help="monitoring: host:port of `loopml serve`."),
    gpu: str = typer.Option("127.0.0.1:9400", "--gpu-exporter", help="monitoring: host:port of `loopml gpu export`."),
    alertmanager: str = typer.Option("127.0.0.1:9093", "--alertmanager", help="monitoring: Alertmanager host:port."),
    webhook: str = typer.Option(
        "http://127.0.0.1:8765/alerts", "--webhook", help="monitoring: where Alertmanager posts alerts."
    ),  # fmt: skip
    webhook_token_file: str = typer.Option(
        "loopml-alert-token", "--webhook-token-file", help="monitoring: file holding the watcher's LOOPML_ALERT_TOKEN."
    ),
    prometheus_url: str = typer.Option(
        "http://127.0.0.1:9090", "--prometheus-url", help="monitoring: Prometheus as Grafana reaches it."
    ),  # fmt: skip
    interval: str = typer.Option("15s", "--interval", help="monitoring: scrape and rule evaluation interval."),
    alert_for: str = typer.Option("5m", "--alert-for", help="monitoring: how long a serving/GPU condition holds."),
    drift_for: str = typer.Option("10m", "--drift-for", help="monitoring: how long drift holds before it fires."),
    force: bool = typer.Option(False, "--force", help="Overwrite files in a non-empty folder."),
    json_out: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write plain files to read, edit and commit, each folder with a README: inside a project,
    `loopml deploy render all` ships its registered champion (an image context, a compose stack,
    Kubernetes manifests, two CI pipelines, a dev environment), settings from loopml.yaml's `deploy:`.
    Rendering into a non-empty folder needs --force, and never deletes files it did not write."""
    from loopml.deploy.render import ImageChoice, MonitoringTargets
    from loopml.deploy.render import render as write
    from loopml.errors import ConfigError
    from loopml.project import Project

    try:
        project = Project.find()
    except ConfigError:
        project = None  # outside a project: default thresholds
    targets = MonitoringTargets(serve=serve, gpu=gpu, alertmanager=alertmanager, webhook=webhook,
                                webhook_token_file=webhook_token_file, prometheus_url=prometheus_url,
                                interval=interval, alert_for=alert_for, drift_for=drift_for)  # fmt: skip
    choice = ImageChoice(model=model, gpu=gpu_image, pull=pull, image=image)
    result = write(target, out or Path("deploy" if target == "all" else target), force=force, cuda=cuda,
                   monitoring=targets, project=project,
                   image=choice)  # fmt: skip
    if json_out:
        emit_json(result)
        return
    console.print(f"Wrote {target} to {result['out']}: {', '.join(result['files'])}")
    following = {
        "devenv": f"cd {result['out']} && docker compose up -d --build",
        "serve": f"docker build -t {result.get('image')} {result['out']}",
        "compose": f"cd {result['out']} && docker compose up -d (read README.md first)",
        "k8s": f"kubectl apply -k {result['out']}/overlays/production (read README.md first)",
        "ci": f"copy {result['out']}/.github and {result['out']}/.gitlab-ci.yml into the project",
        "slurm": f"from the project folder: mkdir -p logs && sbatch {result['out']}/train.sbatch",
        "k8s-train": f"kubectl apply -f {result['out']}/trainjob.yaml (read README.md first)",
        "monitoring": f"read {result['out']}/README.md; check with promtool test rules alerts.test.yml",
        "all": f"read {result['out']}/README.md: build, run, gate, canary, promote or roll back",
    }  # fmt: skip
    console.print(f"Next: {following[target]}")
