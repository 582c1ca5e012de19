"""From resolved settings to a running server: uvicorn (uvloop, httptools with loopml's limits), one
worker in this process or several forked ones behind one port (see `workers`)."""

from __future__ import annotations

import contextlib
import logging
import sys

from loopml.serve.settings import ServeSettings

logger = logging.getLogger(__name__)


def configure_access_log(enabled: bool) -> None:
    """Access lines are JSON, one per request, on stderr; no payloads are ever logged."""
    log = logging.getLogger("loopml.access")
    log.propagate = False
    log.handlers[:] = []
    if enabled:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    else:
        log.setLevel(logging.WARNING)


def uvicorn_config(app, settings: ServeSettings, **extra):
    """uvicorn's Config for `app` with the limits of `settings.serve`."""
    import uvicorn

    from loopml.serve.limits import limited_protocol

    cfg = settings.serve
    return uvicorn.Config(app, host=cfg.host, port=cfg.port, loop="uvloop", http=limited_protocol(cfg),
                          log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=30,
                          proxy_headers=False,  # loopml reads no client address: no middleware per request
                          timeout_keep_alive=int(max(1, cfg.keep_alive_s)), **extra)  # fmt: skip


def run(settings: ServeSettings) -> None:
    """Serve until Ctrl-C (or SIGTERM): queued requests are answered before the process ends."""
    import uvicorn

    from loopml.serve.app import create_app

    configure_access_log(settings.access_log)
    if settings.serve.workers == 1:
        server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
        try:
            server.run()
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown: that is a clean stop
            return
        if not server.started:
            from loopml.errors import LoopmlError

            raise LoopmlError("the server did not start; the lines above say why")
        return
    from loopml.serve.workers import Supervisor

    Supervisor(settings, _worker).run()


def _worker(settings: ServeSettings, sockets, siblings, started_at: float) -> None:
    """One forked worker: its own app and model copy, serving the shared port and its private socket."""
    import uvicorn

    from loopml.serve.app import create_app

    app = create_app(settings, siblings=siblings, started_at=started_at)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(uvicorn_config(app, settings)).run(sockets=sockets)
