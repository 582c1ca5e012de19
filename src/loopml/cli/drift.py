"""`loopml drift REFERENCE CURRENT`: the ad hoc drift check between two files."""

from __future__ import annotations

import typer

from loopml.cli.output import console, emit_json, number, table


def register(app: typer.Typer) -> None:
    app.command("drift")(drift)


def drift(
    reference: str = typer.Argument(..., help="Reference data: Parquet or CSV, a path or any fsspec URL."),
    current: str = typer.Argument(..., help="Current data to compare with it."),
    json_out: bool = typer.Option(False, "--json", help="Every column's statistics and verdict, as JSON."),
    report_path: str = typer.Option(None, "--report", help="Also write a self-contained HTML report here."),
    psi_alert: float = typer.Option(0.25, "--psi-alert", help="PSI at or above which a column has drifted."),
    drift_share: float = typer.Option(0.5, "--drift-share", help="Share of drifted columns that means dataset drift."),
) -> None:
    """Compare two datasets column by column: PSI, KS, Wasserstein, Jensen–Shannon, chi², null and
    unseen shares; a verdict per column and for the dataset. Exit 0 whatever the verdict."""
    from loopml.data.drift import Thresholds, compare
    from loopml.data.pair import profile_pair

    profile, counted = profile_pair(reference, current)
    report = compare(profile, counted, Thresholds(psi_alert=psi_alert, drift_share=drift_share))
    if report_path:
        from pathlib import Path

        from loopml.monitor.report import render

        Path(report_path).write_text(render(report, profile, counted, f"{current} vs {reference}"))
    if json_out:
        emit_json(report.as_dict())
        return
    rows = []
    for column in sorted(report.columns, key=lambda c: -(c.stats.get("psi") or 0.0)):
        s = column.stats
        effect = s.get("wasserstein_norm") if column.kind == "numeric" else s.get("jensen_shannon")
        style = {"drift": "bold red", "warn": "yellow", "ok": "green"}[column.level]
        rows.append([column.column, column.kind, number(s.get("psi")), number(s.get("ks")), number(effect),
                     number(s.get("null_share_change")), f"[{style}]{column.level}[/]"])  # fmt: skip
    table(None, ["column", "kind", "PSI", "KS", "W/std or JS", "Δ null share", "verdict"], rows)
    verdict = "[bold red]dataset drift[/]" if report.dataset_drift else "[green]no dataset drift[/]"
    drifted = sum(c.drifted for c in report.columns)
    console.print(f"{verdict}: {drifted} of {len(report.columns)} columns drifted ({report.drift_share:.0%})")
    if report_path:
        console.print(f"report: {report_path}")
