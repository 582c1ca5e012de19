"""The ASGI app: a small hand-written router over raw ASGI (a framework's per-request cost is
the difference between ~7k and ~20k requests/s on two cores), the protocol endpoints, admin
endpoints, canary routing and hot reload.

    create_app(settings) -> ServingApp      # the app factory; run it with uvicorn
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from loopml import __version__
from loopml.config import MonitorConfig, ServeConfig
from loopml.errors import LoopmlError
from loopml.monitor.live import LiveMonitor
from loopml.serve.batcher import Batcher, BatchTooLarge, QueueFull
from loopml.serve.metrics import ServerMetrics
from loopml.serve.protocols import RequestError, encode_v2, mlflow_response, parse_mlflow, parse_v2
from loopml.serve.runtime import ModelRuntime, ModelSource, check_matrix, resolve_version

logger = logging.getLogger(__name__)
access_log = logging.getLogger("loopml.access")

MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?$")
JSON = b"application/json"


@dataclass
class ServeSettings:
    """What `loopml serve` resolved: the model sources, serving knobs and secrets."""

    primary: ModelSource
    serve: ServeConfig = field(default_factory=ServeConfig)
    canary: ModelSource | None = None
    canary_percent: float = 0.0
    tracking_uri: str | None = None  # where aliases are re-resolved on reload
    admin_token: str | None = None  # LOOPML_ADMIN_TOKEN; admin endpoints are off without it
    api_keys: tuple[str, ...] = ()  # LOOPML_API_KEYS; inference needs one of them when set
    access_log: bool = True
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    log_dir: str | None = None  # where the inference log and feedback go; None: no log


class Deployment:
    """A runtime with its own batcher: one served model version."""

    def __init__(self, runtime: ModelRuntime, source: ModelSource, settings: ServeSettings, metrics: ServerMetrics):
        self.runtime, self.source = runtime, source
        cfg = settings.serve
        labels = (runtime.name, runtime.version)
        batch_hist, depth = metrics.batch_size.labels(*labels), metrics.queue_depth.labels(*labels)

        def on_batch(rows: int, queued: int) -> None:
            batch_hist.observe(rows)
            depth.set(queued)

        self.batcher = Batcher(runtime.predict, cfg.max_batch_size, cfg.max_delay_ms / 1000, cfg.max_queue, on_batch)
        metrics.load_seconds.labels(*labels).set(runtime.load_seconds)
        self.monitor = LiveMonitor(runtime.name, runtime.version, runtime.features, runtime.reference_profile(),
                                   settings.monitor, Path(settings.log_dir) if settings.log_dir and settings.monitor.log
                                   else None, metrics)  # fmt: skip

    async def close(self) -> None:
        """Answer what is queued, then flush the last window, log lines and feedback."""
        await self.batcher.close()
        await self.monitor.close()


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


class ServingApp:
    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.cfg = settings.serve
        self.metrics = ServerMetrics()
        self.primary: Deployment | None = None
        self.canary: Deployment | None = None
        self.canary_percent = settings.canary_percent
        self.ready = False
        self._reload_lock: asyncio.Lock | None = None
        self._watcher: asyncio.Task | None = None
        self.max_body = int(self.cfg.max_body_mb * 2**20)
        self.timeout_s = self.cfg.timeout_ms / 1000
        self.routes: dict[tuple[str, str], Callable[..., Awaitable]] = {
            ("GET", "/v2"): self.server_metadata,
            ("GET", "/v2/health/live"): self.live,
            ("GET", "/v2/health/ready"): self.ready_check,
            ("POST", "/invocations"): self.invocations,
            ("GET", "/ping"): self.ready_check,
            ("GET", "/health"): self.ready_check,
            ("GET", "/version"): self.version,
            ("GET", "/metrics"): self.prometheus,
            ("GET", "/openapi.json"): self.openapi,
            ("POST", "/admin/reload"): self.admin_reload,
            ("POST", "/admin/traffic"): self.admin_traffic,
            ("POST", "/feedback"): self.feedback,
        }

    # -- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        self.metrics.inflight.inc()
        request_id = None
        status = 500
        ctx: dict = {}  # handlers put ("protocol", model, version) under "labels" once known
        try:
            handler = self.routes.get((method, path))
            args: tuple = ()
            if handler is None:
                match = MODEL_PATH.match(path)
                if match:
                    name, version, action = match.groups()
                    handler = {None: self.model_metadata, "/ready": self.model_ready, "/infer": self.infer}[action]
                    args = (name, version)
                    if (method == "POST") != (action == "/infer"):
                        raise HttpError(405, f"{method} is not allowed on {path}")
                elif any(p == path for _, p in self.routes):
                    raise HttpError(405, f"{method} is not allowed on {path}")
                else:
                    raise HttpError(404, f"no endpoint {path}; see /openapi.json")
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            request_id = headers.get("x-request-id") or uuid.uuid4().hex
            ctx["request_id"] = request_id
            status, body, extra = await handler(scope, receive, headers, ctx, *args)
            await _respond(send, status, body, extra + [(b"x-request-id", request_id.encode())])
        except HttpError as exc:
            status = exc.status
            await _respond(send, status, orjson.dumps({"error": exc.message}), exc.headers)
        except Exception:
            logger.exception("unhandled error on %s %s", method, path)
            status = 500
            await _respond(send, 500, orjson.dumps({"error": "internal server error; see the server log"}), [])
        finally:
            self.metrics.inflight.dec()
            elapsed = time.perf_counter() - started
            labels = ctx.get("labels")
            if labels:
                protocol, model, version = labels
                self.metrics.requests.labels(protocol, model, version, str(status)).inc()
                if status < 400:
                    self.metrics.latency.labels(protocol, model, version).observe(elapsed)
            if self.settings.access_log:
                access_log.info(json.dumps({"time": round(time.time(), 3), "id": request_id, "method": method,
                                            "path": path, "status": status, "ms": round(elapsed * 1000, 2),
                                            "version": labels[2] if labels else None}))  # fmt: skip

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- lifecycle -------------------------------------------------------------------------
    async def startup(self) -> None:
        self._reload_lock = asyncio.Lock()
        self.primary = await self._deploy(self.settings.primary)
        if self.settings.canary:
            self.canary = await self._deploy(self.settings.canary)
        self._publish_traffic()
        self.ready = True
        if self.cfg.registry_poll_s and self.settings.primary.alias:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        canary = f" with canary v{self.canary.runtime.version} at {self.canary_percent}%" if self.canary else ""
        logger.info("serving %s v%s%s", self.primary.runtime.name, self.primary.runtime.version, canary)

    async def shutdown(self) -> None:
        self.ready = False
        if self._watcher:
            self._watcher.cancel()
        for deployment in (self.primary, self.canary):
            if deployment:
                await deployment.close()  # drains: queued requests are answered first

    async def _deploy(self, source: ModelSource) -> Deployment:
        """Load, warm and start a model version off the event loop."""
        loop = asyncio.get_running_loop()
        version = await loop.run_in_executor(None, resolve_version, source, self.settings.tracking_uri)

        def load() -> ModelRuntime:
            runtime = ModelRuntime.load(source, version)
            started = time.perf_counter()
            runtime.warm_up(self.cfg.max_batch_size)
            runtime.load_seconds += time.perf_counter() - started
            return runtime

        runtime = await loop.run_in_executor(None, load)
        deployment = Deployment(runtime, source, self.settings, self.metrics)
        deployment.batcher.start()
        deployment.monitor.start()
        return deployment

    async def reload(self) -> dict:
        """Swap in the alias's current version without dropping a request; on failure keep serving."""
        async with self._reload_lock:
            old = self.primary
            version = await asyncio.get_running_loop().run_in_executor(
                None, resolve_version, old.source, self.settings.tracking_uri
            )
            if version == old.runtime.version:
                return {"reloaded": False, "version": version, "reason": "already serving this version"}
            new = await self._deploy(old.source)
            self.primary = new  # new requests go to the new version from here on
            self._publish_traffic()
            await old.close()  # requests already queued on the old version finish there
            logger.info("reloaded %s: v%s -> v%s", new.runtime.name, old.runtime.version, new.runtime.version)
            return {"reloaded": True, "version": new.runtime.version, "previous": old.runtime.version}

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.registry_poll_s)
            try:
                result = await self.reload()
                if result["reloaded"]:
                    logger.info("registry watcher: %s", result)
            except Exception:
                logger.exception("registry watcher: reload failed; the current version keeps serving")

    def _publish_traffic(self) -> None:
        self.metrics.traffic.clear()
        share = self.canary_percent / 100 if self.canary else 0.0
        self.metrics.traffic.labels(self.primary.runtime.name, self.primary.runtime.version).set(1 - share)
        if self.canary:
            self.metrics.traffic.labels(self.canary.runtime.name, self.canary.runtime.version).set(share)

    def _choose(self, name: str, version: str | None) -> Deployment:
        if not self.ready or self.primary is None:
            raise HttpError(503, "the model is not loaded yet; retry shortly", [(b"retry-after", b"1")])
        if name != self.primary.runtime.name:
            raise HttpError(404, f"unknown model {name!r}; this server serves {self.primary.runtime.name!r}")
        if version is not None:
            for deployment in (self.primary, self.canary):
                if deployment and deployment.runtime.version == version:
                    return deployment
            served = [d.runtime.version for d in (self.primary, self.canary) if d]
            raise HttpError(404, f"{name} has no served version {version!r}; serving {', '.join(served)}")
        if self.canary and self.canary_percent > 0 and random.random() * 100 < self.canary_percent:
            return self.canary
        return self.primary

    # -- inference -------------------------------------------------------------------------
    async def infer(self, scope, receive, headers, ctx, name, version):
        ctx["labels"] = ("v2", name, version or "none")
        self._authorize_inference(headers)
        deployment = self._choose(name, version)
        runtime = deployment.runtime
        ctx["labels"] = ("v2", runtime.name, runtime.version)
        body = await self._body(receive, headers)
        matrix, request = _parse(parse_v2, body, headers.get("inference-header-content-length"), runtime.features)
        outputs = await self._predict(deployment, matrix)
        deployment.monitor.observe(ctx["request_id"], matrix, outputs["predict"])
        try:
            payload, header_length = encode_v2(outputs, request, runtime.name, runtime.version)
        except RequestError as exc:
            raise HttpError(exc.status, str(exc)) from None
        extra = [(b"x-model-version", runtime.version.encode())]
        if header_length is None:
            return 200, payload, [(b"content-type", JSON), *extra]
        return 200, payload, [(b"content-type", b"application/octet-stream"),
                              (b"inference-header-content-length", str(header_length).encode()), *extra]  # fmt: skip

    async def invocations(self, scope, receive, headers, ctx):
        ctx["labels"] = ("mlflow", self.settings.primary.name, "none")
        self._authorize_inference(headers)
        deployment = self._choose(self.primary.runtime.name if self.primary else "", None)
        runtime = deployment.runtime
        ctx["labels"] = ("mlflow", runtime.name, runtime.version)
        body = await self._body(receive, headers)
        matrix = _parse(parse_mlflow, body, headers.get("content-type", "application/json"), runtime.features)
        outputs = await self._predict(deployment, matrix)
        deployment.monitor.observe(ctx["request_id"], matrix, outputs["predict"])
        headers_out = [(b"content-type", JSON), (b"x-model-version", runtime.version.encode())]
        return 200, mlflow_response(outputs["predict"]), headers_out

    async def _predict(self, deployment: Deployment, matrix: np.ndarray) -> dict[str, np.ndarray]:
        runtime = deployment.runtime
        try:
            check_matrix(matrix, runtime.n_features, self.cfg.nan_policy)
            return await deployment.batcher.submit(matrix, self.timeout_s)
        except LoopmlError as exc:
            raise HttpError(400, str(exc)) from None
        except BatchTooLarge as exc:
            raise HttpError(400, str(exc)) from None
        except QueueFull as exc:
            raise HttpError(
                503, f"the server is at capacity ({exc}); retry shortly", [(b"retry-after", b"1")]
            ) from None
        except TimeoutError:
            raise HttpError(504, f"no answer within {self.cfg.timeout_ms:g} ms (serve.timeout_ms)") from None
        except (ValueError, TypeError) as exc:
            raise HttpError(400, f"the model rejected this input: {exc}") from None

    async def _body(self, receive, headers) -> bytes:
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raise HttpError(413, f"the body is {declared} bytes; the limit is {self.max_body} (serve.max_body_mb)")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HttpError(400, "the client went away before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise HttpError(413, f"the body exceeds {self.max_body} bytes (serve.max_body_mb)")
            chunks.append(chunk)
            if not message.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _authorize_inference(self, headers) -> None:
        keys = self.settings.api_keys
        if not keys:
            return
        given = headers.get("x-api-key") or _bearer(headers)
        if not given or not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
            raise HttpError(401, "a valid API key is required (Authorization: Bearer KEY or X-API-Key)",
                            [(b"www-authenticate", b"Bearer")])  # fmt: skip

    def _authorize_admin(self, headers) -> None:
        token = self.settings.admin_token
        if not token:
            raise HttpError(403, "admin endpoints are disabled; start the server with LOOPML_ADMIN_TOKEN set")
        given = _bearer(headers)
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise HttpError(401, "admin endpoints need Authorization: Bearer <LOOPML_ADMIN_TOKEN>",
                            [(b"www-authenticate", b"Bearer")])  # fmt: skip

    # -- metadata, health, admin -----------------------------------------------------------
    async def server_metadata(self, scope, receive, headers, ctx):
        body = {"name": "loopml", "version": __version__, "extensions": ["binary_tensor_data"]}
        return 200, orjson.dumps(body), [(b"content-type", JSON)]

    async def live(self, scope, receive, headers, ctx):
        return 200, orjson.dumps({"live": True}), [(b"content-type", JSON)]

    async def ready_check(self, scope, receive, headers, ctx):
        if not self.ready:
            raise HttpError(503, "the model is loading", [(b"retry-after", b"1")])
        return 200, orjson.dumps({"ready": True}), [(b"content-type", JSON)]

    async def version(self, scope, receive, headers, ctx):
        from importlib import metadata

        return 200, metadata.version("mlflow").encode(), [(b"content-type", b"text/plain")]

    async def model_metadata(self, scope, receive, headers, ctx, name, version):
        deployment = self._choose(name, version)
        served = [d.runtime.version for d in (self.primary, self.canary) if d]
        body = deployment.runtime.metadata(served)
        return 200, orjson.dumps(body), [(b"content-type", JSON)]

    async def model_ready(self, scope, receive, headers, ctx, name, version):
        self._choose(name, version)
        return 200, orjson.dumps({"name": name, "ready": True}), [(b"content-type", JSON)]

    async def prometheus(self, scope, receive, headers, ctx):
        return 200, self.metrics.render(), [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]

    async def openapi(self, scope, receive, headers, ctx):
        from loopml.serve.openapi import spec

        name = self.primary.runtime.name if self.primary else "model"
        features = self.primary.runtime.features if self.primary else []
        return 200, orjson.dumps(spec(name, features)), [(b"content-type", JSON)]

    async def admin_reload(self, scope, receive, headers, ctx):
        self._authorize_admin(headers)
        await self._body(receive, headers)
        try:
            result = await self.reload()
        except Exception as exc:
            logger.exception("reload failed")
            raise HttpError(500, f"reload failed, the current version keeps serving: {exc}") from None
        return 200, orjson.dumps(result), [(b"content-type", JSON)]

    async def feedback(self, scope, receive, headers, ctx):
        """Ground truth for earlier requests: {"id": ..., "label": ...} or {"feedback": [...]}, keyed by
        the x-request-id the prediction came back with (a row number, "row", picks one row of a batch)."""
        self._authorize_inference(headers)
        payload = _parse(lambda raw: orjson.loads(raw), await self._body(receive, headers))
        items = payload.get("feedback", [payload]) if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items or not all(_feedback_item(i) for i in items):
            raise HttpError(400, 'send {"id": REQUEST_ID, "label": VALUE} or {"feedback": [{"id": ..., '
                                 '"label": ...}]}; an optional "row" (an int >= 0) picks a row of a batch, and a '
                                 "list label covers rows 0, 1, ...")  # fmt: skip
        if self.primary is None or self.settings.log_dir is None:
            raise HttpError(
                409, "this server keeps no inference log (run it inside a project), so feedback has no home"
            )
        self.primary.monitor.feedback(items)
        return 200, orjson.dumps({"accepted": len(items)}), [(b"content-type", JSON)]

    async def admin_traffic(self, scope, receive, headers, ctx):
        """{"canary_percent": N} re-splits traffic; with "canary": "ALIAS" the version behind that alias
        is loaded (replacing any earlier canary) first, and "canary": null unloads the canary."""
        self._authorize_admin(headers)
        payload = _parse(lambda raw: orjson.loads(raw), await self._body(receive, headers))
        percent = payload.get("canary_percent") if isinstance(payload, dict) else None
        if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100:
            raise HttpError(400, 'send {"canary_percent": N} with N between 0 and 100 (and optionally '
                                 '"canary": "ALIAS" to load a version, or null to unload it)')  # fmt: skip
        alias = payload.get("canary", ...)
        if alias is not ... and alias is not None and not (isinstance(alias, str) and re.fullmatch(r"[\w-]+", alias)):
            raise HttpError(400, f'"canary" must be a registry alias such as "challenger", or null; got {alias!r}')
        if percent > 0 and (alias is None or (alias is ... and self.canary is None)):  # refused before any change
            raise HttpError(409, 'no canary is loaded; send "canary": "ALIAS" with the percent, or start the '
                                 "server with --canary ALIAS:PERCENT")  # fmt: skip
        if alias is not ...:
            await self._set_canary(alias)
        self.canary_percent = float(percent) if self.canary else 0.0
        self._publish_traffic()
        served = self.canary.runtime.version if self.canary else None
        return 200, orjson.dumps({"canary_percent": self.canary_percent, "canary_version": served}), [
            (b"content-type", JSON)]  # fmt: skip

    async def _set_canary(self, alias: str | None) -> None:
        async with self._reload_lock:
            old = self.canary
            if alias is not None:
                name = self.primary.runtime.name
                try:
                    new = await self._deploy(ModelSource(name, f"models:/{name}@{alias}", alias))
                except LoopmlError as exc:
                    raise HttpError(404, f"cannot load canary {name}@{alias}: {exc}") from None
            else:
                new = None
            self.canary = new  # the caller sets the share and publishes it
            if old is not None:  # requests queued on the old canary finish there
                await old.close()


def create_app(settings: ServeSettings) -> ServingApp:
    """The app factory: an ASGI app that loads its models when the server starts."""
    return ServingApp(settings)


def from_environment() -> ServingApp:
    """Factory for uvicorn's worker processes: settings travel in LOOPML_SERVE_SETTINGS."""
    from loopml.serve.server import settings_from_json

    return create_app(settings_from_json(os.environ["LOOPML_SERVE_SETTINGS"]))


def _parse(parser, *args):
    try:
        return parser(*args)
    except RequestError as exc:
        raise HttpError(exc.status, str(exc)) from None
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"the body is not valid JSON: {exc}") from None


def _feedback_item(item) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or "label" not in item:
        return False
    row = item.get("row", 0)
    label = item["label"]
    scalar = (str, int, float, bool)
    labels = label if isinstance(label, list) and label else [label]
    good_row = isinstance(row, int) and not isinstance(row, bool) and row >= 0
    return good_row and all(isinstance(v, scalar) for v in labels)


def _bearer(headers) -> str | None:
    value = headers.get("authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else None


async def _respond(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    if not any(k == b"content-type" for k, _ in headers):
        headers = [(b"content-type", JSON), *headers]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
