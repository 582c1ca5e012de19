"""Prometheus metrics of the server; every model metric is labelled by model and version.

Labels only ever carry names the server chose (the served model's name and loaded versions, the
protocol, the status): a request for a made-up model or version is counted under model="unknown",
version="none", so a scanner cannot grow /metrics. With several workers (`serve.workers`), every
worker writes its values to a shared folder (prometheus-client's multiprocess mode) and any
worker's /metrics shows the sum of all of them.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN_MODEL, NO_VERSION = "unknown", "none"


def use_multiprocess(folder: str) -> None:
    """Make metrics created from now on in this process write to `folder` (call before ServerMetrics)."""
    from prometheus_client import values

    os.environ[MULTIPROCESS_ENV] = folder
    values.ValueClass = values.MultiProcessValue()


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


class ServerMetrics:
    def __init__(self, started_at: float | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("loopml_requests", "Requests by protocol, model, version and HTTP status (version is "
                                "set only for requests the version ran).", ["protocol", "model", "version", "status"],
                                registry=r)  # fmt: skip
        self.latency = Histogram("loopml_request_duration_seconds", "Inference request latency, end to end (answered "
                                 "requests).", ["protocol", "model", "version"], buckets=LATENCY_BUCKETS,
                                 registry=r)  # fmt: skip
        self.batch_size = Histogram("loopml_batch_size", "Rows per model call.", ["model", "version"],
                                    buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        self.queue_wait = Histogram("loopml_queue_wait_seconds", "Time a request waited for the model.",
                                    ["model", "version"], buckets=WAIT_BUCKETS, registry=r)  # fmt: skip
        self.queue_depth = Gauge("loopml_queue_depth", "Rows waiting for the model.", ["model", "version"], registry=r,
                                 multiprocess_mode="livesum")  # fmt: skip
        self.inflight = Gauge("loopml_inflight_requests", "Requests being served now.", registry=r,
                              multiprocess_mode="livesum")  # fmt: skip
        self.load_seconds = Gauge("loopml_model_load_seconds", "Seconds to load and warm a model version.",
                                  ["model", "version"], registry=r, multiprocess_mode="livemax")  # fmt: skip
        self.traffic = Gauge("loopml_traffic_share", "Share of traffic routed to each version (0-1).",
                             ["model", "version"], registry=r, multiprocess_mode="livemostrecent")  # fmt: skip
        self.unseen = Counter("loopml_unseen_values", "Text values a version never saw in training (answered).",
                              ["model", "version", "column"], registry=r)  # fmt: skip
        self.truncated = Counter("loopml_text_truncated_rows", "Texts longer than the model's max_length, cut to it "
                                 "(answered).", ["model", "version"], registry=r)  # fmt: skip
        self.started = Gauge("loopml_server_start_time_seconds", "When the server started (a restart resets counters).",
                             registry=r, multiprocess_mode="livemin")  # fmt: skip
        self.registry_up = Gauge("loopml_registry_up", "1 when the last registry call succeeded, 0 when it failed.",
                                 registry=r, multiprocess_mode="livemin")  # fmt: skip
        self.monitor_up = Gauge("loopml_monitor_up", "1 when the last live drift computation succeeded.",
                                registry=r, multiprocess_mode="livemin")  # fmt: skip

        self.feature_drift = Gauge("loopml_feature_drift", "Live drift of a feature (or __prediction__).",
                                   ["model", "version", "feature", "stat"], registry=r,
                                   multiprocess_mode="livemostrecent")  # fmt: skip
        self.dataset_drift = Gauge("loopml_dataset_drift", "1 when the live window shows dataset drift.",
                                   ["model", "version"], registry=r, multiprocess_mode="livemostrecent")  # fmt: skip
        self.drifted_share = Gauge("loopml_drifted_feature_share", "Share of columns drifted in the live window.",
                                   ["model", "version"], registry=r, multiprocess_mode="livemostrecent")  # fmt: skip
        self.window_time = Gauge("loopml_drift_window_time_seconds", "When the window behind the live drift gauges "
                                 "was taken (unix time): they judge the traffic up to then.", ["model", "version"],
                                 registry=r, multiprocess_mode="livemostrecent")  # fmt: skip
        self.window_rows = Gauge("loopml_drift_window_rows", "Rows in the live drift window (no verdict below "
                                 "monitor.min_rows).", ["model", "version"], registry=r,
                                 multiprocess_mode="livesum")  # fmt: skip
        self._counters: dict[tuple, Counter] = {}
        self._timers: dict[tuple, Histogram] = {}
        self.started_at = started_at or time.time()
        self.started.set(self.started_at)
        self.registry_up.set(1)
        self.monitor_up.set(1)

    def count(self, labels: tuple[str, str, str], ran: bool, status: int, seconds: float) -> None:
        """One answered request: its count (under its version only if the version ran it) and latency.
        The labelled children are cached: `labels()` per request costs a lock and a dict walk."""
        protocol, model, version = labels
        key = (protocol, model, version if ran else NO_VERSION, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(*key[:3], str(status))
        counter.inc()
        if status < 400:
            timer = self._timers.get(labels)
            if timer is None:
                timer = self._timers[labels] = self.latency.labels(*labels)
            timer.observe(seconds)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        if multiprocess():
            from prometheus_client import multiprocess as mp

            merged = CollectorRegistry()
            mp.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)
