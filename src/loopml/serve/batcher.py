"""Dynamic batching, Triton-style: requests queue; a batch leaves when `max_batch_size` rows
are queued or `max_delay` has passed since the *first* queued request, whichever is first.

The model runs in one worker thread, off the event loop, so the loop keeps accepting and
queueing while a batch computes — which is what makes the next batch bigger under load.
A failing batch is retried request by request, so one bad request never fails its batch-mates.
The queue is bounded in rows: past `max_queue` a request is refused at once (503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """More rows are queued than `max_queue` allows."""


class BatchTooLarge(Exception):
    """One request carries more rows than `max_batch_size`."""


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError("no answer within serve.timeout_ms"))


@dataclass
class _Item:
    rows: np.ndarray
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, predict: Callable[[np.ndarray], dict[str, np.ndarray]], max_batch_size: int,
                 max_delay_s: float, max_queue: int,
                 on_batch: Callable[[int, int], None] | None = None) -> None:  # fmt: skip
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.on_batch = on_batch  # (batch rows, queue depth after taking it) for metrics
        self.pending: deque[_Item] = deque()
        self.queued_rows = 0
        self.inflight = 0  # requests submitted and not yet answered
        self._wakeup: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    def start(self) -> None:
        self._wakeup, self._full = asyncio.Event(), asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, rows: np.ndarray, timeout_s: float | None = None) -> dict[str, np.ndarray]:
        """Queue `rows`; the model's outputs for them. Raises QueueFull, BatchTooLarge,
        TimeoutError (no answer within `timeout_s`) or whatever the model raised for them."""
        n = len(rows)
        if n > self.max_batch_size:
            raise BatchTooLarge(f"{n} rows in one request; this server takes at most {self.max_batch_size} "
                                "(serve.max_batch_size): split the request")  # fmt: skip
        if self.queued_rows + n > self.max_queue:
            raise QueueFull(f"{self.queued_rows} rows already queued (serve.max_queue {self.max_queue})")
        loop = asyncio.get_running_loop()
        item = _Item(rows, loop.create_future())
        # A timer, not asyncio.wait_for: no extra task per request on the hot path.
        timer = loop.call_later(timeout_s, _expire, item.future) if timeout_s else None
        self.pending.append(item)
        self.queued_rows += n
        self.inflight += 1
        self._wakeup.set()
        if self.queued_rows >= self.max_batch_size:
            self._full.set()
        try:
            return await item.future
        finally:
            self.inflight -= 1
            if timer:
                timer.cancel()

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every submitted request is answered (for graceful reloads and shutdown)."""
        deadline = time.perf_counter() + timeout
        while (self.inflight or self.pending) and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        await self.drain()
        if self._worker:
            self._worker.cancel()
        self._pool.shutdown(wait=False)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            # Wait for a full batch, or until the first queued request has waited max_delay.
            while self.queued_rows < self.max_batch_size and self.pending:
                remaining = self.pending[0].enqueued + self.max_delay_s - time.perf_counter()
                if remaining <= 0:
                    break
                self._full.clear()
                try:
                    await asyncio.wait_for(self._full.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = self._take()
            if not self.pending:
                self._wakeup.clear()
            if not batch:
                continue
            if self.on_batch:
                self.on_batch(sum(len(i.rows) for i in batch), self.queued_rows)
            try:
                results = await loop.run_in_executor(self._pool, self._compute, batch)
            except Exception as exc:  # the worker must survive anything
                logger.exception("batch failed outside the model")
                results = [exc] * len(batch)
            for item, result in zip(batch, results, strict=True):
                if item.future.done():  # the caller timed out or went away
                    continue
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)

    def _take(self) -> list[_Item]:
        batch, rows = [], 0
        while self.pending and rows + len(self.pending[0].rows) <= self.max_batch_size:
            item = self.pending.popleft()
            rows += len(item.rows)
            self.queued_rows -= len(item.rows)
            if item.future.done():  # timed out while queued: do not spend the model on it
                continue
            batch.append(item)
        return batch

    def _compute(self, batch: list[_Item]) -> list:
        """Run in the model thread: one call for the batch, then split the outputs per request."""
        try:
            matrix = batch[0].rows if len(batch) == 1 else np.concatenate([i.rows for i in batch])
            outputs = self.predict(matrix)
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            return [self._single(item) for item in batch]  # isolate the request that broke it
        results, start = [], 0
        for item in batch:
            end = start + len(item.rows)
            results.append({name: values[start:end] for name, values in outputs.items()})
            start = end
        return results

    def _single(self, item: _Item):
        try:
            return self.predict(item.rows)
        except Exception as exc:
            return exc
