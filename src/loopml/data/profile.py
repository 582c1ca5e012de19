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

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopml.data import columns

NUMERIC_CELLS = 200  # equal-mass cells: binned KS distance is within 1/200 of the exact value
# Extra quantile levels in both tails: equal-mass cells there are very wide (heavy tails), and
# narrow tail cells keep the Wasserstein distance close to exact.
TAIL_LEVELS = np.geomspace(1e-5, 4e-3, 10)
LEVELS = np.unique(np.concatenate([np.linspace(0, 1, NUMERIC_CELLS + 1), TAIL_LEVELS, 1 - TAIL_LEVELS]))
MAX_CATEGORIES = 20  # numeric columns with at most this many distinct values count as categorical
GRID_SAMPLE = 100_000  # the quantile grid is fitted on at most this many values (an even stride)
PROFILE_FORMAT = 1
CHUNK = 1 << 16  # values counted per step: 512 KiB of float64 and its temporaries fit in L2
SMALL = 1 << 15  # columns of at most this many values are counted by binary search, without a lookup table
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
    absent: bool = False  # a count of data that lacks the column (it was counted as all-null)
    mismatch: str = ""  # a count of data holding another type there ("text", "true/false", "nested")
    _table: _LookupTable | None = field(default=None, repr=False, compare=False)

    # -- counting ---------------------------------------------------------------------------
    def count(self, values: columns.Column) -> ColumnProfile:
        """A profile of `values` (pandas, pyarrow or NumPy) on this column's grid."""
        numeric = columns.is_numeric(values)
        if (self.kind == "numeric" and not numeric) or columns.is_nested(values):
            return self._mismatched(values)
        if self.kind == "numeric":
            return self._count_numbers(columns.float_blocks(values), len(values))
        return self._count_categories(*columns.value_counts(values), len(values))

    def _mismatched(self, values: columns.Column) -> ColumnProfile:
        """Values of another type: nothing to count on this grid; every row counts as null."""
        out = self._empty(len(values))
        size = len(self.edges) + 1 if self.kind == "numeric" else len(self.categories) + 1
        out.counts, out.nulls, out.mismatch = np.zeros(size, dtype=np.int64), len(values), columns.kind_name(values)
        return out

    def _count_numbers(self, blocks: list[columns.FloatBlock], rows: int) -> ColumnProfile:
        out = self._empty(rows)
        if rows <= SMALL:  # few values: a binary search each costs less than the lookup table (512 KiB)
            counts, sums = _count_small(self.edges, blocks)
        else:
            if self._table is None:
                self._table = _LookupTable(self.edges)
            counts, sums = self._table.count(blocks)
        out.counts, out.nulls = counts[:-1], int(counts[-1])
        out.total, out.total_sq, out.beyond_low, out.beyond_high = sums
        return out

    def _count_categories(self, uniques: list[Any], per_unique: np.ndarray, nulls: int, rows: int) -> ColumnProfile:
        out = self._empty(rows)
        out.nulls = nulls
        where = columns.category_index(self.categories, uniques)  # -1: a value the reference never had
        out.counts = np.zeros(len(self.categories) + 1, dtype=np.int64)  # [categories..., unseen]
        np.add.at(out.counts, np.where(where >= 0, where, len(self.categories)), per_unique)
        return out

    def _empty(self, rows: int) -> ColumnProfile:
        """A profile on this grid with no counts yet (sharing the lookup table)."""
        out = ColumnProfile(self.name, self.kind, self.edges, self.levels, self.categories, _table=self._table)
        out.rows = rows
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
        """Index (into `counts`) of the first cell of each reference decile, increasing; cell 0 is
        underflow. A point mass wider than a decile (its edges were merged) merges those deciles."""
        # a hair below each level: 0.3 may be stored as 0.30000000000000004 or 0.29999999999999993
        starts = np.searchsorted(self.levels, np.linspace(0.1, 0.9, 9) - 1e-9) + 1
        last_inner = len(self.edges) - 1
        return np.unique(np.clip(np.concatenate([[1], starts]), 1, max(last_inner, 1)))

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
                                                "beyond_high", "absent", "mismatch")}  # fmt: skip
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
        column.absent, column.mismatch = bool(data.get("absent", False)), data.get("mismatch", "")
        return column


