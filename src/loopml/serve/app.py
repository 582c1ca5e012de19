"""The ASGI app: raw ASGI over a small route table (a framework's per-request cost is the
difference between ~7k and ~20k requests/s on two cores), the protocol endpoints, feedback, admin.

    create_app(settings, loader=None) -> ServingApp     # the app factory; run it with uvicorn

Every caller mistake is a 4xx with `{"error": ...}`; a failure of ours is a 500 that names the
request id, is logged with its traceback, and is never written to the inference log. Only requests a
version actually ran count as that version's traffic (4xx and auth failures count under
version="none"), so malformed requests cannot make a canary look bad.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

import numpy as np
import orjson

from loopml import __version__
from loopml.config import canary_percent
from loopml.data.inference_log import MAX_ID_LENGTH, LabelRules
from loopml.errors import ConfigError, LoopmlError, ModelInputError
from loopml.serve.batcher import QueueFull
from loopml.serve.deployment import Deployment, Deployments
from loopml.serve.http import (
    ADMIN,
    JSON,
    KEY,
    PUBLIC,
    HttpError,
    Route,
    Router,
    check_admin,
    check_key,
    json_answer,
    read_body,
    respond,
)
from loopml.serve.metrics import NO_VERSION, UNKNOWN_MODEL, ServerMetrics
from loopml.serve.openapi import spec
from loopml.serve.protocols import (
    DATATYPES,
    RequestError,
    check_output_names,
    encode_v2,
    mlflow_response,
    parse_json,
    parse_mlflow,
    parse_v2,
)
from loopml.serve.runtime import ModelLoader, RegistryLoader
from loopml.serve.settings import ServeSettings
from loopml.uri import check_alias

logger = logging.getLogger(__name__)
access_log = logging.getLogger("loopml.access")
REQUEST_ID = re.compile(r"^[\w.:@/+=-]{1,128}$")
INTERNAL = "x-loopml-internal"  # set on calls between the workers of one server


class ServingApp:
    def __init__(self, settings: ServeSettings, loader: ModelLoader | None = None, siblings=None,
                 started_at: float | None = None):  # fmt: skip
        self.settings = settings
        self.cfg = settings.serve
        self.metrics = ServerMetrics(started_at)
        self.models = Deployments(settings, loader or RegistryLoader(settings.tracking_uri), self.metrics)
        self.siblings = siblings  # the other workers of this server (see `workers`), or None
        self.ready = False
        self._watcher: asyncio.Task | None = None
        self.max_body = int(self.cfg.max_body_mb * 2**20)
        self.timeout_s = self.cfg.timeout_ms / 1000
        self.router = Router(self.routes())
        self._id_prefix, self._ids = uuid.uuid4().hex[:16], 0

    def routes(self) -> list[Route]:
        tensor_body = {"application/json": _infer_schema(), "application/octet-stream": {"type": "string"}}
        mlflow_body = {"application/json": _invocation_schema(), "text/csv": {"type": "string"}}
        feedback_body = {"application/json": {"type": "object", "properties": {
            "id": {"type": "string"}, "row": {"type": "integer", "minimum": 0}, "label": {},
            "feedback": {"type": "array", "items": {"type": "object"}}}}}  # fmt: skip
        traffic_body = {"application/json": {"type": "object", "properties": {
            "canary_percent": {"type": "number", "minimum": 0, "maximum": 100},
            "canary": {"type": ["string", "null"]}}}}  # fmt: skip
        infer_answers = (200, 400, 401, 404, 413, 415, 503, 504)
        return [
            Route("GET", "/v2", self.server_metadata, KEY, "server metadata", answers=(200, 401)),
            Route("GET", "/v2/health/live", self.live, PUBLIC, "liveness"),
            Route(
                "GET",
                "/v2/health/ready",
                self.ready_check,
                PUBLIC,
                "readiness: the model is loaded and warmed",
                answers=(200, 503),
            ),  # fmt: skip
            Route(
                "GET",
                "/v2/models/{model_name}",
                self.model_metadata,
                KEY,
                "model metadata",
                answers=(200, 401, 404, 503),
            ),  # fmt: skip
            Route(
                "GET",
                "/v2/models/{model_name}/ready",
                self.model_ready,
                KEY,
                "model readiness",
                answers=(200, 401, 404, 503),
            ),  # fmt: skip
            Route(
                "GET",
                "/v2/models/{model_name}/versions/{version}",
                self.model_metadata,
                KEY,
                "model version metadata",
                answers=(200, 401, 404, 503),
            ),  # fmt: skip
            Route(
                "GET",
                "/v2/models/{model_name}/versions/{version}/ready",
                self.model_ready,
                KEY,
                "model version readiness",
                answers=(200, 401, 404, 503),
            ),  # fmt: skip
            Route(
                "POST",
                "/v2/models/{model_name}/infer",
                self.infer,
                KEY,
                "Open Inference Protocol infer",
                tensor_body,
                infer_answers,
            ),  # fmt: skip
            Route(
                "POST",
                "/v2/models/{model_name}/versions/{version}/infer",
                self.infer,
                KEY,
                "Open Inference Protocol infer on one version",
                tensor_body,
                infer_answers,
            ),  # fmt: skip
            Route("POST", "/invocations", self.invocations, KEY, "MLflow scoring protocol", mlflow_body, infer_answers),
            Route("GET", "/ping", self.ready_check, PUBLIC, "MLflow health", answers=(200, 503)),
            Route("GET", "/health", self.ready_check, PUBLIC, "MLflow health", answers=(200, 503)),
            Route("GET", "/version", self.version, KEY, "MLflow version", answers=(200, 401)),
            Route("GET", "/metrics", self.prometheus, KEY, "Prometheus metrics (all workers)", answers=(200, 401)),
            Route("GET", "/openapi.json", self.openapi, KEY, "this document", answers=(200, 401)),
            Route(
                "POST",
                "/feedback",
                self.feedback,
                KEY,
                "ground-truth labels for earlier requests",
                feedback_body,
                (200, 400, 401, 404, 409, 413),
            ),  # fmt: skip
            Route(
                "POST",
                "/admin/reload",
                self.admin_reload,
                ADMIN,
                "load the alias's current version",
                answers=(200, 401, 403, 500),
            ),  # fmt: skip
            Route(
                "GET",
                "/admin/traffic",
                self.traffic_state,
                ADMIN,
                "the traffic split and the server's start",
                answers=(200, 401, 403),
            ),  # fmt: skip
            Route(
                "POST",
                "/admin/traffic",
                self.admin_traffic,
                ADMIN,
                "set or load the canary and its share",
                traffic_body,
                (200, 400, 401, 403, 404, 409),
            ),  # fmt: skip
        ]

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
        request_id, status, labels = None, 500, None
        ctx: dict = {}  # handlers put ("protocol", model, version) under "labels" once a version ran
        try:
            try:
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                given = headers.get("x-request-id")
                request_id = given if given and REQUEST_ID.match(given) else self._new_id()
                ctx["request_id"] = request_id
                route, params = self.router.match(method, path)
                self._authorize(route, headers)
                status, body, extra = await route.handler(scope, receive, headers, ctx, **params)
            except HttpError as exc:
                status, body, extra = exc.status, orjson.dumps({"error": exc.message}), exc.headers
            except Exception:
                logger.exception("unhandled error on %s %s (request id %s)", method, path, request_id)
                status = 500
                message = f"internal server error (request id {request_id}); the server log has the details"
                body, extra = orjson.dumps({"error": message}), []
            # counted before the answer leaves: a client holding its answer finds it in /metrics,
            # whichever worker answers the scrape
            elapsed = time.perf_counter() - started
            labels = ctx.get("labels")
            if labels is not None:
                self.metrics.count(labels, ctx.get("ran", False), status, elapsed)
            await respond(send, status, body, extra + [(b"x-request-id", (request_id or "").encode())])
        finally:
            self.metrics.inflight.dec()
            if self.settings.access_log:
                elapsed = time.perf_counter() - started
                access_log.info(orjson.dumps({"time": round(time.time(), 3), "id": request_id, "method": method,
                                              "path": path[:200], "status": status, "ms": round(elapsed * 1000, 2),
                                              "version": labels[2] if labels else None}).decode())  # fmt: skip

    def _new_id(self) -> str:
        """A request id unique across processes and restarts: a random per-process prefix and a
        counter (a uuid4 per request costs more than the rest of the id handling)."""
        self._ids += 1
        return f"{self._id_prefix}{self._ids:08x}"

    def _authorize(self, route: Route, headers: dict[str, str]) -> None:
        if INTERNAL in headers:  # a call from another worker of this server, or a forgery
            if self.siblings is None or not self.siblings.trusted(headers[INTERNAL]):
                raise HttpError(403, f"the {INTERNAL} header is for calls between a server's workers")
            return
        if route.access == ADMIN:
            check_admin(headers, self.settings.admin_token)
        elif route.access == KEY and self.settings.api_keys:
            if route.path == "/metrics" and self.cfg.public_metrics:
                return
            check_key(headers, self.settings.api_keys)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    if not isinstance(exc, LoopmlError):
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
        await self.models.start()
        saved = self.siblings.saved_traffic() if self.siblings is not None else None
        if saved and saved.get("canary"):  # a restarted worker takes up the canary the others serve
            await self.models.set_canary(saved["canary"], float(saved.get("canary_percent", 0)))
        self.ready = True
        if self.cfg.registry_poll_s and self.settings.primary.alias:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        primary, canary = self.models.primary, self.models.canary
        note = f" with canary v{canary.runtime.version} at {self.models.canary_percent}%" if canary else ""
        logger.info("serving %s v%s%s", primary.runtime.name, primary.runtime.version, note)

    async def shutdown(self) -> None:
        self.ready = False
        if self._watcher:
            self._watcher.cancel()
        await self.models.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.registry_poll_s)
            try:
                result = await self.models.reload()
                if result["reloaded"]:
                    logger.info("registry watcher: %s", result)
            except Exception as exc:  # the registry being down is reported, and the current version keeps serving
                logger.error("registry watcher: reload failed (%s); the current version keeps serving", exc)

    # -- inference -------------------------------------------------------------------------
    async def infer(self, scope, receive, headers, ctx, model_name, version=None):
        self._require_ready()
        ctx["labels"] = ("v2", self._model_label(model_name), NO_VERSION)
        deployment = self.models.choose(model_name, version)
        runtime = deployment.runtime
        ctx["labels"] = ("v2", runtime.name, runtime.version)
        body = await read_body(receive, headers, self.max_body)
        rows, request = _parsed(parse_v2, body, headers.get("inference-header-content-length"), runtime.inputs)
        _parsed(check_output_names, request, list(runtime.output_dtypes))
        outputs = await self._predict(deployment, rows, ctx)
        deployment.monitor.observe(ctx["request_id"], rows, outputs["predict"])
        payload, header_length = _parsed(encode_v2, outputs, request, runtime.name, runtime.version)
        extra = [(b"x-model-version", runtime.version.encode())]
        if header_length is None:
            return 200, payload, [(b"content-type", JSON), *extra]
        return 200, payload, [(b"content-type", b"application/octet-stream"),
                              (b"inference-header-content-length", str(header_length).encode()), *extra]  # fmt: skip

    async def invocations(self, scope, receive, headers, ctx):
        self._require_ready()
        deployment = self.models.choose(self.models.primary.runtime.name, None)
        runtime = deployment.runtime
        ctx["labels"] = ("mlflow", runtime.name, runtime.version)
        body = await read_body(receive, headers, self.max_body)
        rows = _parsed(parse_mlflow, body, headers.get("content-type", "application/json"), runtime.inputs)
        outputs = await self._predict(deployment, rows, ctx)
        deployment.monitor.observe(ctx["request_id"], rows, outputs["predict"])
        return 200, mlflow_response(outputs["predict"]), [(b"content-type", JSON),
                                                          (b"x-model-version", runtime.version.encode())]  # fmt: skip

    async def _predict(self, deployment: Deployment, rows, ctx) -> dict[str, np.ndarray]:
        runtime = deployment.runtime
        try:
            runtime.check(rows, self.cfg.nan_policy)
        except ModelInputError as exc:
            raise HttpError(400, str(exc)) from None
        try:
            outputs = await deployment.batcher.submit(rows, self.timeout_s)
        except ModelInputError as exc:
            raise HttpError(400, str(exc)) from None
        except QueueFull as exc:
            raise HttpError(503, f"the server is at capacity ({exc}); retry shortly", [(b"retry-after", b"1")]) \
                from None  # fmt: skip
        except TimeoutError:
            ctx["ran"] = True
            raise HttpError(504, f"no answer within {self.cfg.timeout_ms:g} ms (serve.timeout_ms)") from None
        except Exception:
            ctx["ran"] = True  # the version ran and failed: its 5xx
            logger.exception("the model %s v%s failed on request %s", runtime.name, runtime.version, ctx["request_id"])
            raise HttpError(500, f"the model failed on this request (request id {ctx['request_id']}); the server "
                                 "log has the details") from None  # fmt: skip
        ctx["ran"] = True
        for column, count in runtime.unseen(rows).items():
            if count:
                self.metrics.unseen.labels(runtime.name, runtime.version, column).inc(count)
        if cut := runtime.newly_truncated():
            self.metrics.truncated.labels(runtime.name, runtime.version).inc(cut)
        return outputs

    def _require_ready(self) -> None:
        if not self.ready:
            raise HttpError(503, "the model is not loaded yet; retry shortly", [(b"retry-after", b"1")])

    def _model_label(self, name: str) -> str:
        primary = self.models.primary
        return name if primary is not None and name == primary.runtime.name else UNKNOWN_MODEL

    # -- metadata, health ------------------------------------------------------------------
    async def server_metadata(self, scope, receive, headers, ctx):
        return json_answer({"name": "loopml", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def live(self, scope, receive, headers, ctx):
        return json_answer({"live": True})

    async def ready_check(self, scope, receive, headers, ctx):
        if not self.ready:
            raise HttpError(503, "the model is loading", [(b"retry-after", b"1")])
        return json_answer({"ready": True})

    async def version(self, scope, receive, headers, ctx):
        from importlib import metadata

        return 200, metadata.version("mlflow").encode(), [(b"content-type", b"text/plain")]

    async def model_metadata(self, scope, receive, headers, ctx, model_name, version=None):
        self._require_ready()
        deployment = self.models.choose(model_name, version)
        return json_answer(deployment.runtime.metadata([d.runtime.version for d in self.models.served]))

    async def model_ready(self, scope, receive, headers, ctx, model_name, version=None):
        self._require_ready()
        self.models.choose(model_name, version)
        return json_answer({"name": model_name, "ready": True})

    async def prometheus(self, scope, receive, headers, ctx):
        return 200, self.metrics.render(), [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]

    async def openapi(self, scope, receive, headers, ctx):
        primary = self.models.primary
        return json_answer(spec(self.router.routes, primary.runtime if primary else None,
                                bool(self.settings.api_keys)))  # fmt: skip

    # -- feedback --------------------------------------------------------------------------
    async def feedback(self, scope, receive, headers, ctx):
        """Ground truth for earlier requests: {"id": ..., "label": ...} or {"feedback": [...]}, keyed by
        the x-request-id the prediction came back with ("row" picks one row of a batch; a list label
        covers rows 0, 1, ...). Each label is checked against the version that answered the request."""
        limit = int(min(self.cfg.max_feedback_kb * 1024, self.max_body))  # labels are small: no big parse
        payload = _parsed(parse_json, await read_body(receive, headers, limit, "serve.max_feedback_kb"))
        items = payload.get("feedback", [payload]) if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items or not all(_feedback_item(i) for i in items):
            raise HttpError(400, 'send {"id": REQUEST_ID, "label": VALUE} or {"feedback": [{"id": ..., '
                                 '"label": ...}]}; an optional "row" (an int >= 0) picks a row of a batch, and a '
                                 "list label covers rows 0, 1, ...")  # fmt: skip
        if self.settings.log_dir is None or not self.settings.monitor.log:
            raise HttpError(409, "this server keeps no inference log (run it inside a project with monitor.log on), "
                                 "so feedback has no home")  # fmt: skip
        accepted, rejected, unknown = self.take_feedback(items)
        if unknown and self.siblings is not None and INTERNAL not in headers:  # answered by another worker?
            more_accepted, more_rejected, unknown = await self.siblings.feedback(unknown)
            accepted += more_accepted
            rejected += more_rejected
        rejected += [f"{item['id'][:MAX_ID_LENGTH]}: no request with this id was answered here (or it is older than "
                     "the last serve.feedback_ids requests); send older labels with `loopml feedback FILE`"
                     for item in unknown]  # fmt: skip
        if INTERNAL in headers:
            return json_answer({"accepted": accepted, "rejected": rejected, "unknown": unknown})
        if rejected:
            status = 404 if len(unknown) == len(items) else 400
            raise HttpError(status, f"{len(rejected)} label(s) refused, {accepted} kept: " + "; ".join(rejected[:5]))
        return json_answer({"accepted": accepted})

    def take_feedback(self, items: list[dict]) -> tuple[int, list[str], list[dict]]:
        """Check labels against the version that answered each request; keep the good ones.
        Returns (accepted, reasons for the refused, items for requests not answered here)."""
        accepted, rejected, unknown = 0, [], []
        per_deployment: dict[int, tuple[Deployment, list]] = {}
        for item in items:
            found = self.models.by_request(item["id"])
            if found is None:
                unknown.append(item)
                continue
            deployment, rows = found
            labels = item["label"] if isinstance(item["label"], list) else [item["label"]]
            first = item.get("row", 0)
            if first + len(labels) > rows:
                rejected.append(f"{item['id']}: {len(labels)} label(s) from row {first}, but the request had {rows} "
                                "row(s)")  # fmt: skip
                continue
            rules = _label_rules(deployment)
            try:
                checked = [rules.check(v) for v in labels]
            except ValueError as exc:
                rejected.append(f"{item['id']}: {exc}")
                continue
            bucket = per_deployment.setdefault(id(deployment), (deployment, []))[1]
            bucket.extend((item["id"], first + i, label) for i, label in enumerate(checked))
            accepted += 1
        for deployment, triples in per_deployment.values():
            deployment.monitor.feedback(triples)
        return accepted, rejected, unknown

    # -- admin -----------------------------------------------------------------------------
    async def admin_reload(self, scope, receive, headers, ctx):
        await read_body(receive, headers, self.max_body)
        try:
            result = await self.models.reload()
        except LoopmlError as exc:
            raise HttpError(500, f"reload failed, the current version keeps serving: {exc}") from None
        if self.siblings is not None and INTERNAL not in headers:
            result["workers"] = await self.siblings.broadcast("POST", "/admin/reload", b"{}")
        return json_answer(result)

    async def traffic_state(self, scope, receive, headers, ctx):
        canary = self.models.canary
        return json_answer({"primary_version": self.models.primary.runtime.version if self.models.primary else None,
                            "canary_version": canary.runtime.version if canary else None,
                            "canary_percent": self.models.canary_percent,
                            "started": self.metrics.started_at})  # fmt: skip

    async def admin_traffic(self, scope, receive, headers, ctx):
        """{"canary_percent": N} re-splits traffic; with "canary": "ALIAS" the version behind that alias
        is loaded (replacing any earlier canary) first, and "canary": null unloads it."""
        body = await read_body(receive, headers, self.max_body)
        payload = _parsed(parse_json, body)
        usage = ('send {"canary_percent": N} with N between 0 and 100 (and optionally "canary": "ALIAS" to load '
                 'a version, or null to unload it)')  # fmt: skip
        if not isinstance(payload, dict) or set(payload) - {"canary_percent", "canary"}:
            raise HttpError(400, usage)
        try:
            percent = canary_percent(payload.get("canary_percent"))
        except ValueError:
            raise HttpError(400, usage) from None
        alias = payload.get("canary", ...)
        if alias is not ... and alias is not None:
            try:
                check_alias(alias)
            except ConfigError:
                raise HttpError(400, f'"canary" must be a registry alias such as "challenger", or null; got '
                                     f"{str(alias)[:60]!r}") from None  # fmt: skip
        if percent > 0 and (alias is None or (alias is ... and self.models.canary is None)):  # refused before a change
            raise HttpError(409, 'no canary is loaded; send "canary": "ALIAS" with the percent, or start the server '
                                 "with --canary ALIAS:PERCENT")  # fmt: skip
        if alias is not ...:
            await self.models.set_canary(alias, percent)
        else:
            self.models.set_share(percent)
        result = {"canary_percent": self.models.canary_percent,
                  "canary_version": self.models.canary.runtime.version if self.models.canary else None}  # fmt: skip
        if self.siblings is not None and INTERNAL not in headers:
            canary = self.models.canary
            self.siblings.save_traffic({"canary": canary.ref.alias if canary else None,
                                        "canary_percent": self.models.canary_percent})  # fmt: skip
            result["workers"] = await self.siblings.broadcast("POST", "/admin/traffic", body)
        return json_answer(result)


def create_app(settings: ServeSettings, loader: ModelLoader | None = None, siblings=None,
               started_at: float | None = None) -> ServingApp:  # fmt: skip
    """The app factory: an ASGI app that loads its models when the server starts. `loader` finds
    model versions (default: the registry, or a package folder); `siblings` are the other workers
    of a multi-worker server, `started_at` its start."""
    return ServingApp(settings, loader, siblings, started_at)


def _parsed(parser, *args):
    try:
        return parser(*args)
    except RequestError as exc:
        raise HttpError(exc.status, str(exc)) from None


def _feedback_item(item) -> bool:
    if not isinstance(item, dict) or set(item) - {"id", "label", "row"}:
        return False
    request_id, label, row = item.get("id"), item.get("label"), item.get("row", 0)
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID_LENGTH or "label" not in item:
        return False
    scalar = (str, int, float, bool)
    labels = label if isinstance(label, list) and label else [label]
    good_row = isinstance(row, int) and not isinstance(row, bool) and row >= 0
    return good_row and all(isinstance(v, scalar) for v in labels)


def _label_rules(deployment: Deployment) -> LabelRules:
    predictor = deployment.runtime.predictor
    span = predictor.meta.get("target_range")
    return LabelRules(deployment.runtime.classes, tuple(span) if span else None,
                      deployment.monitor.cfg.label_margin)  # fmt: skip


def _infer_schema() -> dict[str, Any]:
    tensor = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
        "name": {"type": "string", "example": "input"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2},
        "datatype": {"type": "string", "enum": list(DATATYPES)},
        "data": {"type": "array", "items": {}},
        "parameters": {"type": "object"}}}  # fmt: skip
    return {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "inputs": {"type": "array", "items": tensor, "minItems": 1},
        "outputs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "parameters": {"type": "object"}}}  # fmt: skip


def _invocation_schema() -> dict[str, Any]:
    row = {"type": "array", "items": {}}
    return {"type": "object", "properties": {
        "dataframe_split": {"type": "object", "properties": {"columns": {"type": "array", "items": {"type": "string"}},
                                                             "data": {"type": "array", "items": row}}},
        "dataframe_records": {"type": "array", "items": {"type": "object"}},
        "instances": {"type": "array", "items": {}}, "inputs": {}}}  # fmt: skip
