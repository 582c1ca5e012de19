"""Reference profiles: a dataset binned once, so drift checks only count new rows into fixed cells.

Numeric columns get a fine quantile grid (`NUMERIC_CELLS` cells between the reference
quantiles, so heavy tails keep their resolution) plus underflow, overflow and null cells;
the sums of how far under/overflow values lie beyond the grid are kept too, so the
Wasserstein distance stays exact in the tails. Columns with few distinct values, and text
columns, are categorical: a count per reference category plus "unseen" and null cells.

A profile is a grid (fitted once on reference data) plus counts; counts of chunks add up
to the counts of the whole (`merge`), so big data is profiled chunk by chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

NUMERIC_CELLS = 200  # equal-mass cells: binned KS distance is within 1/200 of the exact value
# Extra quantile levels in both tails: equal-mass cells there are very wide (heavy tails), and
# narrow tail cells keep the Wasserstein distance close to exact.
TAIL_LEVELS = np.geomspace(1e-5, 4e-3, 10)
MAX_CATEGORIES = 20  # numeric columns with at most this many distinct values count as categorical
PROFILE_FORMAT = 1
PREDICTION_COLUMN = "__prediction__"  # the model's outputs, profiled beside its inputs


@dataclass
class ColumnProfile:
    name: str
    kind: str  # "numeric" or "categorical"
    edges: np.ndarray | None = None  # numeric: increasing edges (reference quantiles at `levels`)
    levels: np.ndarray | None = None  # numeric: the quantile level of each edge (0 ... 1)
    categories: list[Any] | None = None  # categorical: the reference's categories
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0))  # numeric: [under, cells..., over]
    nulls: int = 0
    rows: int = 0
    total: float = 0.0  # numeric: sum and sum of squares of non-null values (mean, std)
    total_sq: float = 0.0
    beyond_low: float = 0.0  # numeric: sum of (edges[0] - x) over underflow values
    beyond_high: float = 0.0  # numeric: sum of (x - edges[-1]) over overflow values

    # -- counting ---------------------------------------------------------------------------
    def count(self, values: pd.Series) -> ColumnProfile:
        """A profile of `values` on this column's grid."""
        out = ColumnProfile(self.name, self.kind, self.edges, self.levels, self.categories)
        out.rows = len(values)
        if self.kind == "numeric":
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            finite = numbers[np.isfinite(numbers)]
            out.nulls = int(len(numbers) - len(finite))
            cells = np.searchsorted(self.edges, finite, side="right")  # 0: under, len(edges): over
            cells[finite == self.edges[-1]] = len(self.edges) - 1  # the top edge belongs to the last cell
            out.counts = np.bincount(cells, minlength=len(self.edges) + 1).astype(np.int64)
            out.total, out.total_sq = float(finite.sum()), float(np.square(finite).sum())
            out.beyond_low = float((self.edges[0] - finite[finite < self.edges[0]]).sum())
            out.beyond_high = float((finite[finite > self.edges[-1]] - self.edges[-1]).sum())
        else:
            present = values.dropna()
            out.nulls = int(len(values) - len(present))
            numbers = all(isinstance(c, int | float) for c in self.categories)
            if numbers and pd.api.types.is_numeric_dtype(present):  # 3 and 3.0 are the same category
                codes = pd.Index([float(c) for c in self.categories]).get_indexer(present.astype(float))
            else:  # -1: a value the reference never had
                codes = pd.Index([str(c) for c in self.categories]).get_indexer(present.astype(str))
            counts = np.bincount(codes + 1, minlength=len(self.categories) + 1)  # code -1: unseen
            out.counts = np.concatenate([counts[1:], counts[:1]]).astype(np.int64)  # [categories..., unseen]
        return out

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        if self.kind != other.kind or not _same_grid(self, other):
            raise ValueError(f"column {self.name}: profiles on different grids cannot be merged")
        out = ColumnProfile(self.name, self.kind, self.edges, self.levels, self.categories)
        out.counts = self.counts + other.counts
        for name in ("nulls", "rows", "total", "total_sq", "beyond_low", "beyond_high"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        return out

    def decile_starts(self) -> np.ndarray:
        """Index (into `counts`) of the first cell of each reference decile; cell 0 is underflow."""
        # a hair below each level: 0.3 may be stored as 0.30000000000000004 or 0.29999999999999993
        return np.concatenate([[1], np.searchsorted(self.levels, np.linspace(0.1, 0.9, 9) - 1e-9) + 1])

    # -- summaries --------------------------------------------------------------------------
    @property
    def present(self) -> int:
        return int(self.counts.sum())

    @property
    def mean(self) -> float:
        return self.total / self.present if self.present else float("nan")

    @property
    def std(self) -> float:
        if self.present < 2:
            return 0.0
        variance = (self.total_sq - self.total**2 / self.present) / (self.present - 1)
        return float(np.sqrt(max(variance, 0.0)))

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in ("name", "kind", "nulls", "rows", "total", "total_sq", "beyond_low",
                                                "beyond_high")}  # fmt: skip
        data["counts"] = self.counts.tolist()
        data["edges"] = None if self.edges is None else self.edges.tolist()
        data["levels"] = None if self.levels is None else self.levels.tolist()
        data["categories"] = self.categories
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnProfile:
        arrays = [None if data[k] is None else np.asarray(data[k]) for k in ("edges", "levels")]
        column = cls(data["name"], data["kind"], *arrays, data["categories"])
        column.counts = np.asarray(data["counts"], dtype=np.int64)
        for name in ("nulls", "rows", "total", "total_sq", "beyond_low", "beyond_high"):
            setattr(column, name, data[name])
        return column


@dataclass
class Profile:
    columns: dict[str, ColumnProfile]

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> Profile:
        """Fit the grid on reference data and count it: the reference profile."""
        grid = {name: _grid(name, frame[name]) for name in frame.columns}
        return cls({name: column.count(frame[name]) for name, column in grid.items()})

    def count(self, frame: pd.DataFrame) -> Profile:
        """Count `frame` on this profile's grid (columns it lacks are counted as all-null)."""
        empty = pd.Series([np.nan] * len(frame), dtype="float64")
        return Profile({name: column.count(frame[name] if name in frame.columns else empty)
                        for name, column in self.columns.items()})  # fmt: skip

    def merge(self, other: Profile) -> Profile:
        return Profile({name: column.merge(other.columns[name]) for name, column in self.columns.items()})

    def to_dict(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, "columns": [c.to_dict() for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        return cls({c["name"]: ColumnProfile.from_dict(c) for c in data["columns"]})


def _grid(name: str, values: pd.Series) -> ColumnProfile:
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    present = values.dropna()
    if numeric:
        finite = present.to_numpy(dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        distinct = np.unique(finite)
        if len(distinct) > MAX_CATEGORIES:
            levels = np.unique(np.concatenate([np.linspace(0, 1, NUMERIC_CELLS + 1), TAIL_LEVELS, 1 - TAIL_LEVELS]))
            edges = np.quantile(finite, levels)
            keep = np.concatenate([[True], np.diff(edges) > 0])  # repeated values: one edge, its first level
            return ColumnProfile(str(name), "numeric", edges=edges[keep], levels=levels[keep])
        return ColumnProfile(str(name), "categorical", categories=[_plain(v) for v in distinct])
    categories = sorted({str(v) for v in present.unique()})
    return ColumnProfile(str(name), "categorical", categories=categories)


def _same_grid(a: ColumnProfile, b: ColumnProfile) -> bool:
    if a.kind == "numeric":
        return np.array_equal(a.edges, b.edges)
    return a.categories == b.categories


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value
