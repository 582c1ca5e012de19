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
        help="What to render: serve (the serving image's build context), devenv (GPU Jupyter + SSH dev "
        "environment), monitoring (Prometheus, alerts, Alertmanager, Grafana).",
    ),  # fmt: skip
    out: Path = typer.Option(None, "--out", "-o", help="Folder to write (default: ./<target>)."),
    cuda: str = typer.Option("12.8.1", "--cuda", help="devenv: CUDA 12.x version of the nvidia/cuda base image."),
    model: str = typer.Option(
        None, "--model", "-m", help="serve: NAME@ALIAS or models:/NAME/VERSION (default: the project's champion)."
    ),
    gpu_image: bool = typer.Option(False, "--gpu", help="serve: a CUDA runtime image matching the model's torch."),
    pull: bool = typer.Option(False, "--pull-at-start", help="serve: no model in the image; pull it at start."),
    image: str = typer.Option(None, "--image", help="serve: the image tag the README uses (default NAME:vVERSION)."),
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
    """Write a ready-to-use recipe: `loopml deploy render devenv` (then `docker compose up -d --build`), or
    `loopml deploy render monitoring` inside a project (thresholds from its loopml.yaml)."""
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
    result = write(target, out or Path(target), force=force, cuda=cuda, monitoring=targets, project=project,
                   image=choice)  # fmt: skip
    if json_out:
        emit_json(result)
        return
    console.print(f"Wrote {target} to {result['out']}: {', '.join(result['files'])}")
    if target == "devenv":
        console.print(f"Next: cd {result['out']} && docker compose up -d --build")
    elif target == "serve":
        console.print(f"Next: docker build -t {result['image']} {result['out']}")
    else:
        console.print(f"Next: read {result['out']}/README.md; check with promtool test rules alerts.test.yml")
