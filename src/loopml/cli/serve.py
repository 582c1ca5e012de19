"""`loopml serve` and `loopml predict`: the champion over HTTP, or over a file."""

from __future__ import annotations

import typer

from loopml.cli.output import console, emit_json, err

MODEL_HELP = "NAME@ALIAS, models:/NAME/VERSION, or a model package folder (default: the project's champion)."


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("predict")(predict)


def serve(
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    host: str = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1: loopback only)."),
    port: int = typer.Option(None, "--port", "-p", help="Port (default 8000)."),
    workers: int = typer.Option(
        None,
        "--workers",
        help="Worker processes behind one port, each with its own model "
        "copy; /metrics and admin calls cover all of them.",
    ),  # fmt: skip
    canary: str = typer.Option(
        None, "--canary", help='Send a share of traffic to another alias, e.g. "challenger:10".'
    ),
    max_batch_size: int = typer.Option(
        None, "--max-batch-size", help="Rows per model call (dynamic batching; larger requests are split)."
    ),  # fmt: skip
    max_delay_ms: float = typer.Option(
        None,
        "--max-delay-ms",
        help="While the model is busy, how long a forming batch waits before a second model thread takes it.",
    ),  # fmt: skip
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="JSON access lines on stderr."),
    name: str = typer.Option(
        None,
        "--name",
        help="The name a package folder is served under (default: the project's, else the folder's "
        "parent's): images and KServe mount the model at a fixed path.",
    ),  # fmt: skip
) -> None:
    """Serve a model over the Open Inference Protocol (KServe V2 / Triton: tritonclient works) and
    MLflow's /invocations, with dynamic batching, canary routing, hot reload and /metrics.

    Requests carry the raw columns of the training file (text as BYTES, dates as ISO text).
    Admin endpoints (POST /admin/reload, /admin/traffic) need LOOPML_ADMIN_TOKEN; set
    LOOPML_API_KEYS (comma-separated) to require a key for everything but the health checks.
    Ctrl-C drains and stops.
    """
    from loopml.serve.runtime import RegistryLoader
    from loopml.serve.server import run
    from loopml.serve.settings import resolve

    project = _project_or_none()
    overrides = {"host": host, "port": port, "workers": workers, "max_batch_size": max_batch_size,
                 "max_delay_ms": max_delay_ms}  # fmt: skip
    settings = resolve(model, canary, project, overrides, access_log, name=name)
    version = _resolve_or_explain(RegistryLoader(settings.tracking_uri), settings.primary)
    cfg = settings.serve
    err.print(f"serving {settings.primary.uri} (v{version}) on http://{cfg.host}:{cfg.port} "
              f"(V2: /v2/models/{settings.primary.name}/infer, MLflow: /invocations, metrics: /metrics)",
              highlight=False)  # fmt: skip
    run(settings)


def predict(
    input_path: str = typer.Option(..., "--input", "-i", help="Parquet or CSV file (or fsspec URL) to score."),
    output_path: str = typer.Option(..., "--output", "-o", help="Where to write inputs plus predictions."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    chunk_rows: int = typer.Option(65_536, "--chunk-rows", help="Rows per chunk: memory stays constant."),
    proba: bool = typer.Option(False, "--proba", help="Also write class probabilities (proba_<class>)."),
    encoding: str = typer.Option(None, "--encoding", help="CSV text encoding (default: data.encoding, or detected)."),
    json_out: bool = typer.Option(False, "--json", help="Print a summary as JSON."),
) -> None:
    """Batch inference: stream a large file through the model in chunks, with a progress bar.
    The file holds the raw columns (as in the training data); the output never replaces the input."""
    from loopml.data.io import CsvOptions
    from loopml.serve.batch import predict_file
    from loopml.serve.runtime import RegistryLoader
    from loopml.uri import ModelRef

    project = _project_or_none()
    ref = ModelRef.parse(model, project.config.name if project else None)
    tracking = project.tracking_uri if project else None
    _resolve_or_explain(RegistryLoader(tracking), ref)
    options = CsvOptions.of(project.config.data) if project else CsvOptions()
    if encoding:
        options = CsvOptions(encoding, options.delimiter, options.decimal)
    summary = predict_file(ref, input_path, output_path, tracking, chunk_rows, proba, show_progress=not json_out,
                           options=options)  # fmt: skip
    if json_out:
        emit_json(summary)
    else:
        console.print(f"wrote {summary.rows:,} predictions to {output_path} ({summary.seconds:.1f}s, "
                      f"model {summary.model} v{summary.version})")  # fmt: skip


def _resolve_or_explain(loader, ref) -> str:
    """The version `ref` points at, or an error that says what to do (no champion yet, ...)."""
    from loopml.errors import ConfigError, NotFound

    try:
        return loader.resolve(ref)
    except NotFound as exc:
        if ref.alias == "champion":
            raise ConfigError(f"{ref.name} has no champion yet: run `loopml run` to train and register one, or "
                              "serve the last trained package with `--model outputs/model`") from None  # fmt: skip
        raise ConfigError(f"{ref.uri}: {exc}") from None


def _project_or_none():
    from loopml.errors import ConfigError
    from loopml.project import Project

    try:
        project = Project.find()
    except ConfigError as exc:
        if "no loopml.yaml" in str(exc):
            return None
        raise
    project.config  # noqa: B018 - validate loopml.yaml now, with its clear errors
    return project
