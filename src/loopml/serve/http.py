"""HTTP plumbing under the app: the route table (which also generates the OpenAPI document), the
JSON error type, body reading with its limits, responses, and bearer-token checks.

A route is data: method, path (with `{name}` parameters), the handler, who may call it (`public`,
`key`, `admin`), and what it documents (summary, request body schema, answers).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

JSON = b"application/json"
PUBLIC, KEY, ADMIN = "public", "key", "admin"  # who may call a route


class HttpError(Exception):
    """An answer other than 200, as `{"error": message}`."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # "/v2/models/{model_name}/infer"
    handler: Callable[..., Awaitable]
    access: str  # PUBLIC, KEY or ADMIN
    summary: str
    body: dict[str, Any] | None = None  # request body: {content type: JSON schema}
    answers: tuple[int, ...] = (200,)
    pattern: re.Pattern = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path)
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    @property
    def parameters(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


class Router:
    """Exact paths by dict lookup (the hot path), parameterized ones by pattern."""

    def __init__(self, routes: list[Route]):
        self.routes = routes
        self._exact = {(r.method, r.path): r for r in routes if not r.parameters}
        self._patterns = [r for r in routes if r.parameters]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        route = self._exact.get((method, path))
        if route is not None:
            return route, {}
        allowed = []
        for route in self._patterns:
            found = route.pattern.match(path)
            if found:
                if route.method == method:
                    return route, found.groupdict()
                allowed.append(route.method)
        allowed += [r.method for r in self.routes if not r.parameters and r.path == path]
        if allowed:
            raise HttpError(405, f"{method} is not allowed on {path}; use {', '.join(sorted(set(allowed)))}",
                            [(b"allow", ", ".join(sorted(set(allowed))).encode())])  # fmt: skip
        raise HttpError(404, f"no endpoint {path[:200]}; see /openapi.json")


async def read_body(receive, headers: dict[str, str], limit: int, setting: str = "serve.max_body_mb") -> bytes:
    """The whole body, refused (413) past `limit` bytes, declared or not; a body shorter than its
    Content-Length (the client went away) is a 400."""
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise HttpError(400, f"Content-Length must be a number of bytes; got {declared[:40]!r}")
        if int(declared) > limit:
            raise HttpError(413, f"the body is {declared} bytes; the limit is {limit} ({setting})")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"the body exceeds {limit} bytes ({setting})")
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else None


def check_key(headers: dict[str, str], keys: tuple[str, ...]) -> None:
    """401 unless the request carries one of `keys` (Authorization: Bearer KEY or X-API-Key)."""
    given = headers.get("x-api-key") or bearer(headers)
    if not given or not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise HttpError(401, "a valid API key is required (Authorization: Bearer KEY or X-API-Key)",
                        [(b"www-authenticate", b"Bearer")])  # fmt: skip


def check_admin(headers: dict[str, str], token: str | None) -> None:
    if not token:
        raise HttpError(403, "admin endpoints are disabled; start the server with LOOPML_ADMIN_TOKEN set")
    given = bearer(headers)
    if given is None or not hmac.compare_digest(given.encode(), token.encode()):
        raise HttpError(401, "admin endpoints need Authorization: Bearer <LOOPML_ADMIN_TOKEN>",
                        [(b"www-authenticate", b"Bearer")])  # fmt: skip


def json_answer(payload: Any, status: int = 200, extra: list[tuple[bytes, bytes]] | None = None):
    return status, orjson.dumps(payload), [(b"content-type", JSON), *(extra or [])]


async def respond(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    if not any(k == b"content-type" for k, _ in headers):
        headers = [(b"content-type", JSON), *headers]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
