"""`loopml serve` vs `mlflow models serve` on the same registered model, same load generator.

The model: scikit-learn's LogisticRegression on the 8x8 digits, trained and registered by
`loopml run`. mlflow serves it twice: the registered loopml model (a pyfunc), and the same
fitted estimator logged with MLflow's native sklearn flavor (what MLflow users deploy); the
ratios use the faster of the two. Every server runs one worker on this machine; `wrk` (Debian package) drives
both with the same 1-row MLflow `dataframe_split` request. Printed: requests/s, p50 and p99
for each server and concurrency, and the ratios. Targets (issue 3): >= 10x mlflow's
throughput and <= 1/10 of its p99 at concurrency 16; with batching, >= 3x the throughput of
max_batch_size=1 at concurrency 64.

Run: `python bench/serve_vs_mlflow.py [--seconds 10]` (needs `wrk`: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_project(root: Path, env: dict) -> Path:
    project = root / "bench"
    subprocess.run(
        [BIN / "loopml", "init", str(project), "--template", "digits"], check=True, env=env, capture_output=True
    )
    config = yaml.safe_load((project / "loopml.yaml").read_text())
    config["model"] = {"type": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression",
                       "params": {"max_iter": 2000}}  # fmt: skip
    config["gates"] = {"accuracy": ">= 0.9"}
    (project / "loopml.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run([BIN / "loopml", "run"], cwd=project, check=True, env=env, capture_output=True)
    return project


def log_native_sklearn(project: Path, tracking_uri: str, example) -> str:
    """The trained estimator logged the way MLflow users do: mlflow.sklearn.log_model."""
    import joblib
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    estimator = joblib.load(project / "outputs" / "model" / "estimator.joblib")
    # artifacts inside the temporary project, not ./mlruns wherever the benchmark was started
    mlflow.create_experiment("bench-native", artifact_location=(project / ".loopml" / "artifacts").as_uri())
    mlflow.set_experiment("bench-native")
    with mlflow.start_run():
        mlflow.sklearn.log_model(estimator, name="model", input_example=example, registered_model_name="bench-sklearn")
    return "models:/bench-sklearn/1"


@contextmanager
def server(cmd: list[str], port: int, cwd: Path, env: dict, ready_path: str):
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} did not start")
            time.sleep(0.3)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wrk(url: str, body_file: Path, connections: int, seconds: int) -> dict:
    script = body_file.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.body = io.open("{body_file}"):read("*a")\n'
    )
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": _ms(percentiles["50"]), "p99_ms": _ms(percentiles["99"]),
            "non_2xx": int(errors[1]) if errors else 0}  # fmt: skip


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("training and registering LogisticRegression on digits ...", flush=True)
        project = make_project(root, env)
        import pandas as pd

        row = pd.read_parquet(project / "data" / "raw" / "digits.parquet").drop(columns="label").head(1)
        body = root / "row.json"
        body.write_text(json.dumps({"dataframe_split": row.to_dict(orient="split", index=False)}))
        tracking = f"sqlite:///{project / '.loopml' / 'mlflow.db'}"
        mlflow_env = {**env, "MLFLOW_TRACKING_URI": tracking}
        native = log_native_sklearn(project, tracking, row)
        results = {}
        for label, uri in (("mlflow (loopml model)", "models:/bench@champion"), ("mlflow (sklearn flavor)", native)):
            port = free_port()
            mlflow_cmd = [str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local",
                          "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
            with server(mlflow_cmd, port, project, mlflow_env, "/ping"):
                for c in (16, 64):
                    results[(label, c)] = wrk(f"http://127.0.0.1:{port}/invocations", body, c, args.seconds)
        for batch in (64, 1):
            port = free_port()
            cmd = [str(BIN / "loopml"), "serve", "--port", str(port), "--max-batch-size", str(batch)]
            with server(cmd, port, project, env, "/v2/health/ready"):
                for c in (16, 64):
                    results[(f"loopml batch={batch}", c)] = wrk(f"http://127.0.0.1:{port}/invocations", body, c,
                                                                 args.seconds)  # fmt: skip
    print(
        f"\n1-row MLflow requests, {args.seconds}s per run, wrk -t2 on {os.cpu_count()} cores (shared with the server)"
    )
    print(f"{'server':24s} {'conc':>5s} {'req/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} {'non-2xx':>8s}")
    for (name, c), r in results.items():
        print(f"{name:24s} {c:5d} {r['rps']:10,.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['non_2xx']:8d}")
    base = max((results[(k, 16)] for k in ("mlflow (loopml model)", "mlflow (sklearn flavor)")), key=lambda r: r["rps"])
    ours = results[("loopml batch=64", 16)]
    print(f"\nconcurrency 16: throughput {ours['rps'] / base['rps']:.1f}x the faster mlflow (target >= 10x), "
          f"p99 {ours['p99_ms'] / base['p99_ms']:.3f} of mlflow's (target <= 0.1)")  # fmt: skip
    batched, single = results[("loopml batch=64", 64)], results[("loopml batch=1", 64)]
    print(f"concurrency 64: batching gives {batched['rps'] / single['rps']:.2f}x the throughput of "
          f"max_batch_size=1 (target >= 3x)")  # fmt: skip


if __name__ == "__main__":
    main()
