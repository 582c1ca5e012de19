"""The served model versions: the primary (its alias re-resolved on reload) and an optional canary,
each a runtime with its own batcher and live monitor; the traffic split between them; hot reload
without dropping a request."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path

from loopml.errors import LoopmlError
from loopml.serve.batcher import Batcher
from loopml.serve.http import HttpError
from loopml.serve.live import LiveMonitor
from loopml.serve.metrics import ServerMetrics
from loopml.serve.runtime import ModelLoader, ModelRuntime
from loopml.serve.settings import ServeSettings
from loopml.uri import ModelRef

logger = logging.getLogger(__name__)


class Deployment:
    """One served model version: runtime, batcher, live monitor."""

    def __init__(self, runtime: ModelRuntime, ref: ModelRef, settings: ServeSettings, metrics: ServerMetrics):
        self.runtime, self.ref = runtime, ref
        cfg = settings.serve
        labels = (runtime.name, runtime.version)
        batch_hist, depth = metrics.batch_size.labels(*labels), metrics.queue_depth.labels(*labels)
        wait = metrics.queue_wait.labels(*labels)

        def on_batch(rows: int, queued: int) -> None:
            batch_hist.observe(rows)
            depth.set(queued)

        self.batcher = Batcher(runtime.predict, cfg.max_batch_size, cfg.max_delay_ms / 1000, cfg.max_queue, on_batch,
                               wait.observe)  # fmt: skip
        metrics.load_seconds.labels(*labels).set(runtime.load_seconds)
        log_dir = Path(settings.log_dir) if settings.log_dir and settings.monitor.log else None
        self.monitor = LiveMonitor(runtime.name, runtime.version, runtime.features, runtime.profile,
                                   settings.monitor, log_dir, metrics, cfg.feedback_ids,
                                   runtime.predictor.describe)  # fmt: skip

    def start(self) -> None:
        self.batcher.start()
        self.monitor.start()

    async def close(self) -> None:
        """Answer what is queued, then flush the last window, log lines and feedback."""
        await self.batcher.close()
        await self.monitor.close()


class Deployments:
    """Primary and canary, the split between them, and the lock that serializes changes."""

    def __init__(self, settings: ServeSettings, loader: ModelLoader, metrics: ServerMetrics):
        self.settings, self.loader, self.metrics = settings, loader, metrics
        self.primary: Deployment | None = None
        self.canary: Deployment | None = None
        self.canary_percent = settings.canary_percent
        self._lock: asyncio.Lock | None = None

    @property
    def served(self) -> list[Deployment]:
        return [d for d in (self.primary, self.canary) if d is not None]

    async def start(self) -> None:
        self._lock = asyncio.Lock()
        self.primary = await self.deploy(self.settings.primary)
        if self.settings.canary:
            self.canary = await self.deploy(self.settings.canary)
        self.publish()

    async def close(self) -> None:
        for deployment in self.served:
            await deployment.close()  # drains: queued requests are answered first

    async def deploy(self, ref: ModelRef) -> Deployment:
        """Resolve, load, warm and start a model version off the event loop."""
        loop = asyncio.get_running_loop()
        version = await loop.run_in_executor(None, self._registry_call, self.loader.resolve, ref)
        pinned = ref.pinned(version)  # an alias may move while we load: load what it pointed at

        def load() -> ModelRuntime:
            runtime = self._registry_call(self.loader.load, pinned, version)
            started = time.perf_counter()
            runtime.warm_up(self.settings.serve.max_batch_size)
            runtime.load_seconds += time.perf_counter() - started
            return runtime

        runtime = await loop.run_in_executor(None, load)
        deployment = Deployment(runtime, ref, self.settings, self.metrics)
        deployment.start()
        _settle_heap()
        return deployment

    def _registry_call(self, func, *args):
        try:
            result = func(*args)
        except LoopmlError:
            self.metrics.registry_up.set(0)
            raise
        self.metrics.registry_up.set(1)
        return result

    def choose(self, name: str, version: str | None) -> Deployment:
        """The deployment a request goes to: a named version, or the canary's share of the rest."""
        if self.primary is None:
            raise HttpError(503, "the model is not loaded yet; retry shortly", [(b"retry-after", b"1")])
        if name != self.primary.runtime.name:
            raise HttpError(404, f"unknown model {name[:100]!r}; this server serves {self.primary.runtime.name!r}")
        if version is not None:
            for deployment in self.served:
                if deployment.runtime.version == version:
                    return deployment
            served = ", ".join(d.runtime.version for d in self.served)
            raise HttpError(404, f"{name} has no served version {version[:40]!r}; serving {served}")
        if self.canary and self.canary_percent > 0 and random.random() * 100 < self.canary_percent:
            return self.canary
        return self.primary

    def by_request(self, request_id: str) -> tuple[Deployment, int] | None:
        """The deployment that answered `request_id`, and the request's row count."""
        for deployment in self.served:
            rows = deployment.monitor.rows_of(request_id)
            if rows is not None:
                return deployment, rows
        return None

    async def reload(self) -> dict:
        """Swap in the alias's current version without dropping a request; on failure keep serving."""
        async with self._lock:
            old = self.primary
            version = await asyncio.get_running_loop().run_in_executor(
                None, self._registry_call, self.loader.resolve, old.ref
            )
            if version == old.runtime.version:
                return {"reloaded": False, "version": version, "reason": "already serving this version"}
            new = await self.deploy(old.ref)
            self.primary = new  # new requests go to the new version from here on
            self.publish(retired=old)
            await old.close()  # requests already queued on the old version finish there
            logger.info("reloaded %s: v%s -> v%s", new.runtime.name, old.runtime.version, new.runtime.version)
            return {"reloaded": True, "version": new.runtime.version, "previous": old.runtime.version}

    async def set_canary(self, alias: str | None, percent: float) -> None:
        """Load the version behind `alias` as the canary (replacing any earlier one), or unload it (None)."""
        async with self._lock:
            old = self.canary
            new = None
            if alias is not None:
                ref = self.settings.primary.with_alias(alias) if self.settings.primary.in_registry else None
                if ref is None:
                    raise HttpError(409, "a canary needs a registry model; this server serves a package folder")
                try:
                    new = await self.deploy(ref)
                except LoopmlError as exc:
                    raise HttpError(404, f"cannot load canary {ref.name}@{alias}: {exc}") from None
            self.canary = new
            self.canary_percent = percent if new else 0.0
            self.publish(retired=old if old is not new else None)
            if old is not None:  # requests queued on the old canary finish there
                await old.close()

    def set_share(self, percent: float) -> None:
        self.canary_percent = percent if self.canary else 0.0
        self.publish()

    def publish(self, retired: Deployment | None = None) -> None:
        """The traffic split as gauges (a retired version drops to 0: gauges of several workers
        are shared, so setting beats removing)."""
        share = self.canary_percent / 100 if self.canary else 0.0
        if retired is not None:
            self.metrics.traffic.labels(retired.runtime.name, retired.runtime.version).set(0.0)
        self.metrics.traffic.labels(self.primary.runtime.name, self.primary.runtime.version).set(1 - share)
        if self.canary:
            self.metrics.traffic.labels(self.canary.runtime.name, self.canary.runtime.version).set(share)


def _settle_heap() -> None:
    """Collect once, then move every object alive now (the libraries, the loaded models) out of the
    garbage collector's view. Otherwise each full collection walks millions of objects from
    pandas, scikit-learn and MLflow: about 100 ms with the event loop stopped, which was the p99 of
    the whole server at c=64 (138 ms -> 11 ms in bench/serve_vs_peers.py). Runs at every load.
    Young collections then run every 20,000 container allocations instead of 700: a parsed
    1,000-row request alone allocates a list per row. (Frozen objects are still freed by reference
    counting; only a cycle among them would outlive its use.)"""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 50)
