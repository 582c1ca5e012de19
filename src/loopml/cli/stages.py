"""Each stage of the loop as its own command: what `dvc.yaml` calls, usable without DVC too."""

from __future__ import annotations

import typer

from loopml.cli.output import console, emit_json, err, number, table

JSON = typer.Option(False, "--json", help="Print the stage result as JSON.")


def register(app: typer.Typer) -> None:
    for command in (validate, train, evaluate, optimize, register_model, gates):
        app.command(command.__name__.replace("_model", ""))(command)


def validate(
    repin: bool = typer.Option(False, "--repin", help="Infer the schema again from the data and pin it."),
    json_out: bool = JSON,
) -> None:
    """Check the raw data against the pinned schema (inferred on first run) and data.rules, and review it.

    Checks dtypes, nulls, ranges, allowed categories, the target column and the rules in
    loopml.yaml. A failure names column, check, failing rows and examples. The first run also
    writes what each column is for (data.columns: numeric, categorical, datetime, id...) into
    loopml.yaml. Warnings name the column and the setting that silences them. Never modifies the data.
    """
    from loopml.data.validate import validate as run_stage
    from loopml.project import Project

    result = run_stage(Project.find(), repin=repin)
    _show(result, json_out)
    if not json_out:
        for warning in result.warnings:
            err.print(f"[yellow]warning:[/] {warning.message} [dim]({warning.setting})[/]", highlight=False)


def train(
    resume: bool = typer.Option(
        False,
        "--resume",
        envvar="LOOPML_RESUME",
        help="Continue from the last checkpoint (`loopml run --resume` sets LOOPML_RESUME).",
    ),
    json_out: bool = JSON,
    nproc_per_node: str = typer.Option(
        None, "--nproc-per-node", help='DDP: processes per node, or "gpu" for one per GPU (train.distributed).'
    ),  # fmt: skip
    nnodes: int = typer.Option(None, "--nnodes", help="DDP: nodes, each running this command (needs --rdzv-endpoint)."),
    rdzv_endpoint: str = typer.Option(None, "--rdzv-endpoint", help="DDP: HOST:PORT of the c10d rendezvous."),
    max_restarts: int = typer.Option(None, "--max-restarts", help="DDP: restarts from the checkpoint after a failure."),
) -> None:
    """Fit the model (PyTorch loop or any scikit-learn-compatible estimator) and log it to MLflow.

    The column preprocessing (categories, dates, missing values) is fitted on the training rows and
    packaged with the model. Device and precision are chosen automatically (CUDA -> MPS -> CPU;
    bf16 autocast where the GPU supports it); a checkpoint is written every epoch so `--resume`
    continues a killed run. With more than one process (train.distributed, or --nproc-per-node),
    loopml starts torch.distributed.run itself: DDP with gloo on CPU, NCCL on GPUs, one MLflow run.
    """
    import os

    from loopml.project import Project
    from loopml.train.distributed import launch_command, run_launch
    from loopml.train.stage import train as run_stage

    launch = {"nproc_per_node": nproc_per_node, "nnodes": nnodes, "rdzv_endpoint": rdzv_endpoint,
              "max_restarts": max_restarts}  # fmt: skip
    for key, value in launch.items():  # through the config, so they are checked alike and the workers inherit them
        if value is not None:
            os.environ[f"LOOPML_TRAIN__DISTRIBUTED__{key.upper()}"] = str(value)
    project = Project.find()
    command = launch_command(
        project.config.train.distributed, [*(["--resume"] if resume else []), *(["--json"] if json_out else [])]
    )
    if command is not None:
        err.print(f"loopml: DDP with {' '.join(a for a in command if a.startswith('--n'))}: {' '.join(command)}",
                  highlight=False, markup=False)  # fmt: skip
        failure = run_launch(command, project.root, project.config.train.distributed)
        if failure:
            err.print(f"[bold red]error:[/] {failure}", highlight=False)
            raise typer.Exit(1)
        return
    result = run_stage(project, resume=resume, show_progress=not json_out)
    if result is not None:  # under DDP, rank 0 reports for every rank
        _show(result, json_out)


def evaluate(json_out: bool = JSON) -> None:
    """Score the trained model on the held-out split beside a dummy baseline and the champion; apply the gates.

    Writes reports/evaluation.html (gates, metrics with baseline and champion deltas, confusion
    matrix, ROC and precision-recall or residuals, permutation importance, a data summary) and
    reports/metrics.json, and logs both to the MLflow run.
    """
    from loopml.evaluate.stage import evaluate as run_stage
    from loopml.project import Project

    result = run_stage(Project.find())
    if json_out:
        emit_json(result)
        return
    champion = result.champion
    rows = []
    for name, value in result.metrics.items():
        base = result.baseline.metrics.get(name) if result.baseline else None
        rival = champion.metrics.get(name) if champion else None
        rows.append([name, number(value), number(base), number(rival)])
    table("metrics", ["metric", "model", f"baseline ({result.baseline.name})" if result.baseline else "baseline",
                      f"champion {champion.name}" if champion else "champion"], rows)  # fmt: skip
    _gate_table(result)
    console.print(f"report: {result.report}")


