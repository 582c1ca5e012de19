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
    template: str = typer.Option("digits", "--template", "-t", help="digits (PyTorch CNN) or tabular (scikit-learn)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create a ready project: loopml.yaml, dvc.yaml, model code, a prepare stage; git and DVC initialized."""
    from loopml.scaffold import init as scaffold

    result = scaffold(directory, template, force)
    if json_out:
        emit_json(result)
        return
    console.print(f"Created [bold]{result['name']}[/] ({template}) in {result['project']}")
    for name in result["files"]:
        console.print(f"  {name}")
    console.print(f"Next: [bold]cd {directory} && loopml run[/]")


def run(
    force: bool = typer.Option(False, "--force", help="Re-run every stage, cached or not."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted training from its checkpoint."),
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
    started = time.perf_counter()
    echo = (lambda line: None) if json_out else (lambda line: err.print(line, highlight=False, markup=False))
    runs, code = repro(project, force=force, resume=resume, echo=echo)
    total = time.perf_counter() - started
    if json_out:
        emit_json({"ok": code == 0, "seconds": round(total, 3), "stages": [vars(r) for r in runs]})
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
