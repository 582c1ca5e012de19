"""`loopml gpu` views and the DCGM-compatible exporter, scraped by a real Prometheus server."""

import json
import shutil
import signal
import subprocess
import time

import pytest

from tests.conftest import BIN, free_port, loopml, prometheus_query, tool_env
from tests.system import fakes


def test_this_machines_gpus_or_none_exit_0(tmp_path):
    readings = json.loads(loopml("gpu", "--json", cwd=tmp_path).stdout)
    if fakes.GPU_HOST:
        assert readings and {"name", "memory_total_mib"} <= set(readings[0])
    else:
        assert readings == [] and "No GPU readings" in loopml("gpu", cwd=tmp_path).stdout


def test_readings_processes_and_mig(tmp_path):
    nvml = fakes.h100_nvml(tmp_path, gpu_processes=[{"pid": "self", "mem": 2 * 2**30}, {"pid": 1, "mem": 2**20}],
                           gpu_mig=[1, 1], gpu_mig_devices=[{"mem_total": 10 * 2**30, "mem_used": 2**30}])  # fmt: skip
    env = fakes.env(nvml)
    gpus = json.loads(loopml("gpu", "--json", cwd=tmp_path, env=env).stdout)
    gpu = gpus[0]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" and gpu["temperature_c"] == 31 and gpu["power_w"] == 70.3
    assert gpu["memory_used_mib"] == 483 and gpu["memory_total_mib"] == 81559
    assert gpu["mig_enabled"] and gpu["mig_devices"][0]["memory_total_mib"] == 10240
    ours = [p for p in gpu["processes"] if p["loopml"]]
    assert len(ours) == 1 and ours[0]["memory_mib"] == 2048
    view = loopml("gpu", cwd=tmp_path, env={**env, "COLUMNS": "220"}).stdout
    assert "H100" in view and "483 / 81,559 MiB" in view and "loopml" in view and "1 instances" in view


def test_watch_refreshes_until_interrupted(tmp_path):
    env = tool_env(fakes.env(fakes.h100_nvml(tmp_path)))
    proc = subprocess.Popen([str(BIN / "loopml"), "gpu", "--watch", "--interval", "0.2"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    # a loaded machine may take seconds to start Python: interrupt once it says it is watching
    assert b"Ctrl-C stops" in proc.stderr.readline()
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert b"H100" in out


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (.ci/run installs it)")
def test_exporter_is_scraped_by_prometheus_with_dcgm_names(tmp_path):
    exporter_port, prom_port = free_port(), free_port()
    env = tool_env(fakes.env(fakes.h100_nvml(tmp_path)))
    exporter = subprocess.Popen([str(BIN / "loopml"), "gpu", "export", "--port", str(exporter_port)], cwd=tmp_path,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs: [{{job_name: gpu, static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]}}]\n"
    )
    prometheus = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{prom_port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        samples = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(samples) < 3:
            for name in ("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE"):
                result = prometheus_query(prom_port, name)
                if result:
                    samples[name] = result[0]
            time.sleep(0.5)
        assert len(samples) == 3, f"Prometheus scraped nothing; exporter said: {exporter.stderr.read1().decode()}"
        temp = samples["DCGM_FI_DEV_GPU_TEMP"]
        assert temp["value"][1] == "31"
        labels = temp["metric"]
        assert labels["gpu"] == "0" and labels["device"] == "nvidia0" and labels["modelName"] == "NVIDIA H100 80GB HBM3"
        assert labels["UUID"] == "GPU-7480ed8e-e7be-8495-48e3-dd7b95d7af8d" and labels["Hostname"]
        assert labels["DCGM_FI_DRIVER_VERSION"] == "580.159.04"
        assert samples["DCGM_FI_DEV_FB_USED"]["value"][1] == "483"
        assert float(samples["DCGM_FI_DEV_POWER_USAGE"]["value"][1]) == pytest.approx(70.3)
    finally:
        prometheus.terminate()
        exporter.terminate()
        prometheus.wait(timeout=20)
        exporter.wait(timeout=20)
