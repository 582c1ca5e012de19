"""Each stage of the loop as its own command: what `dvc.yaml` calls, usable without DVC too."""

from __future__ import annotations

import typer

from loopml.cli.output import console, emit_json, table

JSON = typer.Option(False, "--json", help="Print the stage result as JSON.")


def register(app: typer.Typer) -> None:
    for command in (validate, train, evaluate, register_model):
        app.command(command.__name__.replace("_model", ""))(command)


def validate(
    repin: bool = typer.Option(False, "--repin", help="Infer the schema again from the data and pin it."),
    json_out: bool = JSON,
) -> None:
    """Check the raw data against the pinned schema (inferred on first run) and data.rules.

    Checks dtypes, nulls, ranges, allowed categories, the target column and the rules in
    loopml.yaml. A failure names column, check, failing rows and examples. Never modifies the data.
    """
    from loopml.data.validate import validate as run_stage
    from loopml.project import Project

    result = run_stage(Project.find(), repin=repin)
    _show(result, json_out)
    for warning in result["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")


def train(
    resume: bool = typer.Option(False, "--resume", envvar="LOOPML_RESUME", help="Continue from the last checkpoint."),
    json_out: bool = JSON,
) -> None:
    """Fit the model (PyTorch loop or any scikit-learn-compatible estimator) and log it to MLflow.

    Device and precision are chosen automatically (CUDA → MPS → CPU; bf16 autocast where the GPU
    supports it); a checkpoint is written every epoch so `--resume` continues a killed run.
    """
    from loopml.project import Project
    from loopml.train.stage import train as run_stage

    result = run_stage(Project.find(), resume=resume, show_progress=not json_out)
    result.pop("history", None) if not json_out else None
    _show(result, json_out)


def evaluate(json_out: bool = JSON) -> None:
    """Score the trained model on the held-out split, compare it with the champion, apply the gates.

    Writes reports/evaluation.html (confusion matrix, ROC or residuals, per-class table, gates)
    and reports/metrics.json, and logs both to the MLflow run.
    """
    from loopml.evaluate.stage import evaluate as run_stage
    from loopml.project import Project

    result = run_stage(Project.find())
    if json_out:
        emit_json(result)
        return
    table("metrics", ["metric", "value", "champion"], [
        [k, f"{v:.4f}", f"{result['champion']['metrics'].get(k, float('nan')):.4f}" if result["champion"] else "—"]
        for k, v in result["metrics"].items()
    ])  # fmt: skip
    table("gates", ["metric", "kind", "rule", "value", "verdict", "note"], [
        [g["metric"], g["kind"], g["rule"], "—" if g["value"] is None else f"{g['value']:.4g}",
         "[green]pass[/]" if g["passed"] else "[bold red]fail[/]", g["note"]]
        for g in result["gates"]
    ])  # fmt: skip
    console.print(f"report: {result['report']}")


def register_model(json_out: bool = JSON) -> None:
    """Register the evaluated model if it passed the gates: alias `challenger`, and `champion`
    when there is none yet or it beats the current one. A failing model is not registered (exit 1)."""
    from loopml.project import Project
    from loopml.registry import register_stage

    _show(register_stage(Project.find()), json_out)


def _show(result: dict, json_out: bool) -> None:
    if json_out:
        emit_json(result)
    else:
        console.print(f"[bold]{result['stage']}[/] ({result['seconds']:.1f}s): {result['figure']}")
