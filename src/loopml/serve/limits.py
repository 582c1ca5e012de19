"""Limits uvicorn's httptools protocol lacks: request-line + header size and count (431), a
header-read timeout that also closes connections that never send anything (slowloris, idle
floods), and a timeout between the pieces of a body.

Header bytes are counted as they arrive, not only per parsed header: httptools hands a header over
once it is complete, so a 1 GB header line would otherwise be buffered whole before the 431. A
refused connection answers, then reads and drops what the client still sends until it goes quiet
(a lingering close, as nginx does): closing at once would reset the connection and lose the answer.

uvicorn takes the protocol class as `http=`: `limited_protocol(serve_config)` builds it. The
timeouts cost a timestamp per request: one sweeper per event loop looks at every open connection
twice a second (no timer per request: a heap push and pop each would show in the req/s).
"""

from __future__ import annotations

import asyncio
import time

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SWEEP_S = 0.5  # how often connections are checked against their deadlines
LINGER_QUIET_S = 1.0  # a refused connection is closed once the client has sent nothing for this long ...
LINGER_MAX_S = 30.0  # ... or this long after the refusal at most
# what a connection is waiting for: a request, the rest of its headers, its body; or refused and draining
WAITING, HEADERS, BODY, DRAINING = 0, 1, 2, 3


class _Refused(Exception):
    def __init__(self, status: int, reason: bytes, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def limited_protocol(cfg) -> type[HttpToolsProtocol]:
    """An HttpToolsProtocol subclass holding `cfg`'s limits (a ServeConfig)."""
    max_bytes = int(cfg.max_header_kb * 1024)
    live: set[LimitedHttpTools] = set()
    sweeper: list[asyncio.Task] = []

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            for conn in list(live):
                conn._check(now)

    class LimitedHttpTools(HttpToolsProtocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._header_bytes = self._headers_seen = self._header_raw = 0
            self._tail = b""  # the last bytes of the previous piece: a blank line may straddle two
            self._refusal: _Refused | None = None
            self._state, self._since = HEADERS, time.monotonic()  # a new connection owes a request now
            self._refused_at = 0.0
            live.add(self)
            if not sweeper or sweeper[0].done():
                sweeper[:] = [self.loop.create_task(sweep())]

        def connection_lost(self, exc) -> None:
            live.discard(self)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._state == DRAINING:  # refused: read and dropped, memory stays flat
                self._since = time.monotonic()
                return
            if self._state == HEADERS:
                self._header_raw += len(data)
                if self._header_raw > max_bytes and b"\r\n\r\n" not in self._tail + data:
                    self._refuse(_too_large())
                    return
                self._tail = data[-3:]
            # uvicorn's own, but a refusal raised in a parser callback answers with its status
            self._unset_keepalive_if_required()
            self._refusal = None
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
            except httptools.HttpParserError:
                if self._refusal is not None:
                    self._refuse(self._refusal)
                else:
                    self.send_400_response("Invalid HTTP request received.")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = self._headers_seen = self._header_raw = 0
            self._tail = b""
            if self._state == WAITING:  # the next request on a keep-alive connection: its own header clock
                self._state, self._since = HEADERS, time.monotonic()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._headers_seen += 1
            self._count(len(name) + len(value) + 4)
            if self._headers_seen > cfg.max_headers:
                self._refusal = _Refused(431, b"Request Header Fields Too Large",
                                         f"more than {cfg.max_headers} header fields (serve.max_headers)")  # fmt: skip
                raise self._refusal
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._state, self._since = BODY, time.monotonic()
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            self._since = time.monotonic()
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._state = WAITING  # uvicorn's keep-alive timeout (serve.keep_alive_s) covers idle time now
            super().on_message_complete()

        # -- helpers ---------------------------------------------------------------------------
        def _count(self, size: int) -> None:
            self._header_bytes += size
            if self._header_bytes > max_bytes:
                self._refusal = _too_large()
                raise self._refusal

        def _check(self, now: float) -> None:
            if self.transport.is_closing():
                return
            if self._state == DRAINING:
                if now - self._since > LINGER_QUIET_S or now - self._refused_at > LINGER_MAX_S:
                    self.transport.close()
            elif self._state == HEADERS and now - self._since > cfg.header_timeout_s:
                if self.cycle is None or self.cycle.response_complete:
                    self._refuse(_Refused(408, b"Request Timeout", f"no complete request within "
                                          f"{cfg.header_timeout_s:g} s (serve.header_timeout_s)"))  # fmt: skip
            elif self._state == BODY and now - self._since > cfg.body_timeout_s and self.cycle is not None \
                    and self.cycle.more_body:  # fmt: skip
                self.transport.close()  # the app sees a disconnect; nothing useful can be answered mid-body

        def _refuse(self, refused: _Refused) -> None:
            body = ('{"error": "' + refused.message.replace('"', "'") + '"}').encode()
            head = (
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            )
            self.transport.write(head % (refused.status, refused.reason, len(body)) + body)
            if self.cycle is not None and not self.cycle.response_complete:  # an earlier request still answers
                live.discard(self)
                self.transport.close()
                return
            self._state, self._since = DRAINING, time.monotonic()
            self._refused_at = self._since
            try:
                self.transport.write_eof()  # the answer, then end of stream; reading goes on until the client stops
            except (NotImplementedError, RuntimeError, OSError):
                live.discard(self)
                self.transport.close()

    def _too_large() -> _Refused:
        return _Refused(431, b"Request Header Fields Too Large", f"the request line and headers exceed "
                        f"{cfg.max_header_kb:g} KiB (serve.max_header_kb)")  # fmt: skip

    return LimitedHttpTools
