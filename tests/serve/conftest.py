"""Real uvicorn servers on free loopback ports, serving models the spine trained and registered."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from loopml.config import ServeConfig
from loopml.project import Project
from loopml.serve.app import ServeSettings, create_app
from loopml.serve.runtime import ModelSource
from tests.conftest import free_port


class LiveServer:
    """`create_app(settings)` under uvicorn (uvloop, httptools) in a background thread."""

    def __init__(self, settings: ServeSettings):
        self.app = create_app(settings)
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, loop="uvloop", http="httptools",
                                log_level="warning", lifespan="on")  # fmt: skip
        self.server = uvicorn.Server(config)
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


def settings_for(project: Path, **serve) -> ServeSettings:
    p = Project(project)
    name = p.config.name
    return ServeSettings(
        primary=ModelSource(name, f"models:/{name}@champion", "champion"),
        serve=ServeConfig(**{"registry_poll_s": 0, **serve}),
        tracking_uri=p.tracking_uri,
        access_log=False,
    )


@pytest.fixture(scope="module")
def server(digits_run):
    live = LiveServer(settings_for(digits_run, max_delay_ms=5))
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
