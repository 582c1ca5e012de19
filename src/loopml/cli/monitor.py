"""`loopml monitor` (drift and live performance from the inference log; `--watch` runs the loop)
and `loopml feedback FILE` (ground-truth labels for earlier requests)."""

from __future__ import annotations

from pathlib import Path

import typer

from loopml.cli.output import console, emit_json, err, number, table


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
    app.command("feedback")(feedback)


def monitor(
    since: str = typer.Option(None, "--since", help='Only traffic since then: "30m", "6h", "2d" or an ISO time.'),
    version: list[str] = typer.Option(None, "--version", help="Only this version (repeatable); default: all seen."),
    report_path: str = typer.Option(None, "--report", help="Write an HTML report (one section per version) here."),
    json_out: bool = typer.Option(False, "--json", help="Every version's drift statistics and live metrics, as JSON."),
    watch: bool = typer.Option(False, "--watch", help="Run the loop: retrain, canary, promote or roll back."),
    once: bool = typer.Option(False, "--once", help="With --watch: stop after the first action (retrain and verdict)."),
    cycles: int = typer.Option(None, "--cycles", help="With --watch: stop after this many checks."),
) -> None:
    """Drift of live traffic against each version's training reference, and live accuracy (MAE for
    regression) from the feedback labels, read from the inference log `loopml serve` writes. Each
    check is logged to MLflow against the version. With --watch, the loop in loopml.yaml's `loop:`
    section acts on it: drift or a live-performance drop retrains on the raw data plus labelled
    traffic, registers a challenger, canaries it, and promotes it or rolls it back."""
    from loopml.project import Project

    project = Project.find()
    if watch:
        from loopml.monitor.loop import Loop

        # progress and the pipeline's output go to stderr: with --json, stdout holds the JSON alone
        decision = Loop(project, echo=lambda line: err.print(line, highlight=False, markup=False)).watch(
            once=once, max_cycles=cycles
        )
        if json_out:
            emit_json({"decision": decision.kind, "reason": decision.reason, "version": decision.version,
                       "evidence": decision.evidence})  # fmt: skip
        return
    _check(project, since, version, report_path, json_out)


def _check(project, since: str | None, versions: list[str] | None, report_path: str | None, json_out: bool) -> None:
    from loopml import metric
    from loopml.fileio import check_writable, write_text_atomic
    from loopml.monitor.check import check, log_to_mlflow, since_timestamp
    from loopml.registry import Registry

    start = since_timestamp(since)
    if report_path:
        check_writable(report_path, "--report")
    registry = Registry.of(project)
    healths = check(project, start, versions or None, registry)
    task = project.config.task
    report_file = None
    if report_path:
        report_file = Path(report_path)
        write_text_atomic(report_file, _report(project, healths))
    for health in healths:
        log_to_mlflow(project, health, report_file, start, registry)
    if json_out:
        emit_json({"model": project.config.name, "log": str(project.inference_log), "since": since,
                   "versions": [h.as_dict(task) for h in healths]})  # fmt: skip
        return
    if not healths:
        console.print(f"No traffic in {project.inference_log}" + (f" since {since}" if since else "") +
                      "; `loopml serve` logs every request there.")  # fmt: skip
        return
    name = metric.PRIMARY[task]
    rows = []
    for h in healths:
        drift = h.drift
        live = h.live.get(name)
        drop = h.metric_drop(task)
        if drift is None:
            verdict = "—"
        elif not drift.enough_rows:
            verdict = "[yellow]too few rows[/]"
        else:
            verdict = "[bold red]drift[/]" if drift.dataset_drift else "[green]ok[/]"
        rows.append([h.version, str(h.rows), str(h.live["labelled"]), number(live), number(h.evaluated), number(drop),
                     number(drift.drift_share if drift else None), _drifted(drift), verdict])  # fmt: skip
    table(project.config.name, ["version", "rows", "labelled", f"live {name}", f"evaluated {name}", "drop",
                                "drift share", "drifted", "verdict"], rows)  # fmt: skip
    if report_file:
        console.print(f"report: {report_file}")


def _report(project, healths) -> str:
    """One page per version, joined: the drift page's body for each version in turn."""
    from loopml.monitor.check import report_facts
    from loopml.monitor.report import render

    pages = []
    for h in healths:
        if h.drift is None:
            continue
        pages.append(render(h.drift, h.reference, h.current, f"{project.config.name} v{h.version}: live traffic",
                            report_facts(project, h)))  # fmt: skip
    if not pages:
        return "<!doctype html><title>loopml monitor</title><p>No traffic with a reference profile to compare.</p>"
    if len(pages) == 1:
        return pages[0]
    head, _, _ = pages[0].partition("<body>")
    bodies = [page.partition("<body>")[2].rpartition("</body>")[0] for page in pages]
    return head + "<body>" + "<hr>".join(bodies) + "</body></html>"


def feedback(
    file: str = typer.Argument(..., help="CSV or Parquet with columns id (x-request-id), label and optionally row."),
    json_out: bool = typer.Option(False, "--json", help="Print what was added, as JSON."),
) -> None:
    """Attach ground-truth labels to earlier requests, for live accuracy / MAE and for retraining.
    The same as POST /feedback on the server, for labels that arrive in bulk later."""
    from loopml.data import inference_log
    from loopml.data.io import read_table
    from loopml.project import Project

    project = Project.find()
    frame = read_table(file)
    checked = inference_log.validate_feedback(frame, _label_rules(project))  # every label, before anything is written
    policy = inference_log.LogPolicy.of(project.config.monitor, project.inference_log)
    written = inference_log.write(project.inference_log, "feedback", checked, policy)
    logged = inference_log.read_log(project.inference_log)
    known = set(logged["id"].astype(str)) if len(logged) else set()
    matched = int(frame["id"].astype(str).isin(known).sum())
    result = {"added": len(frame), "matched_requests": matched, "file": str(written)}
    if json_out:
        emit_json(result)
        return
    console.print(f"added {len(frame)} label(s) to {project.inference_log}; {matched} match logged requests")
    if matched < len(frame):
        console.print(f"[yellow]{len(frame) - matched} id(s) match no logged request yet[/] (the server writes "
                      "its log every monitor.every_s seconds; they will join when it does)")  # fmt: skip


def _label_rules(project):
    """The champion's label rules (its classes, or its target's range); None without a champion."""
    from loopml.data.inference_log import LabelRules
    from loopml.registry import Registry

    registry = Registry.of(project)
    champion = registry.champion()
    if champion is None:
        return None
    meta = registry.package_meta(champion.version)
    span = meta.get("target_range")
    return LabelRules(meta.get("classes"), tuple(span) if span else None, project.config.monitor.label_margin)


def _drifted(drift) -> str:
    """ "3/65: pixel_2, pixel_9, …" — the count, then the most drifted names that fit."""
    if drift is None:
        return "—"
    worst = sorted((c for c in drift.columns if c.drifted), key=lambda c: -(c.stats.get("psi") or 0.0))
    names = ", ".join(c.column for c in worst[:3]) + (", …" if len(worst) > 3 else "")
    return f"{len(worst)}/{len(drift.columns)}" + (f": {names}" if worst else "")
