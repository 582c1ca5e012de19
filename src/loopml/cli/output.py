"""Printing for the CLI: Rich for people (stderr for chatter, stdout for results), JSON for scripts."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console

console = Console()  # results
err = Console(stderr=True)  # progress, notes, errors


def emit_json(payload: Any) -> None:
    """The result as JSON on stdout, alone (typed results, NumPy values and paths become JSON)."""
    from loopml.contracts import to_json

    sys.stdout.write(to_json(payload))
    sys.stdout.flush()


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    view = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        view.add_column(column)
    for row in rows:
        view.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(view)


def number(value: float | None) -> str:
    """A statistic in a table: four decimals, or a dash when there is none."""
    return "—" if value is None else f"{value:.4f}"
