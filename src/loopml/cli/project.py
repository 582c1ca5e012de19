"""`loopml init` and `loopml run`: create a project, run its whole loop."""

from __future__ import annotations

from pathlib import Path

import typer

from loopml.cli.output import console, emit_json, err, table


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("run")(run)


def init(
    directory: Path = typer.Argument(..., help="Folder for the new project (created if missing)."),
    template: str = typer.Option(
        None,
        "--template",
        "-t",
        help="digits (PyTorch CNN), tabular (scikit-learn) or text (MiniLM + LoRA on support messages); the "
        "default without --from is digits.",
    ),  # fmt: skip
    source: str = typer.Option(
        None,
        "--from",
        help="Your own table (CSV or Parquet, a path or an fsspec URL): strings, dates and missing values welcome.",
    ),  # fmt: skip
    target: str = typer.Option(None, "--target", help="With --from: the column to predict."),
    task: str = typer.Option(
        "auto", "--task", help="With --from: auto (read from the target), classification or regression."
    ),  # fmt: skip
    copy: bool = typer.Option(
        False, "--copy", help="With --from: copy the file under data/raw/ (else DVC tracks it where it is)."
    ),  # fmt: skip
    force: bool = typer.Option(False, "--force", help="Write into a non-empty folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create a ready project: loopml.yaml, dvc.yaml, model code; git and DVC initialized.

    `loopml init churn --from churn.csv --target churned` builds it around your table: the task and
    what each column is for are read from the data and written into loopml.yaml with the reasons;
    the model takes the raw columns (its preprocessing is part of it). No code to write.
    """
    from loopml.errors import ConfigError
    from loopml.scaffold import init as from_template
    from loopml.scaffold import init_from

    if source is not None:
        if template is not None:
            raise ConfigError("choose --template or --from, not both")
        if not target:
            raise ConfigError("--from needs --target COLUMN: the column to predict")
        result = init_from(directory, source, target, task, copy, force)
    else:
        if target is not None or copy:
            raise ConfigError("--target and --copy go with --from PATH (your own data)")
        result = from_template(directory, template or "digits", force)
    if json_out:
        emit_json(result)
        return
    console.print(f"Created [bold]{result.name}[/] ({result.template}) in {result.project}")
    if result.task:
        console.print(f"task: [bold]{result.task}[/] ({result.task_reason})")
        shown = {}
        for column, role in result.roles.items():
            shown.setdefault(role, []).append(column)
        for role, columns in shown.items():
            console.print(f"  {role}: {', '.join(columns[:12])}{' ...' if len(columns) > 12 else ''}")
        console.print(f"data: {result.data} (edit data.columns in loopml.yaml to change a role)")
    else:
        for name in result.files:
            console.print(f"  {name}")
    console.print(f"Next: [bold]cd {directory} && loopml run[/]")


def run(
    force: bool = typer.Option(False, "--force", help="Re-run every stage, cached or not."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted training from its checkpoint."),
    push: bool = typer.Option(False, "--push", help="Then push the data versions and outputs to the data remote."),
    json_out: bool = typer.Option(False, "--json", help="Print the stage summary as JSON."),
) -> None:
    """Run the loop with DVC: prepare → validate → train → evaluate → register. Unchanged stages are skipped.

    Stage output streams as it happens; a table at the end says which stages ran or were cached,
    how long each took and its key figure. Exit code 1 when a stage fails (bad data, failed gates).
    """
    import time

    from loopml.errors import PipelineError
    from loopml.pipeline import repro
    from loopml.project import Project

    project = Project.find()
    if push and not project.config.remote.url:
        from loopml.errors import ConfigError

        raise ConfigError("--push needs a data remote: set remote.url in loopml.yaml, or run "
                          "`loopml data remote add s3://bucket/path [--endpoint-url URL]`")  # fmt: skip
    started = time.perf_counter()
    echo = (lambda line: None) if json_out else (lambda line: err.print(line, highlight=False, markup=False))
    runs, code = repro(project, force=force, resume=resume, echo=echo)
    pushed = None
    if push and code == 0:
        from dataclasses import asdict

        from loopml.data import remote

        pushed = remote.push(project)
        echo(f"push: {pushed.summary} ({pushed.remote})")
    total = time.perf_counter() - started
    if json_out:
        emit_json({"ok": code == 0, "seconds": round(total, 3), "stages": runs,
                   **({"push": asdict(pushed)} if pushed else {})})  # fmt: skip
    else:
        rows = [[r.name, _status(r.status), "" if r.seconds is None else f"{r.seconds:.1f}", r.figure] for r in runs]
        table(f"loopml run — {total:.1f}s", ["stage", "status", "seconds", "result"], rows)
    if code != 0:
        failed = next((r.name for r in runs if r.status == "failed"), None)
        where = f"at stage '{failed}'" if failed else "before any stage ran"
        raise PipelineError(f"the pipeline stopped {where} (dvc repro exit code {code}); see the message above")


def _status(status: str) -> str:
    colors = {"ran": "green", "cached": "cyan", "failed": "bold red", "not run": "dim"}
    return f"[{colors[status]}]{status}[/]"
