"""The dynamic batcher, through its public class: it never idles, it batches while the model is
busy, it splits requests of any size and reassembles them in order, it isolates a bad request."""

import asyncio
import time

import numpy as np
import pytest

from loopml.serve.batcher import Batcher, QueueFull
from loopml.serve.rows import Table


def run(coro):
    return asyncio.run(coro)


class Model:
    def __init__(self, fail_on: float | None = None, delay: float = 0.0, first_delay: float | None = None):
        self.batches: list[int] = []
        self.fail_on, self.delay, self.first_delay = fail_on, delay, first_delay

    def __call__(self, rows):
        first = not self.batches
        self.batches.append(len(rows))
        time.sleep(self.first_delay if first and self.first_delay is not None else self.delay)
        matrix = rows if isinstance(rows, np.ndarray) else np.column_stack(list(rows.columns.values()))
        if self.fail_on is not None and (matrix == self.fail_on).any():
            raise ValueError("poisoned row")
        return {"predict": matrix.sum(axis=1)}


def test_an_idle_model_takes_a_request_at_once():
    async def scenario():
        model = Model()
        batcher = Batcher(model, max_batch_size=64, max_delay_s=10.0, max_queue=100)
        batcher.start()
        started = time.perf_counter()
        result = await batcher.submit(np.ones((1, 2)))
        waited = time.perf_counter() - started
        await batcher.close()
        return model, result, waited

    model, result, waited = run(scenario())
    assert model.batches == [1] and result["predict"].tolist() == [2.0]
    assert waited < 1.0  # max_delay (10 s) is not waited out by an idle model


def test_requests_arriving_while_the_model_is_busy_leave_together():
    async def scenario():
        model = Model(delay=0.2)
        batcher = Batcher(model, max_batch_size=64, max_delay_s=10.0, max_queue=1000)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.full((1, 3), 0.0)))
        await asyncio.sleep(0.05)  # the model now computes the first request for 0.2 s
        rest = [asyncio.ensure_future(batcher.submit(np.full((2, 3), float(i)))) for i in range(1, 6)]
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        return model, results

    model, results = run(scenario())
    assert model.batches == [1, 10]  # five requests, their rows in one batch once the model was free
    assert [r["predict"].tolist() for r in results[1:]] == [[3.0 * i] * 2 for i in range(1, 6)]


def test_a_batch_held_past_max_delay_runs_beside_the_busy_one():
    async def scenario():
        model = Model(first_delay=0.5)
        batcher = Batcher(model, max_batch_size=64, max_delay_s=0.05, max_queue=1000)
        batcher.start()
        slow = asyncio.ensure_future(batcher.submit(np.ones((1, 1))))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        await batcher.submit(np.ones((1, 1)))
        waited = time.perf_counter() - started
        await slow
        await batcher.close()
        return waited

    assert run(scenario()) < 0.45  # it did not wait for the first call's 0.5 s to end


def test_a_request_of_any_size_is_split_and_reassembled_in_order():
    async def scenario():
        model = Model()
        batcher = Batcher(model, max_batch_size=64, max_delay_s=0.001, max_queue=100)
        batcher.start()
        rows = np.arange(10_000 * 2, dtype=float).reshape(10_000, 2)
        big = asyncio.ensure_future(batcher.submit(rows))
        small = asyncio.ensure_future(batcher.submit(np.full((1, 2), -1.0)))  # interleaves with the chunks
        result = await big
        await small
        table = await batcher.submit(Table({"a": np.arange(130.0), "b": np.ones(130)}, 130))
        await batcher.close()
        return model, rows, result, table

    model, rows, result, table = run(scenario())
    assert result["predict"].tolist() == rows.sum(axis=1).tolist()
    assert max(model.batches) <= 64 and sum(model.batches) == 10_000 + 1 + 130
    assert table["predict"].tolist() == (np.arange(130.0) + 1).tolist()


def test_one_bad_request_never_fails_its_batch_mates():
    async def scenario():
        model = Model(fail_on=-1.0, delay=0.05)
        batcher = Batcher(model, max_batch_size=8, max_delay_s=1.0, max_queue=100)
        batcher.start()
        head = asyncio.ensure_future(batcher.submit(np.full((1, 2), 9.0)))  # keeps the model busy
        await asyncio.sleep(0.01)
        rows = [np.full((1, 2), -1.0 if i == 2 else float(i)) for i in range(5)]
        results = await asyncio.gather(*(batcher.submit(r) for r in rows), return_exceptions=True)
        await head
        await batcher.close()
        return model, results

    model, results = run(scenario())
    assert isinstance(results[2], ValueError)
    assert [r["predict"].tolist() for i, r in enumerate(results) if i != 2] == [[0.0], [2.0], [6.0], [8.0]]
    assert 5 in model.batches  # they were batched together, then retried one by one


def test_limits_and_timeouts():
    async def scenario():
        batcher = Batcher(Model(delay=0.3), max_batch_size=4, max_delay_s=10.0, max_queue=3)
        batcher.start()
        busy = asyncio.ensure_future(batcher.submit(np.ones((1, 1))))
        await asyncio.sleep(0.05)  # the model is busy with it for 0.3 s
        queued = asyncio.ensure_future(batcher.submit(np.ones((2, 1))))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await batcher.submit(np.ones((2, 1)))
        with pytest.raises(TimeoutError):
            await batcher.submit(np.ones((1, 1)), timeout_s=0.01)
        await asyncio.gather(busy, queued)
        await batcher.close()

    run(scenario())
