"""`loopml data`: the project's data remote, and pushing and pulling data versions through it."""

from __future__ import annotations

import typer

from loopml.cli.output import console, emit_json

app = typer.Typer(help="Data versions that travel: a DVC remote, push, pull.", no_args_is_help=True)
remote_app = typer.Typer(help="The project's data remote (`remote:` in loopml.yaml).", no_args_is_help=True)
app.add_typer(remote_app, name="remote")
JSON = typer.Option(False, "--json", help="Print the result as JSON.")


@remote_app.command("add")
def remote_add(
    url: str = typer.Argument(..., help="s3://bucket/path, gs://bucket/path, azure://container/path or a folder."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", help="An S3-compatible server: http(s)://host:port."),
) -> None:
    """Record the data remote in loopml.yaml and in DVC's config (credentials: environment or .env)."""
    from loopml.data import remote
    from loopml.project import Project

    where = remote.add(Project.find(), url, endpoint_url)
    console.print(f"data remote: {where}" + (f" (endpoint {endpoint_url})" if endpoint_url else ""))
    console.print("Next: `loopml run --push`, or `loopml data push`; a clone gets the data with `loopml data pull`.")


@app.command()
def push(json_out: bool = JSON) -> None:
    """Send every data version and stage output in the DVC cache to the data remote."""
    _transfer("push", json_out)


@app.command()
def pull(json_out: bool = JSON) -> None:
    """Fetch the data and stage outputs this checkout's DVC files name from the data remote."""
    _transfer("pull", json_out)


def _transfer(direction: str, json_out: bool) -> None:
    from dataclasses import asdict

    from loopml.data import remote
    from loopml.project import Project

    project = Project.find()
    done = remote.push(project) if direction == "push" else remote.pull(project)
    if json_out:
        emit_json(asdict(done))
    else:
        console.print(f"{direction}: {done.summary} ({done.remote})")
