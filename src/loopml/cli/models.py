"""`loopml models`: the registered versions of the project's model and their aliases."""

from __future__ import annotations

import json

import typer

from loopml.cli.output import console, emit_json, table

app = typer.Typer(help="List registered versions; move `champion` by hand (promote, rollback).", no_args_is_help=True)
REASON = typer.Option("", "--reason", "-m", help="Why; recorded on the version with who and when.")
JSON = typer.Option(False, "--json", help="Print the result as JSON.")


@app.command("list")
def list_versions(json_out: bool = JSON) -> None:
    """Every registered version: aliases, key metrics, data digest, when and why aliases moved."""
    from loopml import registry
    from loopml.project import Project

    versions = registry.list_versions(Project.find())
    if json_out:
        emit_json(versions)
        return
    if not versions:
        console.print("No registered versions yet; `loopml run` registers the first model that passes the gates.")
        return
    rows = []
    for v in versions:
        metrics = {k.removeprefix("loopml.metric."): float(x) for k, x in v["tags"].items()
                   if k.startswith("loopml.metric.")}  # fmt: skip
        shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("accuracy", "rmse", "r2") if k in metrics)
        moved = v["tags"].get("loopml.champion_by") or v["tags"].get("loopml.challenger_by")
        note = json.loads(moved)["why"] if moved else ""
        rows.append(
            [
                v["version"],
                ", ".join(v["aliases"]),
                shown,
                v["created"],
                v["tags"].get("loopml.data_digest", "")[:10],
                note,
            ]
        )
    table(versions[0]["name"], ["version", "aliases", "metrics", "created", "data", "last alias move"], rows)


@app.command()
def promote(
    version: str = typer.Argument(..., help="The version number to promote."),
    alias: str = typer.Option("champion", "--alias", help="The alias to move (champion or challenger)."),
    reason: str = REASON,
    json_out: bool = JSON,
) -> None:
    """Point an alias (default `champion`) at VERSION; the previous champion is remembered for rollback."""
    from loopml import registry
    from loopml.project import Project

    result = registry.promote(Project.find(), version, reason or "promoted by hand", alias=alias)
    emit_json(result) if json_out else console.print(f"{result['name']} v{result['version']} is now {alias}")


@app.command()
def rollback(reason: str = REASON, json_out: bool = JSON) -> None:
    """Move `champion` back to the version it replaced."""
    from loopml import registry
    from loopml.project import Project

    result = registry.rollback(Project.find(), reason or "rolled back by hand")
    emit_json(result) if json_out else console.print(f"{result['name']} champion is back to v{result['version']}")
