"""The server's OpenAPI document, generated from its route table (served at /openapi.json, fuzzed
by the tests), so a route cannot exist without being described."""

from __future__ import annotations

from typing import Any

from loopml import __version__
from loopml.serve.http import ADMIN, KEY, PUBLIC, Route

ERROR = {"description": "an error, as {\"error\": message}", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}  # fmt: skip
REASONS = {200: "ok", 400: "the caller's mistake", 401: "a key or token is missing or wrong",
           403: "admin endpoints are off", 404: "no such model, version or request", 405: "wrong method",
           409: "not possible in this state", 413: "the body is too large", 415: "unsupported content type",
           500: "our failure (the request id is in the message)", 503: "not ready or at capacity",
           504: "no answer in time"}  # fmt: skip


def spec(routes: list[Route], runtime=None, keys_required: bool = False) -> dict[str, Any]:
    name = runtime.name if runtime is not None else "model"
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {"summary": route.summary, "operationId": _operation_id(route),
                                     "responses": {str(code): (ERROR if code >= 400 else {"description": REASONS[code]})
                                                   for code in route.answers}}  # fmt: skip
        parameters = [{"name": p, "in": "path", "required": True,
                       "schema": {"type": "string", "example": name if p == "model_name" else "1"}}
                      for p in route.parameters]  # fmt: skip
        if parameters:
            operation["parameters"] = parameters
        if route.body:
            operation["requestBody"] = {"required": True, "content": {k: {"schema": v} for k, v in route.body.items()}}
        if route.access == ADMIN:
            operation["security"] = [{"bearer": []}]
        elif route.access == KEY:
            operation["security"] = (
                [{"bearer": []}, {"apiKey": []}] if keys_required else [{}, {"bearer": []}, {"apiKey": []}]
            )
        elif route.access == PUBLIC:
            operation["security"] = []
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": f"loopml serving {name}", "version": __version__,
                 "description": "Open Inference Protocol (KServe V2) and MLflow scoring. With LOOPML_API_KEYS set, "
                                "every route but the health checks needs a key; admin routes need the admin token."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                           "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
        "paths": paths,
    }  # fmt: skip
    if runtime is not None:
        document["info"]["x-inputs"] = [{"name": i.name, "kind": i.kind} for i in runtime.inputs]
    return document


def _operation_id(route: Route) -> str:
    return (route.method.lower() + route.path.replace("/", "_").replace("{", "").replace("}", "")).rstrip("_")
