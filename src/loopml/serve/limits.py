"""Limits uvicorn's httptools protocol lacks: request-line + header size and count (431), a
header-read timeout that also closes connections that never send anything (slowloris, idle
floods), and a timeout between the pieces of a body.

uvicorn takes the protocol class as `http=`: `limited_protocol(serve_config)` builds it.
"""

from __future__ import annotations

import asyncio

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _Refused(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def limited_protocol(cfg) -> type[HttpToolsProtocol]:
    """An HttpToolsProtocol subclass holding `cfg`'s limits (a ServeConfig)."""
    max_bytes = int(cfg.max_header_kb * 1024)

    class LimitedHttpTools(HttpToolsProtocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._header_bytes = self._headers_seen = 0
            self._header_timer: asyncio.TimerHandle | None = None
            self._body_timer: asyncio.TimerHandle | None = None
            self._arm_header_timer()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
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
            self._header_bytes = self._headers_seen = 0
            if self._header_timer is None:
                self._arm_header_timer()

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
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().on_headers_complete()
            self._arm_body_timer()

        def on_body(self, body: bytes) -> None:
            self._arm_body_timer()
            super().on_body(body)

        def on_message_complete(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # the next request on this connection starts its own header clock when its first byte
            # comes; until then uvicorn's keep-alive timeout (serve.keep_alive_s) applies

        # -- helpers ---------------------------------------------------------------------------
        def _count(self, size: int) -> None:
            self._header_bytes += size
            if self._header_bytes > max_bytes:
                self._refusal = _Refused(
                    431,
                    b"Request Header Fields Too Large",
                    f"the request line and headers exceed {cfg.max_header_kb:g} KiB (serve.max_header_kb)",
                )
                raise self._refusal

        def _arm_header_timer(self) -> None:
            self._header_timer = self.loop.call_later(cfg.header_timeout_s, self._header_timeout)

        def _arm_body_timer(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
            self._body_timer = self.loop.call_later(cfg.body_timeout_s, self._body_timeout)

        def _disarm(self) -> None:
            for timer in (getattr(self, "_header_timer", None), getattr(self, "_body_timer", None)):
                if timer is not None:
                    timer.cancel()
            self._header_timer = self._body_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:  # between requests or before the first
                self._refuse(_Refused(408, b"Request Timeout", f"no complete request within {cfg.header_timeout_s:g} s "
                                      "(serve.header_timeout_s)"))  # fmt: skip

        def _body_timeout(self) -> None:
            self._body_timer = None
            if not self.transport.is_closing() and self.cycle is not None and self.cycle.more_body:
                self.transport.close()  # the app sees a disconnect; nothing useful can be answered mid-body

        def _refuse(self, refused: _Refused) -> None:
            body = ('{"error": "' + refused.message.replace('"', "'") + '"}').encode()
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n" % (refused.status, refused.reason, len(body)) + body
            )
            self._disarm()
            self.transport.close()

    return LimitedHttpTools