@dataclass
class Profile:
    columns: dict[str, ColumnProfile]
    skipped: dict[str, str] = field(default_factory=dict)  # columns not profiled, and why

    @classmethod
    def fit(cls, frame) -> Profile:
        """Fit the grid on reference data (a pandas DataFrame or a pyarrow Table) and count it:
        the reference profile. Nested columns and identifiers are skipped (with the reason)."""
        names, skipped = [], {}
        for name in columns.names(frame):
            values = frame[name]
            if columns.is_nested(values):
                skipped[str(name)] = "nested values (lists, structs or maps): not compared"
            elif str(name) != PREDICTION_COLUMN and columns.looks_like_id(values, str(name)):
                skipped[str(name)] = "an identifier or free text (a distinct value per row): not compared"
            else:
                names.append(name)
        text = [name for name in names if not columns.is_numeric(frame[name])]
        return cls(_side_by_side(lambda name: _fit(str(name), frame[name]), names, text), skipped)

    def count(self, frame) -> Profile:
        """Count `frame` on this profile's grid (columns it lacks are counted as all-null, and marked)."""
        present, missing = set(columns.names(frame)), np.full(len(frame), np.nan)

        def count(name: str) -> ColumnProfile:
            if name in present:
                return self.columns[name].count(frame[name])
            counted = self.columns[name].count(missing)
            counted.absent = True
            return counted

        categorical = [name for name, column in self.columns.items() if column.kind == "categorical"]
        return Profile(_side_by_side(count, list(self.columns), categorical), dict(self.skipped))

    def merge(self, other: Profile) -> Profile:
        return Profile({name: column.merge(other.columns[name]) for name, column in self.columns.items()},
                       dict(self.skipped))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, "columns": [c.to_dict() for c in self.columns.values()],
                "skipped": self.skipped}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        return cls({c["name"]: ColumnProfile.from_dict(c) for c in data["columns"]}, dict(data.get("skipped", {})))


