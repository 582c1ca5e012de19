"""Prometheus metrics of the server; every model metric is labelled by model and version."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("loopml_requests", "Inference requests by protocol, model, version and HTTP status.",
                                ["protocol", "model", "version", "status"], registry=r)  # fmt: skip
        self.latency = Histogram("loopml_request_duration_seconds", "Inference request latency, end to end.",
                                 ["protocol", "model", "version"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.batch_size = Histogram("loopml_batch_size", "Rows per model call.", ["model", "version"],
                                    buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        self.queue_depth = Gauge("loopml_queue_depth", "Rows waiting for the model.", ["model", "version"], registry=r)
        self.inflight = Gauge("loopml_inflight_requests", "Requests being served now.", registry=r)
        self.load_seconds = Gauge("loopml_model_load_seconds", "Seconds to load and warm a model version.",
                                  ["model", "version"], registry=r)  # fmt: skip
        self.traffic = Gauge("loopml_traffic_share", "Share of traffic routed to each version (0-1).",
                             ["model", "version"], registry=r)  # fmt: skip

        self.feature_drift = Gauge("loopml_feature_drift", "Live drift of a feature (or __prediction__).",
                                   ["model", "version", "feature", "stat"], registry=r)  # fmt: skip
        self.dataset_drift = Gauge("loopml_dataset_drift", "1 when the live window shows dataset drift.",
                                   ["model", "version"], registry=r)  # fmt: skip
        self.drifted_share = Gauge("loopml_drifted_feature_share", "Share of columns drifted in the live window.",
                                   ["model", "version"], registry=r)  # fmt: skip

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
