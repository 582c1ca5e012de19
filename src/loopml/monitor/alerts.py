"""The watcher's Alertmanager webhook (`loop.alerts: true`): `loopml monitor --watch` listens on
`loop.alerts_listen` (loopback by default) for POST /alerts with `Authorization: Bearer
$LOOPML_ALERT_TOKEN`, and a firing alert for this project's model that carries the label
`loopml_action: retrain` (the rendered LoopmlDatasetDrift does; add it to your own accuracy alert)
starts the same checked, gated cycle a drift check starts, with the alert as evidence.

A malformed payload is a 400 and queues nothing; alerts for another model, resolved alerts and
alerts without the label are answered 200, ignored, and the ignoring is said on the watcher's log.
"""

from __future__ import annotations

import hmac
import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loopml.errors import ConfigError

TOKEN_ENV = "LOOPML_ALERT_TOKEN"
MAX_BODY = 1 << 20  # Alertmanager groups alerts; a megabyte is thousands of them
RETRAIN_LABEL = ("loopml_action", "retrain")


class AlertPayloadError(ValueError):
    """The body is not an Alertmanager webhook payload."""


@dataclass(frozen=True)
class Alert:
    name: str
    status: str  # firing | resolved
    labels: dict[str, str]
    summary: str
    starts_at: str

    @property
    def model(self) -> str | None:
        return self.labels.get("model")

    @property
    def version(self) -> str | None:
        return self.labels.get("version")

    def describe(self) -> str:
        version = f" v{self.version}" if self.version else ""
        return f"alert {self.name} for {self.model}{version}, firing since {self.starts_at}: {self.summary}"


def parse(body: bytes) -> list[Alert]:
    """The alerts of an Alertmanager webhook payload (version 4), or AlertPayloadError saying what is wrong."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AlertPayloadError(f"the body is not JSON ({exc})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise AlertPayloadError('expected an Alertmanager webhook payload: an object with an "alerts" list')
    alerts = []
    for index, item in enumerate(payload["alerts"]):
        labels = item.get("labels") if isinstance(item, dict) else None
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise AlertPayloadError(f"alerts[{index}].labels must be an object of strings")
        status = item.get("status")
        if status not in ("firing", "resolved"):
            raise AlertPayloadError(f'alerts[{index}].status must be "firing" or "resolved"; got {status!r}')
        annotations = item.get("annotations") if isinstance(item.get("annotations"), dict) else {}
        alerts.append(Alert(str(labels.get("alertname", "")), status, labels, str(annotations.get("summary", "")),
                            str(item.get("startsAt", ""))))  # fmt: skip
    return alerts


class AlertInbox:
    """The webhook server (a thread) and the queue of alerts that start a cycle."""

    def __init__(self, listen: str, token: str | None, model: str, echo: Callable[[str], None]) -> None:
        if not token:
            raise ConfigError(f"loop.alerts needs a token: set {TOKEN_ENV} (the environment or .env) and give "
                              "Alertmanager the same one (webhook_configs http_config.authorization)")  # fmt: skip
        host, _, port = listen.rpartition(":")
        self.model, self.echo = model, echo
        self.pending: queue.Queue[Alert] = queue.Queue()
        self.arrived = threading.Event()
        self._server = ThreadingHTTPServer((host.strip("[]"), int(port)), _handler(self, token.encode()))
        self._server.daemon_threads = True
        self.url = f"http://{listen}/alerts"
        threading.Thread(target=self._server.serve_forever, name="alert-inbox", daemon=True).start()

    def accept(self, alerts: list[Alert]) -> dict[str, Any]:
        """Queue the alerts that start a cycle; say why each other one is ignored."""
        queued, ignored = 0, []
        for alert in alerts:
            if alert.model != self.model:
                why = f"{alert.name} is for model {alert.model!r}; this watcher runs {self.model!r}"
            elif alert.status != "firing":
                why = f"{alert.name} is {alert.status}"
            elif alert.labels.get(RETRAIN_LABEL[0]) != RETRAIN_LABEL[1]:
                why = f"{alert.name} has no label {RETRAIN_LABEL[0]}: {RETRAIN_LABEL[1]}"
            else:
                self.pending.put(alert)
                queued += 1
                self.echo(f"alert received: {alert.describe()}")
                continue
            ignored.append(why)
            self.echo(f"alert ignored: {why}")
        if queued:
            self.arrived.set()
        return {"queued": queued, "ignored": ignored}

    def take(self) -> Alert | None:
        """The oldest queued alert; the others about the same model version are dropped with it
        (one retrain answers them all)."""
        try:
            first = self.pending.get_nowait()
        except queue.Empty:
            return None
        while True:
            try:
                self.pending.get_nowait()
            except queue.Empty:
                break
        self.arrived.clear()
        return first

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early when an alert arrives."""
        self.arrived.wait(seconds)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(inbox: AlertInbox, token: bytes):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?")[0] != "/alerts":
                return self._answer(404, {"error": f"no such path {self.path!r}; Alertmanager posts to /alerts"})
            given = self.headers.get("authorization", "").removeprefix("Bearer ").encode()
            if not hmac.compare_digest(given, token):
                return self._answer(401, {"error": f"a bearer token is needed: the value of {TOKEN_ENV}"})
            try:
                length = int(self.headers.get("content-length", "0"))
            except ValueError:
                return self._answer(400, {"error": "content-length must be a number"})
            if length > MAX_BODY:
                return self._answer(413, {"error": f"the body is {length} bytes; at most {MAX_BODY}"})
            try:
                alerts = parse(self.rfile.read(length))
            except AlertPayloadError as exc:
                return self._answer(400, {"error": str(exc)})
            return self._answer(200, inbox.accept(alerts))

        def do_GET(self) -> None:  # noqa: N802
            self._answer(405, {"error": "POST Alertmanager webhooks to /alerts"})

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # the watcher says what matters itself
            pass

    return Handler
