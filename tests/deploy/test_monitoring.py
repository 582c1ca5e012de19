"""`loopml deploy render monitoring`, checked by the ecosystem's own tools and run for real: promtool
checks the config and rules and runs the rendered unit tests (every alert fires and resolves),
amtool checks Alertmanager's config; then a real Prometheus scrapes a real `loopml serve` (and
`loopml gpu export` on a fake NVML) under shifted traffic, every dashboard panel's query returns
data, the drift alert fires, and a real Alertmanager delivers it to `loopml monitor --watch`, whose
loop retrains, canaries and promotes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import BIN, FAST, free_port, loopml, loopml_json, prometheus_query, tool_env, wait_ready
from tests.monitor.test_loop import LOOP, Traffic
from tests.system import fakes

needs_prometheus = pytest.mark.skipif(
    shutil.which("promtool") is None or shutil.which("amtool") is None,
    reason="needs Debian's prometheus and prometheus-alertmanager (.ci/run installs them)",
)


ALERT_TOKEN = "alert-test-token"


def check(*cmd: str, cwd: Path) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@needs_prometheus
def test_rendered_files_pass_promtool_and_amtool(digits_run, tmp_path):
    out = tmp_path / "monitoring"
    result = loopml_json("deploy", "render", "monitoring", "--out", str(out), cwd=digits_run)
    assert result["name"] == "digits" and result["psi_alert"] == 0.25  # thresholds from the project's loopml.yaml
    check("promtool", "check", "config", "prometheus.yml", cwd=out)
    assert "SUCCESS: 11 rules found" in check("promtool", "check", "rules", "alerts.yml", cwd=out)
    tested = yaml.safe_load((out / "alerts.test.yml").read_text())["tests"][0]["alert_rule_test"]
    rules = yaml.safe_load((out / "alerts.yml").read_text())["groups"]
    alerts = {rule["alert"] for group in rules for rule in group["rules"]}
    assert {case["alertname"] for case in tested} == alerts  # every alert has a case: fires, then resolves
    assert "SUCCESS" in check("promtool", "test", "rules", "alerts.test.yml", cwd=out)
    check("amtool", "check-config", "alertmanager.yml", cwd=out)
    for name in ("loopml-serving", "loopml-drift", "loopml-gpus"):
        board = json.loads((out / "grafana" / "dashboards" / f"{name}.json").read_text())
        assert board["uid"] == name and board["panels"]
        assert all(p["datasource"]["uid"] == "loopml-prometheus" for p in board["panels"])
    source = yaml.safe_load((out / "grafana" / "provisioning" / "datasources" / "loopml.yaml").read_text())
    assert source["datasources"][0]["uid"] == "loopml-prometheus"

    refused = loopml("deploy", "render", "monitoring", "--out", str(tmp_path / "x"), "--serve", "localhost",
                     cwd=digits_run, check=False)  # fmt: skip
    assert refused.returncode == 1 and "--serve must be host:port, like 127.0.0.1:8000" in refused.stderr
    assert not (tmp_path / "x").exists()


def firing(port: int) -> set[str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=5) as response:
            alerts = json.loads(response.read())["data"]["alerts"]
    except OSError:
        return set()
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


def alert_starts_the_loop(project: Path, tmp_path: Path) -> dict:
    """serve → Prometheus (every dashboard panel has data) → LoopmlDatasetDrift fires → Alertmanager →
    the watcher's webhook → retrain → challenger → canary → promoted, with the alert as evidence. The
    watcher's own drift and accuracy triggers are off: only the alert can start the cycle. Run on the
    team stack by tests/team (the whole loop there); returns the watcher's decision."""
    from loopml.deploy.monitoring import DASHBOARDS

    serve_port, gpu_port, prom_port, am_port, hook_port = (free_port() for _ in range(5))
    out = tmp_path / "monitoring"
    loopml("deploy", "render", "monitoring", "--out", str(out), "--serve", f"127.0.0.1:{serve_port}",
           "--gpu-exporter", f"127.0.0.1:{gpu_port}", "--alertmanager", f"127.0.0.1:{am_port}",
           "--webhook", f"http://127.0.0.1:{hook_port}/alerts", "--interval", "1s", "--alert-for", "1s",
           "--drift-for", "2s", cwd=project)  # fmt: skip
    (out / "loopml-alert-token").write_text(ALERT_TOKEN)
    live = {**LOOP, "LOOPML_MONITOR__EVERY_S": "0.3", "LOOPML_MONITOR__MIN_ROWS": "50",
            "LOOPML_SERVE__REGISTRY_POLL_S": "0"}  # fmt: skip
    watcher_env = {**FAST, **live, "LOOPML_LOOP__SERVER": f"http://127.0.0.1:{serve_port}",
                   "LOOPML_LOOP__ALERTS": "true", "LOOPML_LOOP__ALERTS_LISTEN": f"127.0.0.1:{hook_port}",
                   "LOOPML_ALERT_TOKEN": ALERT_TOKEN, "LOOPML_LOOP__ON_DRIFT": "false",
                   "LOOPML_LOOP__MAX_METRIC_DROP": "null"}  # fmt: skip
    procs = [
        subprocess.Popen([str(BIN / "loopml"), "serve", "--port", str(serve_port)], cwd=project, env=tool_env(live),
                         stdout=(tmp_path / "serve.log").open("w"), stderr=subprocess.STDOUT),
        subprocess.Popen([str(BIN / "loopml"), "gpu", "export", "--port", str(gpu_port)], cwd=tmp_path,
                         env=tool_env(fakes.env(fakes.h100_nvml(tmp_path))), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL),
        subprocess.Popen(["prometheus", "--config.file=prometheus.yml", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{prom_port}"], cwd=out, stdout=subprocess.DEVNULL,
                         stderr=(tmp_path / "prometheus.log").open("w")),
        subprocess.Popen(["prometheus-alertmanager", "--config.file=alertmanager.yml",
                          f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
                          "--cluster.listen-address="], cwd=out,
                         stdout=subprocess.DEVNULL, stderr=(tmp_path / "alertmanager.log").open("w")),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{serve_port}"
    traffic = None
    try:
        wait_ready(url, procs[0])
        watcher = subprocess.Popen([str(BIN / "loopml"), "monitor", "--watch", "--once", "--json"], cwd=project,
                                   env=tool_env(watcher_env), stdout=subprocess.PIPE,
                                   stderr=(tmp_path / "watcher.log").open("w"), text=True)  # fmt: skip
        procs.append(watcher)
        traffic = Traffic(url, project)  # negative images with their labels: drift, and feedback to learn from
        traffic.keep_sending()
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and "LoopmlDatasetDrift" not in firing(prom_port):
                assert client.post("/invocations", json={"instances": "not rows"}).status_code == 400
                time.sleep(0.5)
            assert "LoopmlDatasetDrift" in firing(prom_port), (tmp_path / "prometheus.log").read_text()[-2000:]
            assert "LoopmlFeatureDrift" in firing(prom_port)
            empty = []
            for _ in range(5):  # every panel of every dashboard shows data from this scrape
                client.post("/invocations", json={"instances": "not rows"})
                empty = [(uid, p.title) for uid, (_, panels) in DASHBOARDS.items() for p in panels
                         if not prometheus_query(prom_port, p.expr)]  # fmt: skip
                if not empty:
                    break
                time.sleep(2)
            assert not empty, empty
        stdout, _ = watcher.communicate(timeout=600)
        said = (tmp_path / "watcher.log").read_text()
        assert watcher.returncode == 0, said[-3000:]
        decision = json.loads(stdout)
        assert decision["decision"] == "promoted", (decision["reason"], said[-3000:])
        assert decision["version"] == "2"
        evidence = decision["evidence"]
        assert evidence["alert"]["name"] == "LoopmlDatasetDrift" and evidence["alert"]["labels"]["model"] == "digits"
        assert evidence["trigger"].startswith("alert LoopmlDatasetDrift for digits v1, firing since")
        assert "alert received: alert LoopmlDatasetDrift for digits v1" in said
        assert httpx.get(url + "/v2/models/digits", timeout=10).json()["versions"] == ["2"]
        return decision
    finally:
        if traffic is not None:
            traffic.stop()
        procs[0].send_signal(signal.SIGINT)
        for proc in procs[1:]:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            proc.wait(timeout=60)
