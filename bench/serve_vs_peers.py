"""`loopml serve` against its peers, each alone, one worker, the same fitted estimator, under `wrk`.

The servers: loopml (V2 and MLflow protocols), a raw-ASGI echo app (the ceiling: no model, no
parsing), a hand-written FastAPI endpoint, MLServer with its scikit-learn runtime (its own venv),
Triton (the real `tritonserver` inside the nvidia-pytriton wheel, on CPU, Python backend; its venv
built from Debian's /usr/bin/python3), and `mlflow models serve`. The model: scikit-learn's
LogisticRegression on the 8x8 digits, fitted once and handed to every server.

Printed per server: req/s, p50, p99 and the server's CPU (cores busy) at concurrency 16 and 64 with
1-row requests, and rows/s with 1,000-row requests at concurrency 4; then the ratios. Targets
(issue 10): loopml >= 3x the best peer and >= 1/3 of the ceiling at c=16 and c=64; 1,000-row
requests at >= MLServer's rows/s; and (issue 3) dynamic batching >= 3x loopml without it at c=64.

Run: `python bench/serve_vs_peers.py [--seconds 10] [--skip triton,mlserver,mlflow]` (needs `wrk`:
apt-get install wrk). The peers' venvs are built once under bench/out/.
"""

from __future__ import annotations

import argparse
import contextlib
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
from pathlib import Path

import numpy as np
import psutil

BIN = Path(sys.executable).parent
OUT = Path(__file__).resolve().parent / "out"
SKLEARN = __import__("sklearn").__version__
UNBATCHED = "loopml /invocations, max_batch_size 1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fit(root: Path) -> tuple[object, np.ndarray]:
    """The estimator every server gets, and the digits it is asked about."""
    import joblib
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=2000).fit(x, y)
    joblib.dump(model, root / "model.joblib")
    return model, x


def loopml_package(root: Path, model) -> Path:
    from loopml_runtime import Input, save_package

    folder = root / "digits" / "model"  # served as "digits": a package folder is named after its parent
    inputs = [Input(f"pixel_{i}", "number", "float64", "numeric") for i in range(64)]
    save_package(folder, {"kind": "sklearn", "task": "classification", "inputs": inputs, "target": "label",
                          "classes": list(range(10)), "estimator": "LogisticRegression", "accepts_missing": False},
                 model=model)  # fmt: skip
    return folder


@contextlib.contextmanager
def server(cmd: list[str], port: int, ready: str, env: dict | None = None, cwd: Path | None = None, wait: float = 300):
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server, closed below
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{cmd[0]} did not start:\n{log.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.3)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def cpu_seconds(proc: subprocess.Popen) -> float:
    try:
        root = psutil.Process(proc.pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system
        return total
    except psutil.Error:
        return 0.0


def wrk(url: str, body: bytes, content_type: str, connections: int, seconds: int, proc) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        body_file, script = Path(tmp) / "body", Path(tmp) / "post.lua"
        body_file.write_bytes(body)
        script.write_text('wrk.method = "POST"\n'
                          f'wrk.headers["Content-Type"] = "{content_type}"\n'
                          f'wrk.body = io.open("{body_file}", "rb"):read("*a")\n')  # fmt: skip
        before = cpu_seconds(proc)
        started = time.monotonic()
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        cores = (cpu_seconds(proc) - before) / (time.monotonic() - started)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": _ms(percentiles["50"]), "p99_ms": _ms(percentiles["99"]), "cpu": cores,
            "non_2xx": int(errors[1]) if errors else 0}  # fmt: skip


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def v2_body(rows: np.ndarray, name: str = "input") -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": list(rows.shape), "datatype": "FP64",
                                   "data": rows.ravel().tolist()}]}).encode()  # fmt: skip


def venv(name: str, python: str, packages: list[str]) -> Path:
    """A venv under bench/out/, made once (the peers pin their own dependencies)."""
    folder = OUT / name
    marker = folder / ".installed"
    if not marker.exists():
        print(f"building {folder} ({', '.join(packages)}) ...", flush=True)
        subprocess.run([python, "-m", "venv", str(folder)], check=True)
        subprocess.run([str(folder / "bin" / "pip"), "install", "-q", *packages], check=True,
                       stderr=subprocess.DEVNULL)  # fmt: skip
        marker.touch()
    return folder / "bin"


ECHO = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"predictions":[0]}'})
"""

FASTAPI = """
import joblib, numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

model = joblib.load("MODEL")
app = FastAPI()

class Rows(BaseModel):
    instances: list[list[float]]

@app.post("/predict")
def predict(rows: Rows):
    return {"predictions": model.predict(np.asarray(rows.instances)).tolist()}

