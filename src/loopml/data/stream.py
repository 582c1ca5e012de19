"""Data larger than memory: a Parquet table read row group by row group, never whole.

A `TableStream` is the raw Parquet file plus the labelled traffic files, seen as a list of pieces
(one per row group). Which rows are held out for evaluation, and which training rows validate
early stopping, is a function of each row's position in the table (a seeded hash), never of a
pass over the data: every stage, every rank and every DataLoader worker agree on the split without
talking, and how many training rows each piece holds is known from the footers alone.

Training reads its pieces in a seeded order that changes every epoch, each rank (and each worker
of a rank) taking its own pieces, as DistributedSampler with `set_epoch` does for rows. Whatever
is fitted on data (column roles, the preprocessing, the scales) is fitted on a uniform sample of
at most `SAMPLE_ROWS` training rows; the early-stopping rows are capped at `VAL_ROWS`. So what a
training holds in memory is bounded by the sample and one row group, not by the table.

Streaming is on with `data.streaming: true`, or with `auto` (the default) for a torch model
whose Parquet data exceeds `data.stream_above_mb`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from loopml.data.io import is_url, table_format
from loopml.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from loopml.project import Project

SAMPLE_ROWS = 100_000  # training rows the roles, preprocessing and scales are fitted on
VAL_ROWS = 50_000  # at most this many training rows validate early stopping (held in memory)
# the parts of the table: TEST is held out for evaluation; TRAIN is the rest, of which VAL validates
# early stopping and FIT is what the network steps on
TRAIN, TEST, VAL, FIT = "train", "test", "val", "fit"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Piece:
    """One row group of one file, and where its rows sit in the whole table."""

    source: str
    row_group: int
    offset: int  # the table-wide position of its first row
    rows: int


def streams(project: Project) -> bool:
    """Does this project train (and evaluate) from a stream? One answer for every stage."""
    cfg = project.config
    if cfg.data.streaming is False:
        return False
    path = project.data_path
    parquet = table_format(path) == "parquet"
    if cfg.data.streaming is True:
        if not parquet:
            raise ConfigError(f"data.streaming: true reads Parquet row groups; {cfg.data.path} is not Parquet: "
                              "convert it once (pandas.read_csv(...).to_parquet(..., row_group_size=100_000)) or "
                              "set data.streaming: auto")  # fmt: skip
        if cfg.model.type != "torch":
            raise ConfigError("data.streaming: true trains torch models, batch by batch; a scikit-learn estimator "
                              "fits in memory: set data.streaming: auto (or false), or model.type: torch")  # fmt: skip
        return True
    if not parquet or cfg.model.type != "torch" or is_url(path):
        return False
    import os

    return os.path.getsize(path) > cfg.data.stream_above_mb * (1 << 20)


def split_codes(positions: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """A uniform number in [0, 1) for each table position: splitmix64 of (seed, salt, position)."""
    with np.errstate(over="ignore"):
        x = positions.astype(np.uint64) + np.uint64((seed * 1_000_003 + salt) & 0xFFFFFFFF) * _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


class TableStream:
    """The project's table as pieces, with the split every stage agrees on."""

    def __init__(self, sources: list[str], test_size: float, seed: int, val_size: float = 0.1,
                 columns: list[str] | None = None):  # fmt: skip
        self.sources = sources
        self.test_size, self.seed, self.val_size = test_size, seed, val_size
        self.columns = columns  # what is read (None: every column)

    @classmethod
    def of(cls, project: Project) -> TableStream:
        from loopml.data.dataset import traffic_files

        cfg = project.config
        return cls([project.data_path, *map(str, traffic_files(project))], cfg.data.test_size, cfg.data.seed,
                   cfg.train.val_size)  # fmt: skip

    def reading(self, columns: list[str]) -> TableStream:
        """The same stream, reading only `columns`."""
        return TableStream(self.sources, self.test_size, self.seed, self.val_size, columns)

    # -- layout, from the footers ---------------------------------------------------------------
    @cached_property
    def pieces(self) -> list[Piece]:
        pieces, offset = [], 0
        for source in self.sources:
            meta = _open(source).metadata
            for group in range(meta.num_row_groups):
                rows = meta.row_group(group).num_rows
                if rows:
                    pieces.append(Piece(source, group, offset, rows))
                offset += rows
        if not pieces:
            raise DataError(f"{self.sources[0]}: the dataset is empty (no rows in any row group)")
        return pieces

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.pieces)

    @cached_property
    def val_rate(self) -> float:
        """The share of training rows that validate: `val_size`, capped at `VAL_ROWS` rows."""
        train = self.rows * (1 - self.test_size)
        return min(self.val_size, VAL_ROWS / max(train, 1.0))

    def mask(self, piece: Piece, part: str) -> np.ndarray:
        """Which of `piece`'s rows belong to `part` (TRAIN, TEST, VAL or FIT)."""
        positions = np.arange(piece.offset, piece.offset + piece.rows, dtype=np.uint64)
        test = split_codes(positions, self.seed, 0) < self.test_size
        if part in (TEST, TRAIN):
            return test if part == TEST else ~test
        val = split_codes(positions, self.seed, 1) < self.val_rate
        return ~test & (val if part == VAL else ~val)

    @cached_property
    def _counts(self) -> dict[str, np.ndarray]:
        return {part: np.array([int(self.mask(p, part).sum()) for p in self.pieces])
                for part in (TRAIN, TEST, VAL, FIT)}  # fmt: skip

    @cached_property
    def _index(self) -> dict[Piece, int]:
        return {piece: i for i, piece in enumerate(self.pieces)}

    def count(self, part: str) -> int:
        return int(self._counts[part].sum())

    # -- reading ------------------------------------------------------------------------------------
    def read(self, piece: Piece, part: str | None = None, rows: np.ndarray | None = None) -> pd.DataFrame:
        """`piece`'s rows (those of `part`, or those `rows` selects) as pandas."""
        parquet = _open(piece.source)
        columns = self.columns
        if columns is not None:  # a traffic file may lack a column (an excluded ID): missing values
            columns = [c for c in columns if c in parquet.schema_arrow.names]
        table = parquet.read_row_group(piece.row_group, columns=columns)
        if part is not None:
            rows = self.mask(piece, part)
        if rows is not None:
            import pyarrow as pa

            table = table.filter(pa.array(rows))
        frame = table.to_pandas()
        return frame if self.columns is None or columns == self.columns else frame.reindex(columns=self.columns)

    def frames(self, part: str, pieces: list[Piece] | None = None) -> Iterator[pd.DataFrame]:
        """Every row of `part`, piece after piece (the pieces given, or all)."""
        for piece in self.pieces if pieces is None else pieces:
            if self._counts[part][self._index[piece]]:
                yield self.read(piece, part)

    def sample(self, part: str = TRAIN, size: int = SAMPLE_ROWS) -> pd.DataFrame:
        """A uniform sample of at most `size` rows of `part` (the same rows on every call)."""
        import pandas as pd

        rate = min(1.0, size / max(self.count(part), 1))
        chosen = []
        for piece in self.pieces:
            positions = np.arange(piece.offset, piece.offset + piece.rows, dtype=np.uint64)
            keep = self.mask(piece, part) & (split_codes(positions, self.seed, 2) < rate)
            if keep.any():
                chosen.append(self.read(piece, rows=keep))
        if not chosen:
            raise DataError(f"{self.sources[0]}: no {part} rows to sample")
        return pd.concat(chosen, ignore_index=True)

    # -- sharding -----------------------------------------------------------------------------------
    def shard(self, epoch: int, rank: int, world: int, worker: int = 0, workers: int = 1) -> list[Piece]:
        """The pieces rank `rank`'s worker `worker` reads in `epoch`: a seeded order, new every epoch,
        dealt round-robin over every (rank, worker)."""
        readers = world * workers
        if len(self.pieces) < readers:
            raise ConfigError(f"{self.sources[0]} has {len(self.pieces)} row group(s); {world} process(es) x "
                              f"{workers} DataLoader worker(s) need at least {readers}, one each: rewrite the file "
                              "with smaller row groups (DataFrame.to_parquet(..., row_group_size=N)), or lower "
                              "train.num_workers")  # fmt: skip
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.pieces))
        return [self.pieces[i] for i in order[rank * workers + worker :: readers]]

    def steps(self, epoch: int, world: int, workers: int, batch_size: int) -> int:
        """Batches per rank in `epoch`: the fewest any rank has, so every rank takes the same number of
        steps (no rank waits on a gradient the others never send; the few rows over are left out)."""
        counts, index = self._counts[FIT], self._index
        per_rank = []
        for rank in range(world):
            rows = [
                sum(int(counts[index[p]]) for p in self.shard(epoch, rank, world, w, workers)) for w in range(workers)
            ]
            per_rank.append(sum(-(-n // batch_size) for n in rows))
        return min(per_rank)


def _open(source: str):
    """A ParquetFile on a local path or an fsspec URL; `DataError` when it is not one."""
    import pyarrow.parquet as pq

    try:
        if is_url(source):
            import fsspec

            return pq.ParquetFile(fsspec.open(source, "rb").open())
        return pq.ParquetFile(source)
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{source}: cannot read it as Parquet ({reason}); is the file complete?") from None
