"""Dynamic batching that never idles: when the model is free, the first queued request leaves at once;
requests that arrive while it computes queue up and leave together (up to `max_batch_size` rows)
as soon as it is free. If the model is still busy `max_delay` after a forming batch's first
request, that batch runs on a second model thread beside it.

The model runs in worker threads, off the event loop, so the loop keeps accepting and queueing
while a batch computes: that is what makes the next batch bigger under load. A request larger
than `max_batch_size` is split into batch-sized chunks (at most two of them queued at once, so
other requests interleave and the queue stays bounded) and its answers are reassembled in order.
A failing batch is retried request by request, so one bad request never fails its batch-mates.
Past `max_queue` queued rows a new request is refused at once (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from loopml.serve.rows import Rows, join, length, part

logger = logging.getLogger(__name__)
SLOTS = 2  # model threads: the second one only runs a batch that waited max_delay for the first
PIPELINE = 2  # chunks of one large request queued at once
SWEEP_S = 0.05  # how often deadlines are checked at most (a timeout fires within this)


class QueueFull(Exception):
    """More rows are queued than `max_queue` allows."""


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError("no answer within serve.timeout_ms"))


@dataclass
class _Item:
    rows: Rows
    future: asyncio.Future
    n: int
    counted: bool  # counts toward max_queue (a request, or the first chunk of a large one)
    deadline: float | None = None
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, predict: Callable[[Rows], dict[str, np.ndarray]], max_batch_size: int, max_delay_s: float,
                 max_queue: int, on_batch: Callable[[int, int], None] | None = None,
                 on_wait: Callable[[float], None] | None = None) -> None:  # fmt: skip
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.on_batch = on_batch  # (batch rows, queue depth after taking it) for metrics
        self.on_wait = on_wait  # seconds a request waited in the queue
        self.pending: deque[_Item] = deque()
        self.queued_rows = 0
        self.counted_rows = 0  # queued rows of requests (not of the later chunks of a large one)
        self.inflight = 0  # requests submitted and not yet answered
        self.busy = 0  # model threads computing now
        self._signal: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        # (deadline, future) in submission order: every request has the same timeout, so deadlines only grow
        self._deadlines: deque[tuple[float, asyncio.Future]] = deque()
        self._sweeper: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=SLOTS, thread_name_prefix="model")

    def start(self) -> None:
        self._signal = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._worker = loop.create_task(self._run())
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Fail requests past their deadline (TimeoutError), queued or computing, within SWEEP_S."""
        while True:
            now = time.perf_counter()
            while self._deadlines and (self._deadlines[0][1].done() or self._deadlines[0][0] <= now):
                _, future = self._deadlines.popleft()
                _expire(future)
            wait = self._deadlines[0][0] - now if self._deadlines else SWEEP_S
            await asyncio.sleep(min(max(wait, 0.0005), SWEEP_S))

    async def submit(self, rows: Rows, timeout_s: float | None = None) -> dict[str, np.ndarray]:
        """The model's outputs for `rows`, any number of them. Raises QueueFull, TimeoutError (no
        answer within `timeout_s`) or whatever the model raised for them."""
        n = length(rows)
        deadline = time.perf_counter() + timeout_s if timeout_s else None
        self.inflight += 1
        try:
            if n <= self.max_batch_size:
                return await self._await(self._enqueue(rows, n, admit=True, deadline=deadline))
            return await self._chunked(rows, n, deadline)
        finally:
            self.inflight -= 1

    async def _chunked(self, rows: Rows, n: int, deadline: float | None) -> dict[str, np.ndarray]:
        starts = list(range(0, n, self.max_batch_size))
        queued: deque[_Item] = deque()
        results: list[dict[str, np.ndarray]] = []
        try:
            for index, start in enumerate(starts):
                chunk = part(rows, start, start + self.max_batch_size)
                queued.append(self._enqueue(chunk, length(chunk), admit=index == 0, deadline=deadline))
                if len(queued) >= PIPELINE:
                    results.append(await self._await(queued.popleft()))
            while queued:
                results.append(await self._await(queued.popleft()))
        finally:
            for item in queued:  # a chunk failed or timed out: the rest is not computed
                if not item.future.done():
                    item.future.cancel()
        return {name: np.concatenate([r[name] for r in results]) for name in results[0]}

    def _enqueue(self, rows: Rows, n: int, admit: bool, deadline: float | None) -> _Item:
        if admit and self.counted_rows + n > self.max_queue:
            raise QueueFull(f"{self.counted_rows} rows already queued (serve.max_queue {self.max_queue})")
        item = _Item(rows, asyncio.get_running_loop().create_future(), n, admit, deadline)
        self.counted_rows += n if admit else 0
        if deadline is not None:  # one sweeper, not a timer (heap push and pop) or a task per request
            self._deadlines.append((deadline, item.future))
        self.pending.append(item)
        self.queued_rows += n
        self._signal.set()
        return item

    @staticmethod
    async def _await(item: _Item) -> dict[str, np.ndarray]:
        return await item.future

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every submitted request is answered (for graceful reloads and shutdown)."""
        deadline = time.perf_counter() + timeout
        while (self.inflight or self.pending) and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        await self.drain()
        for task in (self._worker, self._sweeper):
            if task:
                task.cancel()
        self._pool.shutdown(wait=False)

    async def _run(self) -> None:
        while True:
            if not self.pending or self.busy >= SLOTS:
                self._signal.clear()
                await self._signal.wait()
                continue
            if self.busy and self.queued_rows < self.max_batch_size:
                # the model is busy: the batch forms until it is free, full, or has waited max_delay
                remaining = self.pending[0].enqueued + self.max_delay_s - time.perf_counter()
                if remaining > 0:
                    self._signal.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._signal.wait(), remaining)
                    if self.busy and time.perf_counter() < self.pending[0].enqueued + self.max_delay_s \
                            and self.queued_rows < self.max_batch_size:  # fmt: skip
                        continue  # woken by a new request: keep forming
            batch = self._take()
            if batch:
                self.busy += 1
                task = asyncio.get_running_loop().create_task(self._compute_batch(batch))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    def _take(self) -> list[_Item]:
        batch, rows, now = [], 0, time.perf_counter()
        while self.pending and (not batch or rows + self.pending[0].n <= self.max_batch_size):
            item = self.pending.popleft()
            self.queued_rows -= item.n
            self.counted_rows -= item.n if item.counted else 0
            if item.deadline is not None and item.deadline <= now:
                _expire(item.future)
            if item.future.done():  # timed out or cancelled while queued: do not spend the model on it
                continue
            batch.append(item)
            rows += item.n
            if self.on_wait:
                self.on_wait(now - item.enqueued)
        if batch and self.on_batch:
            self.on_batch(rows, self.queued_rows)
        return batch

    async def _compute_batch(self, batch: list[_Item]) -> None:
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._pool, self._compute, batch)
        except Exception as exc:  # the worker must survive anything
            logger.exception("batch failed outside the model")
            results = [exc] * len(batch)
        finally:
            self.busy -= 1
            self._signal.set()
        now = time.perf_counter()
        for item, result in zip(batch, results, strict=True):
            if item.deadline is not None and item.deadline <= now:
                _expire(item.future)  # answered too late: the caller was promised an answer by then
            if item.future.done():  # the caller timed out or went away
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)

    def _compute(self, batch: list[_Item]) -> list:
        """Run in a model thread: one call for the batch, then split the outputs per request."""
        try:
            outputs = self.predict(join([i.rows for i in batch]))
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            return [self._single(item) for item in batch]  # isolate the request that broke it
        results, start = [], 0
        for item in batch:
            results.append({name: values[start : start + item.n] for name, values in outputs.items()})
            start += item.n
        return results

    def _single(self, item: _Item):
        try:
            return self.predict(item.rows)
        except Exception as exc:
            return exc
