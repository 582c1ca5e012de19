"""A Prometheus exporter for NVML readings under the DCGM exporter's metric names and labels,
so Grafana dashboards built for NVIDIA's dcgm-exporter work unchanged.

Names, units and labels follow dcgm-exporter's default counters (FB in MiB, power in W,
clocks in MHz, energy in mJ; labels gpu, UUID, device, modelName, Hostname, DCGM_FI_DRIVER_VERSION).
Readings are taken at scrape time, so a scrape always sees the current state.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from loopml.system import nvidia

logger = logging.getLogger(__name__)

# DCGM field → (help text, reading key in nvidia.nvml_snapshot()'s per-GPU dict)
METRICS: dict[str, tuple[str, str]] = {
    "DCGM_FI_DEV_GPU_UTIL": ("GPU utilization (in %).", "utilization_gpu"),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("Memory utilization (in %).", "utilization_memory"),
    "DCGM_FI_DEV_FB_USED": ("Framebuffer memory used (in MiB).", "memory_used_mib"),
    "DCGM_FI_DEV_FB_FREE": ("Framebuffer memory free (in MiB).", "memory_free_mib"),
    "DCGM_FI_DEV_GPU_TEMP": ("GPU temperature (in C).", "temperature_c"),
    "DCGM_FI_DEV_POWER_USAGE": ("Power draw (in W).", "power_w"),
    "DCGM_FI_DEV_SM_CLOCK": ("SM clock frequency (in MHz).", "sm_clock_mhz"),
    "DCGM_FI_DEV_MEM_CLOCK": ("Memory clock frequency (in MHz).", "mem_clock_mhz"),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("Total energy consumption since boot (in mJ).", "energy_mj"),
}
LABELS = ("gpu", "UUID", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION")


class DcgmCollector:
    """prometheus-client collector: one gauge family per DCGM field, one sample per GPU."""

    def __init__(self, hostname: str | None = None):
        self.hostname = hostname or socket.gethostname()

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        try:
            snapshot = nvidia.nvml_snapshot(processes=False)
            up = 1.0
        except nvidia.NvmlUnavailable as exc:
            logger.warning("no GPU readings: %s", exc)
            snapshot, up = {"gpus": [], "driver": ""}, 0.0
        families = {name: GaugeMetricFamily(name, help_text, labels=LABELS) for name, (help_text, _) in METRICS.items()}
        for gpu in snapshot["gpus"]:
            labels = self._labels(gpu, snapshot["driver"])
            for name, (_, key) in METRICS.items():
                value = gpu.get(key)
                if value is not None:
                    families[name].add_metric(labels, float(value))
        yield from families.values()
        health = GaugeMetricFamily("loopml_gpu_exporter_nvml_up", "1 when NVML answered this scrape.")
        health.add_metric([], up)
        yield health

    def _labels(self, gpu: dict[str, Any], driver: str) -> list[str]:
        return [str(gpu["index"]), gpu["uuid"], f"nvidia{gpu.get('minor', gpu['index'])}", gpu["name"],
                self.hostname, driver]  # fmt: skip


def serve(port: int = 9400, host: str = "127.0.0.1"):
    """Start the exporter's HTTP server in a background thread; returns (server, thread)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(DcgmCollector())
    return start_http_server(port, addr=host, registry=registry)


def readings_for_mlflow(prefix: str = "gpu") -> dict[str, float]:
    """The same readings as flat metrics for an MLflow run (empty without GPUs)."""
    try:
        snapshot = nvidia.nvml_snapshot(processes=False)
    except nvidia.NvmlUnavailable:
        return {}
    values = {}
    for gpu in snapshot["gpus"]:
        for name, (_, key) in METRICS.items():
            if gpu.get(key) is not None:
                values[f"{prefix}{gpu['index']}/{name}"] = float(gpu[key])
    return values
