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
    psi_alert: float = typer.Option(None, "--psi-alert", help="PSI at or above which a column has drifted (0.25)."),
    drift_share: float = typer.Option(
        None, "--drift-share", help="Share of drifted columns that means dataset drift (0.5)."
    ),  # fmt: skip
    min_rows: int = typer.Option(None, "--min-rows", help="No verdict on fewer current rows than this (100)."),
    exclude: list[str] = typer.Option(
        None, "--exclude", help="A column to leave out (repeatable); IDs and free text are left out by themselves."
    ),  # fmt: skip
    encoding: str = typer.Option(
        "auto", "--encoding", help="CSV text encoding (auto: UTF-8, else the legacy one the bytes fit)."
    ),  # fmt: skip
    model: str = typer.Option(
        None,
        "--model",
        help="A model package folder (e.g. outputs/model) whose view of the data is compared: a "
        "text model's text length, unknown-word rate and sentence-embedding axes instead of the raw text.",
    ),  # fmt: skip
) -> None:
    """Compare two datasets column by column: PSI, KS, Wasserstein, Jensen–Shannon, chi², null and
    unseen shares; a verdict per column and for the dataset. A column missing from CURRENT, or holding
    another type there, is a finding. Exit 0 whatever the verdict."""
    from pydantic import ValidationError

    from loopml.config import DriftThresholds
    from loopml.data.drift import compare
    from loopml.data.io import CsvOptions
    from loopml.data.pair import profile_pair
    from loopml.errors import ConfigError
    from loopml.fileio import check_writable, refuse_overwrite, write_text_atomic

    given = {"psi_alert": psi_alert, "drift_share": drift_share, "min_rows": min_rows}
    try:
        thresholds = DriftThresholds(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
                             for e in exc.errors())  # fmt: skip
        raise ConfigError(f"bad thresholds: {problems}") from None
    if report_path:  # before any work: a report that cannot be written fails now, not after the check
        check_writable(report_path, "--report")
        refuse_overwrite(report_path, [reference, current], "--report")
    options = CsvOptions(encoding)
    if model:
        profile, counted = _through_model(model, reference, current, options, exclude or [])
    else:
        profile, counted = profile_pair(reference, current, options, exclude or [])
    report = compare(profile, counted, thresholds)
    if report_path:
        from loopml.monitor.report import render

        write_text_atomic(report_path, render(report, profile, counted, f"{reference} → {current}"))
    if json_out:
        emit_json(report.as_dict())
        return
    rows = []
    for column in sorted(report.columns, key=lambda c: (not c.drifted, -(c.stats.get("psi") or 0.0))):
        s = column.stats
        effect = s.get("wasserstein_norm") if column.kind == "numeric" else s.get("jensen_shannon")
        style = "bold red" if column.drifted else {"warn": "yellow"}.get(column.level, "green")
        rows.append([column.column, column.kind, number(s.get("psi")), number(s.get("ks")), number(effect),
                     number(s.get("null_share_change")), f"[{style}]{column.level}[/]"])  # fmt: skip
    table(None, ["column", "kind", "PSI", "KS", "W/std or JS", "Δ null share", "verdict"], rows)
    for name, why in report.skipped.items():
        console.print(f"[dim]not compared: {name} ({why})[/]")
    if not report.enough_rows:
        console.print(f"[yellow]only {report.rows_current} current rows (--min-rows {thresholds.min_rows}): no "
                      "verdict[/]")  # fmt: skip
    verdict = "[bold red]dataset drift[/]" if report.dataset_drift else "[green]no dataset drift[/]"
    drifted = sum(c.drifted for c in report.columns)
    console.print(f"{verdict}: {drifted} of {len(report.columns)} columns drifted ({report.drift_share:.0%})")
    if report_path:
        console.print(f"report: {report_path}")


def _through_model(model: str, reference: str, current: str, options, exclude: list[str]):
    """Both files as the model sees them (Predictor.describe), the reference fitted, the current counted."""
    from loopml.data.io import read_table
    from loopml.data.profile import Profile
    from loopml.errors import ConfigError
    from loopml_runtime import InputError, PackageError, Predictor

    try:
        predictor = Predictor(model)
    except PackageError as exc:
        raise ConfigError(f"--model: {exc}") from None
    frames = []
    for path in (reference, current):
        frame = read_table(path, options=options).drop(columns=exclude, errors="ignore")
        try:
            frames.append(predictor.describe(frame))
        except InputError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    profile = Profile.fit(frames[0])
    return profile, profile.count(frames[1])
