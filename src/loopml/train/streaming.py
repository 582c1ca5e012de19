"""Training batches from a streamed table: an IterableDataset over Parquet row groups.

Each epoch, every (rank, DataLoader worker) reads its own pieces of the table's FIT rows
(`TableStream.shard`: a seeded order, new every epoch), shuffles each piece's rows, and cuts
batches, carrying the rows left over from one piece into the next. Every rank takes the same
number of steps (`TableStream.steps`), so DDP never waits on a gradient a rank does not send.
Memory holds a row group or two per reader, whatever the size of the table.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from loopml.data.stream import FIT, TableStream
from loopml.train.distributed import World
from loopml.train.features import NetworkInputs


class _Pieces(IterableDataset):
    """One epoch of one rank's batches (split further over the DataLoader's workers)."""

    def __init__(self, stream: TableStream, network_inputs: NetworkInputs, epoch: int, world: World, workers: int,
                 batch_size: int):  # fmt: skip
        super().__init__()
        self.stream, self.network_inputs, self.epoch = stream, network_inputs, epoch
        self.world, self.workers, self.batch_size = world, workers, batch_size

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.stream.seed, self.epoch, self.world.rank, worker])
        bs = self.batch_size
        held_x, held_y = None, None  # rows short of a batch, carried into the next piece
        for piece in self.stream.shard(self.epoch, self.world.rank, self.world.size, worker, self.workers):
            frame = self.stream.read(piece, FIT)
            if not len(frame):
                continue
            X, y = self.network_inputs.arrays(frame)
            order = rng.permutation(len(X))
            X, y = X[order], y[order]
            if held_x is not None:
                X, y = np.concatenate([held_x, X]), np.concatenate([held_y, y])
            full = len(X) // bs * bs
            for start in range(0, full, bs):
                yield torch.from_numpy(X[start : start + bs]), torch.from_numpy(y[start : start + bs])
            held_x, held_y = (X[full:], y[full:]) if full < len(X) else (None, None)
        if held_x is not None:
            yield torch.from_numpy(held_x), torch.from_numpy(held_y)


class StreamBatches:
    """The training loop's batches for a streamed table (what `loop.TensorBatches` is in memory)."""

    def __init__(self, stream: TableStream, network_inputs: NetworkInputs, batch_size: int, world: World,
                 workers: int, device):  # fmt: skip
        self.stream, self.network_inputs, self.batch_size = stream, network_inputs, batch_size
        self.world, self.workers, self.device = world, workers, device
        stream.shard(0, world.rank, world.size, 0, max(workers, 1))  # too few row groups: said before training

    def steps(self, epoch: int) -> int:
        return self.stream.steps(epoch, self.world.size, max(self.workers, 1), self.batch_size)

    def epoch(self, epoch: int, generator):
        """`generator` is the in-memory path's; a stream's order is seeded by the epoch itself, so a
        resumed training reads the same pieces in the same order."""
        steps = self.steps(epoch)
        pieces = _Pieces(self.stream, self.network_inputs, epoch, self.world, max(self.workers, 1), self.batch_size)
        loader = DataLoader(pieces, batch_size=None, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda")  # fmt: skip
        for taken, (xb, yb) in enumerate(loader):
            if taken >= steps:
                break
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