def optimize(json_out: bool = JSON) -> None:
    """Try compressed variants of the evaluated model and keep the fastest one that still passes.

    Variants (optimize.variants in loopml.yaml): torch models get onnx (ONNX Runtime fp32),
    onnx_int8 (dynamic), onnx_int8_static (calibrated on training rows), torch_int8, prune
    (Torch-Pruning + fine-tuning, per optimize.prune_ratios) and svd (low-rank Linear layers +
    fine-tuning); scikit-learn models get onnx (skl2onnx; XGBoost and LightGBM through onnxmltools);
    text models get onnx, onnx_int8 and onnx_int8_static (the encoder and head as one graph).
    Each is judged on the evaluation's test rows by the same gates, plus agreement with the original
    (optimize.min_agreement, max_proba_delta), and timed at optimize.threads threads. The best on
    optimize.objective among those that pass is logged to the run and is what `loopml register`
    registers; the original stays when none passes. A variant that cannot be built fails alone, with
    its reason in the table. Writes outputs/optimize.json and reports/optimize.html.
    """
    from loopml import metric
    from loopml.optimize.stage import optimize as run_stage
    from loopml.project import Project

    def progress(name: str) -> None:
        if not json_out:
            err.print(f"optimize: building and timing {name} ...", highlight=False)

    project = Project.find()
    result = run_stage(project, progress=progress)
    if json_out:
        emit_json(result)
        return
    quality = metric.PRIMARY[project.config.task]  # the column the gates and the choice read
    rows = []
    for v in result.variants:
        m = v.metrics
        status = {"chosen": "[bold green]chosen[/]", "passed": "[blue]passed[/]"}.get(v.status, f"[red]{v.status}[/]")
        rows.append([f"{v.name}{'*' if v.pareto else ''}", status, number(m.get(quality)) if m else "—",
                     f"{v.agreement:.2%}" if v.agreement is not None else "—",
                     f"{m['row_p95_ms']:.3f}" if m else "—", f"{m['size_mb']:.2f}" if m else "—",
                     v.reason])  # fmt: skip
    table(f"optimize: {result.objective}, {result.threads} thread(s), * = Pareto", ["variant", "status", quality,
          "agrees", "p95 ms", "MB", "why"], rows)  # fmt: skip
    console.print(f"[bold]optimize[/] ({result.seconds:.1f}s): {result.figure}")
    console.print(f"report: {result.report}")


def gates(
    markdown: bool = typer.Option(False, "--markdown", help="A Markdown table (a pull-request comment, a CI summary)."),
    json_out: bool = typer.Option(False, "--json", help="Print the evaluation result as JSON."),
) -> None:
    """The last evaluation's gates (outputs/evaluate.json), without evaluating again; exit 1 when the
    model may not be registered. CI runs it after `dvc repro evaluate` to fail a pull request."""
    from loopml.contracts import EvaluateResult
    from loopml.errors import ConfigError
    from loopml.project import Project

    result = Project.find().read_result(EvaluateResult)
    if result is None:
        raise ConfigError("no evaluation yet (outputs/evaluate.json): run `loopml run`, or `dvc repro evaluate`")
    if json_out:
        emit_json(result)
    elif markdown:
        verdict = "passed: registrable" if result.registrable else "**failed**: not registrable"
        lines = [f"### Gates {verdict}", "", "| metric | kind | rule | value (Δ) | verdict | note |",
                 "|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {g.metric} | {g.kind} | `{g.rule}` | {'—' if g.value is None else f'{g.value:.4g}'} | "
                  f"{'pass' if g.passed else '**fail**'} | {g.note} |" for g in result.gates]  # fmt: skip
        lines += ["", "| metric | value |", "|---|---|"] + [f"| {k} | {v:.4g} |" for k, v in result.metrics.items()]
        print("\n".join(lines))
    else:
        _gate_table(result)
    if not result.registrable:
        raise typer.Exit(1)


def _gate_table(result) -> None:
    table("gates", ["metric", "kind", "rule", "value (Δ)", "verdict", "note"], [
        [g.metric, g.kind, g.rule, "—" if g.value is None else f"{g.value:.4g}",
         "[green]pass[/]" if g.passed else "[bold red]fail[/]", g.note]
        for g in result.gates
    ])  # fmt: skip


def register_model(
    register_as: str = typer.Option(
        "auto",
        "--as",
        envvar="LOOPML_REGISTER_AS",
        help="auto: champion when it beats the champion; challenger: never move "
        "champion (what the loop sets, LOOPML_REGISTER_AS=challenger).",
    ),
    json_out: bool = JSON,
) -> None:
    """Register the evaluated model if it passed the gates: alias `challenger`, and `champion`
    when there is none yet or it beats the current one. A failing model is not registered (exit 1).
    Registering the same training run again reuses its version."""
    from loopml.errors import ConfigError
    from loopml.project import Project
    from loopml.registration import register as run_stage

    if register_as not in ("auto", "challenger"):
        raise ConfigError(f'--as must be "auto" or "challenger"; got "{register_as}"')
    _show(run_stage(Project.find(), as_challenger=register_as == "challenger"), json_out)


def _show(result, json_out: bool) -> None:
    if json_out:
        emit_json(result)
    else:
        console.print(f"[bold]{result.STAGE}[/] ({result.seconds:.1f}s): {result.figure}")
