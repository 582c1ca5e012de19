"""`loopml`: the entry point. Commands import their heavy dependencies only when they run,
so `loopml --help` stays fast and works where torch or MLflow is broken."""

from __future__ import annotations

import logging
import os
import sys

import typer

from loopml import __version__
from loopml.cli import data, deploy, doctor, drift, gpu, models, monitor, project, serve, stages

app = typer.Typer(
    name="loopml",
    help="The machine-learning lifecycle as one closed loop: validate, train, gate, register, serve, "
    "monitor, retrain. Start with `loopml init DIR`, then `loopml run` inside it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_verbose = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"loopml {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details; show tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    global _verbose
    _verbose = verbose
    # MLflow configures its own loggers on import; this is the knob it reads.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "ERROR")
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=_stderr(), show_path=False)],
    )
    for noisy in ("mlflow", "alembic", "urllib3", "git"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.ERROR)


def _stderr():
    from loopml.cli.output import err

    return err


project.register(app)
stages.register(app)
serve.register(app)
drift.register(app)
monitor.register(app)
doctor.register(app)
app.add_typer(models.app, name="models")
app.add_typer(data.app, name="data")
app.add_typer(gpu.app, name="gpu")
app.add_typer(deploy.app, name="deploy")


def run() -> None:
    """Console-script entry point: user-facing errors become a message and exit code 1."""
    from loopml.errors import LoopmlError

    try:
        app()
    except LoopmlError as exc:
        if _verbose:
            import traceback

            traceback.print_exc()
        from rich.text import Text

        from loopml.cli.output import err

        err.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
