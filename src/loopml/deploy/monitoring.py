"""The Grafana dashboards of `loopml deploy render monitoring`: serving, drift and GPUs, one panel
per question an on-call engineer asks, each a PromQL query over the metrics loopml exports
(`loopml serve` /metrics, and `loopml gpu export` under the DCGM exporter's names).

Built here rather than kept as JSON templates so each panel's query exists once: the rendered
dashboards are written from `DASHBOARDS`, and the tests run every query against a real Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass

DATASOURCE = {"type": "prometheus", "uid": "loopml-prometheus"}


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str  # PromQL
    legend: str  # Grafana legend format, e.g. "v{{version}}"
    unit: str = "short"


DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "loopml-serving": ("loopml: serving", [
        Panel("Requests per second by version", 'sum by (model, version) (rate(loopml_requests_total[1m]))',
              "{{model}} v{{version}}", "reqps"),
        Panel("Latency p99", 'histogram_quantile(0.99, sum by (le, model) '
              '(rate(loopml_request_duration_seconds_bucket[1m])))', "{{model}} p99", "s"),
        Panel("Rows per model call (mean batch size)", 'sum by (model, version) (rate(loopml_batch_size_sum[1m])) / '
              'sum by (model, version) (rate(loopml_batch_size_count[1m]))', "{{model}} v{{version}}"),
        Panel("Errors by status and version", 'sum by (model, version, status) '
              '(rate(loopml_requests_total{status=~"[45].."}[1m]))', "{{status}} v{{version}}", "reqps"),
        Panel("Canary split (traffic share)", "loopml_traffic_share", "{{model}} v{{version}}", "percentunit"),
        Panel("Queue wait p95", "histogram_quantile(0.95, sum by (le, model) "
              "(rate(loopml_queue_wait_seconds_bucket[1m])))", "{{model}}", "s"),
        Panel("Requests in flight", "loopml_inflight_requests", "{{instance}}"),
    ]),
    "loopml-drift": ("loopml: drift", [
        Panel("Dataset drift (1 = drifted)", "loopml_dataset_drift", "{{model}} v{{version}}"),
        Panel("Share of columns drifted", "loopml_drifted_feature_share", "{{model}} v{{version}}", "percentunit"),
        Panel("PSI per feature", 'loopml_feature_drift{stat="psi"}', "{{feature}} v{{version}}"),
        Panel("Drift statistic per feature", "loopml_feature_drift", "{{feature}} {{stat}} v{{version}}"),
        Panel("Rows in the live window", "loopml_drift_window_rows", "{{model}} v{{version}}"),
    ]),
    "loopml-gpus": ("loopml: GPUs", [
        Panel("GPU utilization", "DCGM_FI_DEV_GPU_UTIL", "GPU {{gpu}} {{modelName}}", "percent"),
        Panel("GPU memory used", "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)", "GPU {{gpu}}",
              "percentunit"),
        Panel("GPU temperature", "DCGM_FI_DEV_GPU_TEMP", "GPU {{gpu}}", "celsius"),
        Panel("GPU power", "DCGM_FI_DEV_POWER_USAGE", "GPU {{gpu}}", "watt"),
    ]),
}  # fmt: skip


def dashboard(uid: str) -> dict:
    """One dashboard as Grafana's JSON model (schemaVersion 39), two panels a row."""
    title, panels = DASHBOARDS[uid]
    return {
        "uid": uid,
        "title": title,
        "tags": ["loopml"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "panels": [
            {
                "id": index + 1,
                "type": "timeseries",
                "title": panel.title,
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [{"refId": "A", "datasource": DATASOURCE, "expr": panel.expr, "legendFormat": panel.legend}],
            }
            for index, panel in enumerate(panels)
        ],
    }