@app.get("/ready")
def ready():
    return {"ready": True}
"""

TRITON = """
import sys, joblib, numpy as np
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

model = joblib.load(sys.argv[1])

@batch
def infer(input):
    return {"predict": model.predict(input).astype(np.int64).reshape(-1, 1)}

config = TritonConfig(http_address="127.0.0.1", http_port=int(sys.argv[2]), grpc_port=int(sys.argv[3]),
                      metrics_port=int(sys.argv[4]))
with Triton(config=config) as triton:
    triton.bind(model_name="digits", infer_func=infer, inputs=[Tensor(name="input", dtype=np.float64, shape=(64,))],
                outputs=[Tensor(name="predict", dtype=np.int64, shape=(1,))],
                config=ModelConfig(max_batch_size=1024))
    triton.serve()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--skip", default="", help="comma-separated: loopml, echo, fastapi, mlserver, triton, mlflow")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    OUT.mkdir(exist_ok=True)
    results: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, x = fit(root)
        one, thousand = x[:1], np.resize(x, (1000, 64))
        bodies = {"v2": (v2_body(one), v2_body(thousand)),
                  "mlflow": tuple(json.dumps({"instances": r.tolist()}).encode() for r in (one, thousand))}  # fmt: skip

        def measure(label: str, url: str, body1: bytes, body1000: bytes | None, proc, content_type="application/json"):
            probe = urllib.request.Request(url, data=body1, headers={"content-type": content_type})
            with urllib.request.urlopen(probe, timeout=30) as answer:  # a wrong URL or body fails here, not in wrk
                answer.read()
            for c in (16, 64):
                results[(label, f"c{c}")] = wrk(url, body1, content_type, c, args.seconds, proc)
                r = results[(label, f"c{c}")]
                print(f"  {label} c={c}: {r['rps']:,.0f} req/s, {r['non_2xx']} non-2xx", flush=True)
            if body1000 is not None:
                results[(label, "1000 rows c4")] = wrk(url, body1000, content_type, 4, args.seconds, proc)

        def loopml_server() -> None:
            package = loopml_package(root, model)
            port = free_port()
            cmd = [str(BIN / "loopml"), "serve", "--model", str(package), "--port", str(port), "--no-access-log"]
            with server(cmd, port, "/v2/health/ready", cwd=root) as proc:
                measure("loopml V2", f"http://127.0.0.1:{port}/v2/models/digits/infer", *bodies["v2"], proc)
                measure("loopml /invocations", f"http://127.0.0.1:{port}/invocations", *bodies["mlflow"], proc)
            port = free_port()  # the same server without batching: what dynamic batching buys
            cmd = [*cmd[:5], str(port), *cmd[6:], "--max-batch-size", "1"]
            with server(cmd, port, "/v2/health/ready", cwd=root) as proc:
                results[(UNBATCHED, "c64")] = wrk(f"http://127.0.0.1:{port}/invocations", bodies["mlflow"][0],
                                                  "application/json", 64, args.seconds, proc)  # fmt: skip

        def echo() -> None:
            (root / "echo.py").write_text(ECHO)
            port = free_port()
            cmd = [str(BIN / "uvicorn"), "echo:app", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                   "--log-level", "warning", "--no-access-log"]  # fmt: skip
            with server(cmd, port, "/", cwd=root) as proc:
                measure("raw ASGI echo (ceiling)", f"http://127.0.0.1:{port}/", bodies["mlflow"][0], None, proc)

        def fastapi() -> None:
            (root / "fastapi_app.py").write_text(FASTAPI.replace("MODEL", str(root / "model.joblib")))
            port = free_port()
            cmd = [str(BIN / "uvicorn"), "fastapi_app:app", "--port", str(port), "--loop", "uvloop", "--http",
                   "httptools", "--log-level", "warning", "--no-access-log"]  # fmt: skip
            with server(cmd, port, "/ready", cwd=root) as proc:
                measure("FastAPI endpoint", f"http://127.0.0.1:{port}/predict", *bodies["mlflow"], proc)

        def mlserver() -> None:
            bin_dir = venv(
                "mlserver-venv", sys.executable, ["mlserver", "mlserver-sklearn", f"scikit-learn=={SKLEARN}"]
            )
            models = root / "mlserver" / "digits"
            models.mkdir(parents=True)
            shutil.copy(root / "model.joblib", models / "model.joblib")
            settings = {"name": "digits", "implementation": "mlserver_sklearn.SKLearnModel",
                        "parameters": {"uri": "./model.joblib"}}  # fmt: skip
            (models / "model-settings.json").write_text(json.dumps(settings))
            port = free_port()
            (root / "mlserver" / "settings.json").write_text(json.dumps({"http_port": port, "grpc_port": free_port(),
                                                                          "metrics_port": free_port(),
                                                                          "parallel_workers": 0}))  # fmt: skip
            with server([str(bin_dir / "mlserver"), "start", str(root / "mlserver")], port, "/v2/health/ready") as proc:
                measure("MLServer (sklearn)", f"http://127.0.0.1:{port}/v2/models/digits/infer", *bodies["v2"], proc)

        def triton() -> None:
            bin_dir = venv("triton-venv", "/usr/bin/python3", ["nvidia-pytriton", f"scikit-learn=={SKLEARN}"])
            (root / "triton_app.py").write_text(TRITON)
            port = free_port()
            cmd = [str(bin_dir / "python"), str(root / "triton_app.py"), str(root / "model.joblib"), str(port),
                   str(free_port()), str(free_port())]  # fmt: skip
            # Triton answers /v2/health/ready before pytriton has loaded the model: wait for the model itself
            with server(cmd, port, "/v2/models/digits/ready") as proc:
                measure("Triton (pytriton, CPU)", f"http://127.0.0.1:{port}/v2/models/digits/infer", *bodies["v2"],
                        proc)  # fmt: skip

        def mlflow_serve() -> None:
            import mlflow.sklearn

            mlflow.sklearn.save_model(model, str(root / "mlflow-model"))
            port = free_port()
            cmd = [str(BIN / "mlflow"), "models", "serve", "-m", str(root / "mlflow-model"), "--env-manager", "local",
                   "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
            with server(cmd, port, "/ping", env={"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}) as proc:
                measure("mlflow models serve", f"http://127.0.0.1:{port}/invocations", *bodies["mlflow"], proc)

        runs = {"loopml": loopml_server, "echo": echo, "fastapi": fastapi, "mlserver": mlserver, "triton": triton,
                "mlflow": mlflow_serve}  # fmt: skip
        for name, run in runs.items():
            if name in skip:
                continue
            try:
                run()
            except Exception as exc:  # one peer failing to start must not lose the others' figures
                print(f"  {name} failed: {str(exc)[:600]}", flush=True)

    report(results, args.seconds)


def report(results: dict, seconds: int) -> None:
    print(f"\n{seconds}s per run, wrk -t1, one server at a time, {os.cpu_count()} cores shared with wrk")
    print(f"{'server':28s} {'load':>14s} {'req/s':>9s} {'rows/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} {'cpu':>5s} "
          f"{'non-2xx':>8s}")  # fmt: skip
    for (name, load), r in results.items():
        rows = r["rps"] * (1000 if load.startswith("1000") else 1)
        print(f"{name:28s} {load:>14s} {r['rps']:9,.0f} {rows:10,.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
              f"{r['cpu']:5.2f} {r['non_2xx']:8d}")  # fmt: skip
    ours = ("loopml V2", "loopml /invocations")
    peers = [n for n, _ in results if n not in (*ours, UNBATCHED) and not n.startswith("raw ASGI")]
    print()
    for load in ("c16", "c64"):
        if not any((n, load) in results for n in ours):
            continue
        best_ours = max(results[(n, load)]["rps"] for n in ours if (n, load) in results)
        best_peer_name = max(dict.fromkeys(peers), key=lambda n: results[(n, load)]["rps"], default=None)
        if best_peer_name:
            ratio = best_ours / results[(best_peer_name, load)]["rps"]
            print(
                f"{load}: loopml {best_ours:,.0f} req/s = {ratio:.2f}x the best peer ({best_peer_name}) (target >= 3x)"
            )
        ceiling = results.get(("raw ASGI echo (ceiling)", load))
        if ceiling:
            print(f"{load}: loopml = {best_ours / ceiling['rps']:.2f} of the raw-ASGI ceiling (target >= 0.33)")
    if (UNBATCHED, "c64") in results:
        batched = results[("loopml /invocations", "c64")]["rps"]
        print(f"c64: dynamic batching {batched:,.0f} req/s = {batched / results[(UNBATCHED, 'c64')]['rps']:.2f}x "
              "max_batch_size 1 (target >= 3x, issue 3)")  # fmt: skip
    if ("MLServer (sklearn)", "1000 rows c4") in results and ("loopml V2", "1000 rows c4") in results:
        mine = max(results[(n, "1000 rows c4")]["rps"] for n in ours) * 1000
        theirs = results[("MLServer (sklearn)", "1000 rows c4")]["rps"] * 1000
        print(
            f"1000-row requests: loopml {mine:,.0f} rows/s = {mine / theirs:.2f}x MLServer's {theirs:,.0f} "
            "(target >= 1x)"
        )


if __name__ == "__main__":
    main()
