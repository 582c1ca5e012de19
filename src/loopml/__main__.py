"""`python -m loopml` runs the CLI."""

from loopml.cli.main import run

run()
