"""The dynamic batcher, through its public class: batch formation, limits, error isolation."""

import asyncio
import time

import numpy as np
import pytest

from loopml.serve.batcher import Batcher, BatchTooLarge, QueueFull


def run(coro):
    return asyncio.run(coro)


class Model:
    def __init__(self, fail_on: float | None = None, delay: float = 0.0):
        self.batches: list[int] = []
        self.fail_on, self.delay = fail_on, delay

    def __call__(self, matrix):
        self.batches.append(len(matrix))
        time.sleep(self.delay)
        if self.fail_on is not None and (matrix == self.fail_on).any():
            raise ValueError("poisoned row")
        return {"predict": matrix.sum(axis=1)}


def test_full_batches_leave_at_once_and_results_split_back():
    async def scenario():
        model = Model()
        batcher = Batcher(model, max_batch_size=4, max_delay_s=10.0, max_queue=100)
        batcher.start()
        started = time.perf_counter()
        results = await asyncio.gather(*(batcher.submit(np.full((1, 3), i, float)) for i in range(8)))
        elapsed = time.perf_counter() - started
        await batcher.close()
        return model, results, elapsed

    model, results, elapsed = run(scenario())
    assert model.batches == [4, 4]  # full batches never wait for max_delay (10 s here)
    assert elapsed < 5
    assert [r["predict"].tolist() for r in results] == [[3.0 * i] for i in range(8)]


def test_partial_batch_leaves_after_max_delay_from_first_request():
    async def scenario():
        model = Model()
        batcher = Batcher(model, max_batch_size=64, max_delay_s=0.05, max_queue=100)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.ones((1, 2))))
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(batcher.submit(np.ones((2, 2))))
        started = time.perf_counter()
        await asyncio.gather(first, second)
        waited = time.perf_counter() - started
        await batcher.close()
        return model, waited

    model, waited = run(scenario())
    assert model.batches == [3]  # one batch, rows of both requests (a request's rows count)
    assert waited < 0.5


def test_one_bad_request_never_fails_its_batch_mates():
    async def scenario():
        model = Model(fail_on=-1.0)
        batcher = Batcher(model, max_batch_size=8, max_delay_s=0.05, max_queue=100)
        batcher.start()
        rows = [np.full((1, 2), -1.0 if i == 2 else float(i)) for i in range(5)]
        results = await asyncio.gather(*(batcher.submit(r) for r in rows), return_exceptions=True)
        await batcher.close()
        return results

    results = run(scenario())
    assert isinstance(results[2], ValueError)
    assert [r["predict"].tolist() for i, r in enumerate(results) if i != 2] == [[0.0], [2.0], [6.0], [8.0]]


def test_limits_and_timeouts():
    async def scenario():
        batcher = Batcher(Model(delay=0.3), max_batch_size=2, max_delay_s=0.0, max_queue=3)
        batcher.start()
        with pytest.raises(BatchTooLarge):
            await batcher.submit(np.ones((3, 1)))
        busy = asyncio.ensure_future(batcher.submit(np.ones((2, 1))))
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
