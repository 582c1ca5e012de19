"""`loopml optimize`, measured: the chosen variant against the model as trained, on the templates.

1. digits (the template's CNN, 3 conv layers): every torch variant (onnx, onnx_int8,
   onnx_int8_static, torch_int8, prune, svd) through `loopml run`; the chosen one against torch eager
   fp32 at batch 1 and batch 64, one thread. Target: >= 3x at batch 1, <= 0.5 accuracy points lost.
2. tabular with a 200-tree RandomForest: skl2onnx + ONNX Runtime against scikit-learn, one row per
   call, one thread. Target: >= 100x.
3. served: `loopml serve` req/s of 1-row V2 requests at concurrency 16 (wrk), the RandomForest as
   trained (its package folder) against the registered ONNX variant. Target: >= 5x.

Every figure comes from the same run on this machine (outputs/optimize.json; wrk for serving).
Run: `python bench/optimize.py [--seconds 10] [--skip-serving]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from own_data import loopml  # noqa: E402
from serve_vs_peers import free_port, server, v2_body, wrk  # noqa: E402

BIN = Path(sys.executable).parent


def project(root: Path, template: str, edit) -> tuple[Path, dict]:
    folder = root / template
    loopml("init", str(folder), "--template", template, cwd=root)
    config = yaml.safe_load((folder / "loopml.yaml").read_text())
    edit(config)
    (folder / "loopml.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    loopml("run", cwd=folder)
    return folder, json.loads((folder / "outputs" / "optimize.json").read_text())


def digits(config: dict) -> None:
    config["optimize"].update(variants=["onnx", "onnx_int8", "onnx_int8_static", "torch_int8", "prune", "svd"],
                              prune_ratios=[0.5], finetune_epochs=10)  # fmt: skip
    config["serve"] = {"max_batch_size": 64}  # the batch optimize times besides one row


def forest(config: dict) -> None:
    config["model"] = {"type": "sklearn", "estimator": "sklearn.ensemble.RandomForestClassifier",
                       "params": {"n_estimators": 200, "random_state": 0}, "standardize": False}  # fmt: skip
    config["gates"].pop("roc_auc", None)


def table(result: dict) -> None:
    print(f"{'variant':18s} {'status':9s} {'accuracy':>9s} {'agrees':>8s} {'p95 ms 1 row':>13s} "
          f"{'p95 ms batch':>13s} {'MB':>6s}  why")  # fmt: skip
    for v in result["variants"]:
        m = v["metrics"]
        if not m:
            print(f"{v['name']:18s} {v['status']:9s} {'':>60s}  {v['reason']}")
            continue
        print(f"{v['name']:18s} {v['status']:9s} {m['accuracy']:9.4f} {v['agreement']:8.2%} {m['row_p95_ms']:13.4f} "
              f"{m['batch_p95_ms']:13.3f} {m['size_mb']:6.2f}  {v['reason']}")  # fmt: skip


def figures(result: dict) -> tuple[dict, dict]:
    by_name = {v["name"]: v for v in result["variants"]}
    return by_name["base"], by_name[result["chosen"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--skip-serving", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _, cnn = project(root, "digits", digits)
        print(f"\n1. digits CNN, {cnn['threads']} thread, CPU flags {', '.join(cnn['cpu_flags'])}")
        table(cnn)
        base, chosen = figures(cnn)
        one = base["metrics"]["row_p95_ms"] / chosen["metrics"]["row_p95_ms"]
        many = base["metrics"]["batch_p95_ms"] / chosen["metrics"]["batch_p95_ms"]
        lost = 100 * (base["metrics"]["accuracy"] - chosen["metrics"]["accuracy"])
        print(f"chosen {chosen['name']} vs torch eager fp32: {one:.2f}x at batch 1 (target >= 3x), {many:.2f}x at "
              f"batch {cnn['batch_size']}, accuracy {lost:+.2f} points lost (target <= 0.5)")  # fmt: skip

        folder, rf = project(root, "tabular", forest)
        print(f"\n2. tabular, RandomForest of 200 trees, {rf['threads']} thread")
        table(rf)
        base, chosen = figures(rf)
        p95 = base["metrics"]["row_p95_ms"] / chosen["metrics"]["row_p95_ms"]
        p50 = base["metrics"]["row_p50_ms"] / chosen["metrics"]["row_p50_ms"]
        print(f"chosen {chosen['name']} vs scikit-learn, one row per call: {p95:.1f}x at p95, {p50:.1f}x at p50 "
              "(target >= 100x)")  # fmt: skip
        if not args.skip_serving:
            served(folder, args.seconds)


def served(folder: Path, seconds: int) -> None:
    """req/s at c=16 of the RandomForest as trained (its package folder) and of the registered variant."""
    frame = pd.read_parquet(folder / "data" / "raw" / "breast_cancer.parquet").drop(columns="diagnosis")
    body = v2_body(frame.head(1).to_numpy(np.float64))
    results = {}
    for label, model in (("as trained (scikit-learn)", str(folder / "outputs" / "model")),
                         ("optimized (registered champion)", None)):  # fmt: skip
        port = free_port()
        cmd = [str(BIN / "loopml"), "serve", "--port", str(port), "--no-access-log"] + (
            ["--model", model, "--name", "tabular"] if model else [])  # fmt: skip
        name = "tabular"
        with server(cmd, port, "/v2/health/ready", cwd=folder) as proc:
            metadata = json.loads(subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/v2/models/{name}"],
                                                 capture_output=True, text=True).stdout or "{}")  # fmt: skip
            results[label] = wrk(f"http://127.0.0.1:{port}/v2/models/{name}/infer", body, "application/json", 16,
                                 seconds, proc)  # fmt: skip
            results[label]["platform"] = metadata.get("platform", "?")
    print(f"\n3. served, 1-row V2 requests at c=16 for {seconds} s")
    for label, r in results.items():
        print(f"{label:32s} {r['platform']:18s} {r['rps']:9,.0f} req/s  p50 {r['p50_ms']:.2f} ms  "
              f"p99 {r['p99_ms']:.2f} ms  non-2xx {r['non_2xx']}")  # fmt: skip
    before, after = results.values()
    if before["non_2xx"] or after["non_2xx"]:
        print("some requests failed: the ratio does not count")
    print(f"optimized / as trained: {after['rps'] / before['rps']:.2f}x (target >= 5x)")


if __name__ == "__main__":
    main()
