"""`loopml deploy`: render deployment recipes (today: the GPU dev environment)."""

from __future__ import annotations

from pathlib import Path

import typer

from loopml.cli.output import console, emit_json

app = typer.Typer(help="Render deployment recipes: Dockerfiles, compose files.", no_args_is_help=True)


@app.command("render")
def render(
    target: str = typer.Argument(..., help="What to render: devenv (GPU Jupyter + SSH dev environment)."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder to write (default: ./<target>)."),
    cuda: str = typer.Option("12.8.1", "--cuda", help="CUDA 12.x version of the nvidia/cuda base image."),
    force: bool = typer.Option(False, "--force", help="Overwrite files in a non-empty folder."),
    json_out: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write a ready-to-build recipe, e.g. `loopml deploy render devenv`, then `docker compose up -d --build`."""
    from loopml.deploy.render import render as write

    result = write(target, out or Path(target), force=force, cuda=cuda)
    if json_out:
        emit_json(result)
        return
    console.print(f"Wrote {target} to {result['out']}: {', '.join(result['files'])}")
    console.print(f"Next: cd {result['out']} && docker compose up -d --build")