class _LookupTable:
    """The cell of a value in one multiply and one gather, for most values.

    A binary search among the edges costs ~50 ns a value; instead a uniform table of 2^18
    buckets over the grid's range gives each bucket's cell, and only values in buckets that
    hold an edge (or lie outside the grid) fall back to the binary search. Counting runs over
    cache-sized chunks into preallocated buffers: memory traffic and page faults, not
    arithmetic, are what this costs.
    """

    BUCKETS = 1 << 18

    def __init__(self, edges: np.ndarray):
        self.edges = edges
        self.low = float(edges[0])
        span = float(edges[-1] - edges[0])
        self.scale = self.BUCKETS / span if span > 0 else 0.0
        # Cells past the grid's: the null cell, then "pending", for values the binary search decides.
        self.null_cell, self.pending = len(edges) + 1, len(edges) + 2
        # Slot 0: NaN (its cast to an integer is clipped to 0). Slot 1: below the grid; the last
        # slot: at or above the top edge. Both are decided exactly: they hold ±inf (nulls too) and
        # the top edge itself (which closes the last cell).
        self.table = np.concatenate([np.array([self.null_cell, self.pending], np.int16), self._buckets(),
                                     np.array([self.pending], np.int16)])  # fmt: skip

    def _buckets(self) -> np.ndarray:
        """The cell of each bucket, or `pending` where a bucket holds an edge.

        Bucket j spans [start(j), start(j+1)), start(j) = low + j / scale, widened by a millionth
        of its width on both sides: rounding in (x - low) * scale may put a value a hair across a
        boundary. Edge i lies before every bucket from J1[i] = min{j : start(j) - margin >= edge}
        on, and may lie inside buckets J2[i] = min{j : start(j+1) + margin >= edge} to J1[i] - 1.
        Both are found by bisection over j, per edge, with the same float arithmetic a value meets:
        no per-bucket arrays are built (40x less work than a search per bucket, no page faults).
        """
        edges, buckets = self.edges, self.BUCKETS
        if not self.scale:
            return np.full(buckets, self.pending)
        margin = 1e-6 / self.scale
        j1 = _first_bucket(lambda j: (self.low + j / self.scale) - margin >= edges, len(edges), buckets)
        j2 = _first_bucket(lambda j: (self.low + (j + 1) / self.scale) + margin >= edges, len(edges), buckets)
        # the cell is the number of edges before the bucket: constant between consecutive J1
        cells = np.repeat(np.arange(len(edges) + 1, dtype=np.int16), np.diff(np.concatenate([[0], j1, [buckets]])))
        for inside_from, inside_to in zip(j2, j1, strict=True):
            cells[inside_from:inside_to] = self.pending
        return cells

    @np.errstate(invalid="ignore", over="ignore")  # NaN's cast to an integer; huge values times scale
    def count(self, blocks: list[columns.FloatBlock]) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """Counts per cell `[under, cells..., over, null]` of `blocks` (nulls, NaN and ±inf are
        nulls), and the sum, sum of squares, underflow excess and overflow excess of the rest."""
        top = float(self.BUCKETS + 2)
        counts = np.zeros(len(self.edges) + 3, dtype=np.int64)
        pending: list[np.ndarray] = []  # values for the binary search, decided once at the end
        shifted_sum = shifted_sq = 0.0
        steps = ((block, start) for block in blocks for start in range(0, len(block), CHUNK))
        for block, start in steps:
            chunk = block.values[start : start + CHUNK]
            shifted, position, cells, index, mask = _BUFFERS.sized(len(chunk))
            np.subtract(chunk, self.low, out=shifted)  # also summed below: shifted sums lose less precision
            if block.nulls is not None:  # Arrow's null slots hold anything: NaN, so they land in the null cell
                np.copyto(shifted, np.nan, where=block.nulls[start : start + CHUNK])
            np.multiply(shifted, self.scale, out=position)
            position += 2.0
            np.clip(position, 1.0, top, out=position)  # NaN stays NaN
            np.copyto(index, position, casting="unsafe")  # NaN casts to INT_MIN (x86) or 0 (ARM): slot 0 either way
            np.take(self.table, index, out=cells, mode="clip")
            per_cell = np.bincount(cells, minlength=len(counts))
            counts += per_cell
            if per_cell[self.pending]:
                pending.append(chunk[np.equal(cells, self.pending, out=mask)])
            if per_cell[self.null_cell]:  # NaN: out of the sums
                np.copyto(shifted, 0.0, where=np.equal(cells, self.null_cell, out=mask))
            chunk_sum = float(shifted.sum())
            if not np.isfinite(chunk_sum):  # ±inf (rare): out of the sums too; counted as nulls below
                np.copyto(shifted, 0.0, where=np.isinf(shifted, out=mask))
                chunk_sum = float(shifted.sum())
            shifted_sum += chunk_sum
            # not np.dot: OpenBLAS would run it on a second thread that then spins between calls,
            # burning the core Arrow reads the next file on (measured: +1.5 s of CPU per run)
            shifted_sq += float(np.einsum("i,i->", shifted, shifted))
        beyond = self._decide_pending(pending, counts)
        present = int(counts[: self.null_cell].sum())
        # back from values shifted by `low`: Σx = Σd + n·low, Σx² = Σd² + 2·low·Σd + n·low²
        total = shifted_sum + present * self.low
        total_sq = shifted_sq + 2 * self.low * shifted_sum + present * self.low**2
        return counts[: self.pending], (total, total_sq, *beyond)

    def _decide_pending(self, pending: list[np.ndarray], counts: np.ndarray) -> tuple[float, float]:
        """Move the pending values into their cells by binary search; return the underflow and
        overflow excess (every value past the grid is pending)."""
        if not pending:
            return 0.0, 0.0
        edges = self.edges
        values = np.concatenate(pending)
        cells = np.searchsorted(edges, values, side="right")
        cells[values == edges[-1]] = len(edges) - 1  # the top edge closes the last cell
        cells[np.isinf(values)] = self.null_cell
        counts[self.pending] = 0
        counts += np.bincount(cells, minlength=len(counts))
        return float((edges[0] - values[cells == 0]).sum()), float((values[cells == len(edges)] - edges[-1]).sum())


def _count_small(edges: np.ndarray, blocks: list[columns.FloatBlock]) -> tuple[np.ndarray, tuple]:
    """What `_LookupTable.count` returns, by one binary search per value: for a few hundred rows (a
    live window, a 10,000-column table of 300 rows) building 512 KiB of table per column costs more."""
    values = np.concatenate([b.masked() for b in blocks]) if blocks else np.zeros(0)
    finite = values[np.isfinite(values)]
    cells = np.searchsorted(edges, finite, side="right")
    cells[finite == edges[-1]] = len(edges) - 1  # the top edge closes the last cell
    counts = np.bincount(cells, minlength=len(edges) + 1).astype(np.int64)
    counts = np.append(counts, len(values) - len(finite))  # the null cell
    low, high = finite[cells == 0], finite[cells == len(edges)]
    sums = (float(finite.sum()), float(np.einsum("i,i->", finite, finite)), float((edges[0] - low).sum()),
            float((high - edges[-1]).sum()))  # fmt: skip
    return counts, sums


