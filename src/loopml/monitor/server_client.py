"""What the loop asks of a running loopml server: admin calls (canary, reload, the traffic split)
and per-version request counts and latency read from its Prometheus `/metrics`.

A snapshot carries the server's start time: counters restart from zero with the server, so two
snapshots of different starts are not subtracted (the loop re-opens its canary instead)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from loopml.errors import LoopmlError
from loopml.monitor.policy import VersionServed


class ServerUnreachable(LoopmlError):
    """The server did not answer, or refused an admin call."""


@dataclass
class VersionTraffic:
    """Cumulative counters of one version since the server started (subtract two snapshots)."""

    requests: float
    errors: float  # 5xx answers of requests the version ran
    buckets: dict[float, float]  # latency histogram: upper bound (s) -> cumulative count

    def minus(self, earlier: VersionTraffic | None) -> VersionTraffic:
        if earlier is None:
            return self
        return VersionTraffic(
            max(0.0, self.requests - earlier.requests),
            max(0.0, self.errors - earlier.errors),
            {le: max(0.0, n - earlier.buckets.get(le, 0.0)) for le, n in self.buckets.items()},
        )

    def p95_ms(self) -> float | None:
        total = max(self.buckets.values(), default=0.0)
        if total <= 0:
            return None
        for le in sorted(self.buckets):
            if self.buckets[le] >= 0.95 * total:
                return le * 1000 if le != float("inf") else None
        return None

    def served(self) -> VersionServed:
        return VersionServed(self.requests, self.errors, self.p95_ms())


@dataclass
class Snapshot:
    started: float | None  # the server's start time (loopml_server_start_time_seconds)
    versions: dict[str, VersionTraffic] = field(default_factory=dict)

    def since(self, earlier: Snapshot) -> dict[str, VersionTraffic]:
        """Per version, what happened between `earlier` and this snapshot (same server run)."""
        return {v: t.minus(earlier.versions.get(v)) for v, t in self.versions.items()}

    def restarted_since(self, earlier: Snapshot) -> bool:
        if self.started is not None and earlier.started is not None and self.started != earlier.started:
            return True
        return any(t.requests < earlier.versions[v].requests for v, t in self.versions.items() if v in earlier.versions)


class ServerClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 120):
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("LOOPML_ADMIN_TOKEN")
        self.timeout = timeout

    def open_canary(self, alias: str, percent: float) -> dict:
        """Load the version behind `alias` beside the primary and give it `percent` of the traffic."""
        return self._call("POST", "/admin/traffic", {"canary": alias, "canary_percent": percent})

    def close_canary(self) -> dict:
        return self._call("POST", "/admin/traffic", {"canary": None, "canary_percent": 0})

    def reload(self) -> dict:
        """Make the primary serve whatever `champion` points at now."""
        return self._call("POST", "/admin/reload", {})

    def traffic(self) -> dict:
        """The split now: primary and canary versions, the canary's share, the server's start."""
        return self._call("GET", "/admin/traffic", None)

    def snapshot(self) -> Snapshot:
        """Requests, 5xx answers and the latency histogram of every served version, and the start time."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self._call("GET", "/metrics", None, admin=False, raw=True)["body"]
        snap = Snapshot(None)

        def of(version: str) -> VersionTraffic:
            return snap.versions.setdefault(version, VersionTraffic(0.0, 0.0, {}))

        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "loopml_server_start_time_seconds":
                    snap.started = sample.value
                    continue
                version = sample.labels.get("version")
                if version is None or version == "none":
                    continue
                if sample.name == "loopml_requests_total":
                    of(version).requests += sample.value
                    if sample.labels.get("status", "").startswith("5"):
                        of(version).errors += sample.value
                elif sample.name == "loopml_request_duration_seconds_bucket":
                    le = float(sample.labels["le"])
                    buckets = of(version).buckets
                    buckets[le] = buckets.get(le, 0.0) + sample.value
        return snap

    def _call(self, method: str, path: str, body: dict | None, admin: bool = True, raw: bool = False) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("content-type", "application/json")
        key = os.environ.get("LOOPML_API_KEYS", "").split(",")[0].strip()
        if admin:
            if not self.token:
                raise ServerUnreachable(
                    f"the loop needs LOOPML_ADMIN_TOKEN (the one {self.url} was started with) to open and close "
                    "canaries"
                )
            request.add_header("authorization", f"Bearer {self.token}")
        elif key:  # /metrics behind the API keys
            request.add_header("x-api-key", key)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise ServerUnreachable(f"{method} {self.url}{path} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnreachable(
                f"cannot reach the loopml server at {self.url} ({reason}); start it with "
                "`loopml serve`, or set loop.server in loopml.yaml"
            ) from None
        return {"body": text} if raw else json.loads(text or "{}")
