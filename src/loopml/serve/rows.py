"""What every protocol reduces a request to, so the batcher can stack requests from any of them:

- a float64 matrix (rows x inputs, in training order) for models whose inputs are all numbers (the
  fast path: no pandas between the socket and the model);
- a `Table` of named 1-D columns (float64 for numbers and booleans, objects for text and dates) for
  models that take raw table columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Table:
    columns: dict[str, np.ndarray]  # name -> 1-D array, all the same length, in the model's input order
    rows: int

    def __len__(self) -> int:
        return self.rows

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.columns, copy=False)


Rows = np.ndarray | Table


def length(rows: Rows) -> int:
    return len(rows)


def part(rows: Rows, start: int, stop: int) -> Rows:
    if isinstance(rows, Table):
        return Table({k: v[start:stop] for k, v in rows.columns.items()}, max(0, min(stop, rows.rows) - start))
    return rows[start:stop]


def join(items: list[Rows]) -> Rows:
    if len(items) == 1:
        return items[0]
    if isinstance(items[0], Table):
        names = list(items[0].columns)
        return Table({n: np.concatenate([t.columns[n] for t in items]) for n in names}, sum(t.rows for t in items))
    return np.concatenate(items)