def _first_bucket(reached, edges: int, buckets: int) -> np.ndarray:
    """Per edge, the least bucket j in [0, buckets) where `reached(j)` (monotone in j, evaluated for
    all edges at once) holds, or `buckets` where none does: a bisection, 18 steps for 2^18."""
    low, high = np.zeros(edges, dtype=np.int64), np.full(edges, buckets, dtype=np.int64)
    while np.any(low < high):
        middle = (low + high) // 2
        holds = reached(middle.astype(np.float64)) & (low < high)
        high = np.where(holds, middle, high)
        low = np.where(holds | (low >= high), low, middle + 1)
    return low


class _Buffers(threading.local):
    """Scratch arrays for one chunk, allocated once per thread: fresh ones per column cost page faults."""

    def __init__(self):
        self.arrays = (np.empty(CHUNK), np.empty(CHUNK), np.empty(CHUNK, dtype=np.int16),
                       np.empty(CHUNK, dtype=np.int32), np.empty(CHUNK, dtype=bool))  # fmt: skip

    def sized(self, n: int) -> tuple[np.ndarray, ...]:
        return tuple(a[:n] for a in self.arrays)


_BUFFERS = _Buffers()


def _side_by_side(work, names: list, aside: list) -> dict:
    """{name: work(name)} in `names` order; the `aside` names done on a helper thread meanwhile.

    Categories are counted by Arrow's value_counts, one call that releases the GIL, so they take
    the second core while numbers are counted here (check of 1M x 50: 0.37 -> 0.24 s). Numbers
    stay on one thread: their many short NumPy calls (bincount, the casts) hold the GIL, and
    splitting them gained little.
    """
    apart = set(aside)
    here = [name for name in names if name not in apart]
    if not aside or not here:
        return {name: work(name) for name in names}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        later = pool.submit(lambda: {name: work(name) for name in aside})
        done = {name: work(name) for name in here}
        done.update(later.result())
    return {name: done[name] for name in names}


def _fit(name: str, values: columns.Column) -> ColumnProfile:
    """One column's grid, fitted on `values`, and its counts of them (the values read once)."""
    if columns.is_numeric(values):
        blocks = columns.float_blocks(values)
        head = blocks[0].masked(stop=10_000) if blocks else np.zeros(0)
        # Few distinct values: categorical. A slice answers that for most columns without a full sort.
        distinct = np.unique(head[np.isfinite(head)])
        if len(distinct) <= MAX_CATEGORIES:
            everything = np.concatenate([b.masked() for b in blocks]) if blocks else head
            distinct = np.unique(everything[np.isfinite(everything)])
        if len(distinct) > MAX_CATEGORIES:
            sample = _stride_sample(blocks, GRID_SAMPLE)  # the grid is only where cells lie; counts stay exact
            finite = sample[np.isfinite(sample)]
            if len(finite) <= MAX_CATEGORIES:  # mostly nulls: the stride missed the values
                everything = np.concatenate([b.masked() for b in blocks])
                finite = everything[np.isfinite(everything)]
            edges = _quantiles(finite, LEVELS)
            keep = np.concatenate([[True], np.diff(edges) > 0])  # repeated values: one edge, its first level
            grid = ColumnProfile(name, "numeric", edges=edges[keep], levels=LEVELS[keep])
            return grid._count_numbers(blocks, len(values))
        return ColumnProfile(name, "categorical", categories=[_plain(v) for v in distinct]).count(values)
    counted = columns.value_counts(values)
    grid = ColumnProfile(name, "categorical", categories=sorted({str(v) for v in counted[0]}))
    return grid._count_categories(*counted, len(values))


def _stride_sample(blocks: list[columns.FloatBlock], size: int) -> np.ndarray:
    """Every k-th value across `blocks` (NaN for nulls), at most about `size` of them."""
    step = max(1, sum(len(b) for b in blocks) // size)
    picked, phase = [], 0
    for block in blocks:
        picked.append(block.masked(step, start=phase))
        phase = (phase - len(block)) % step
    return np.concatenate(picked) if picked else np.zeros(0)


def _quantiles(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """`np.quantile(values, levels)` (equal to it), from one sort: 30% faster than its partitions
    for 231 levels."""
    ordered = np.sort(values)
    position = levels * (len(ordered) - 1)
    below = np.floor(position).astype(np.intp)
    low, high = ordered[below], ordered[np.minimum(below + 1, len(ordered) - 1)]
    step, fraction = high - low, position - below
    return np.where(fraction >= 0.5, high - step * (1 - fraction), low + step * fraction)  # NumPy's monotone lerp


def _same_grid(a: ColumnProfile, b: ColumnProfile) -> bool:
    if a.kind == "numeric":
        return np.array_equal(a.edges, b.edges)
    return a.categories == b.categories


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value
