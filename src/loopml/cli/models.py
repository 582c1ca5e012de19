"""`loopml models`: the registered versions of the project's model and their aliases."""

from __future__ import annotations

import typer

from loopml.cli.output import console, emit_json, table
from loopml.uri import CHALLENGER, CHAMPION

app = typer.Typer(help="List registered versions; move `champion` by hand (promote, rollback).", no_args_is_help=True)
REASON = typer.Option("", "--reason", "-m", help="Why; recorded on the version with who and when.")
JSON = typer.Option(False, "--json", help="Print the result as JSON.")


@app.command("list")
def list_versions(json_out: bool = JSON) -> None:
    """Every registered version: aliases, variant (base or the optimize variant), key metrics, data
    digest, when and why aliases moved."""
    from loopml.contracts import Tag
    from loopml.project import Project
    from loopml.registry import Registry

    versions = Registry.of(Project.find()).versions()
    if json_out:
        emit_json(versions)
        return
    if not versions:
        console.print("No registered versions yet; `loopml run` registers the first model that passes the gates.")
        return
    rows = []
    for v in versions:
        metrics = v.metrics
        shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("accuracy", "mae", "r2") if k in metrics)
        moved = v.moved(CHAMPION) or v.moved(CHALLENGER)
        rows.append([v.version, ", ".join(v.aliases), v.tags.get(Tag.VARIANT, "base"), shown, v.created,
                     v.data_digest[:10], moved.why if moved else ""])  # fmt: skip
    table(versions[0].name, ["version", "aliases", "variant", "metrics", "created", "data", "last alias move"], rows)


@app.command()
def promote(
    version: str = typer.Argument(..., help="The version number to promote."),
    alias: str = typer.Option("champion", "--alias", help="The alias to move (champion or challenger)."),
    reason: str = REASON,
    json_out: bool = JSON,
) -> None:
    """Point an alias (default `champion`) at VERSION; the previous champion is remembered for rollback."""
    from loopml.project import Project
    from loopml.registry import Registry
    from loopml.uri import check_alias

    result = Registry.of(Project.find()).promote(version, reason or "promoted by hand", alias=check_alias(alias))
    emit_json(result) if json_out else console.print(f"{result.name} v{result.version} is now {alias}")


@app.command()
def rollback(reason: str = REASON, json_out: bool = JSON) -> None:
    """Move `champion` back to the version it replaced."""
    from loopml.project import Project
    from loopml.registry import Registry

    result = Registry.of(Project.find()).rollback(reason or "rolled back by hand")
    emit_json(result) if json_out else console.print(f"{result.name} champion is back to v{result.version}")
