"""Real uvicorn servers on free loopback ports, serving models the spine trained and registered."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from loopml.config import ServeConfig
from loopml.project import Project
from loopml.serve.app import create_app
from loopml.serve.server import uvicorn_config
from loopml.serve.settings import ServeSettings
from loopml.uri import ModelRef
from tests.conftest import free_port


class LiveServer:
    """`create_app(settings)` under uvicorn (uvloop, httptools with loopml's limits) in a background thread."""

    def __init__(self, settings: ServeSettings, loader=None):
        self.app = create_app(settings, loader)
        self.port = free_port()
        settings = settings.model_copy(update={"serve": settings.serve.model_copy(update={"port": self.port})})
        self.server = uvicorn.Server(uvicorn_config(self.app, settings))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        if self.server.should_exit:
            return
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)


def settings_for(project: Path, **changes) -> ServeSettings:
    """Serving the project's champion; `changes` are ServeConfig fields, or ServeSettings fields
    (admin_token, api_keys, canary, canary_percent, monitor, log_dir)."""
    p = Project(project)
    own = {k: changes.pop(k) for k in list(changes) if k in ServeSettings.model_fields}
    return ServeSettings(
        primary=ModelRef.champion(p.config.name),
        serve=ServeConfig(**{"registry_poll_s": 0, **changes}),
        tracking_uri=p.tracking_uri,
        access_log=False,
        **own,
    )


@pytest.fixture(scope="module")
def server(digits_run):
    # batches smaller than the default 1,024 rows, so the 1,000-row tests go through the splitting
    live = LiveServer(settings_for(digits_run, max_delay_ms=5, max_batch_size=256))
    yield live
    live.stop()


@pytest.fixture
def start():
    """Start servers with custom settings; all stopped after the test."""
    started = []

    def _start(settings: ServeSettings) -> LiveServer:
        live = LiveServer(settings)
        started.append(live)
        return live

    yield _start
    for live in started:
        live.stop()


def raw_request(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Bytes sent as they are (what httpx refuses to send: lying lengths, huge headers), the answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a server may stop reading early
            sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)
