"""The text template, measured: LoRA against full fine-tuning, and serving against a hand-written endpoint.

1. Fine-tuning all-MiniLM-L6-v2 (22.7M weights) on the template's 2,000 support messages with
   `loopml run`, twice on the same data and epochs: LoRA r=8 on query/value (lr 1e-3, the template's)
   and full fine-tuning (`model.lora: null`, lr 5e-5, the usual rate for a whole BERT). Printed side by
   side: trainable weights, Adam state, peak RSS of the training process, seconds per epoch,
   test accuracy.
2. Serving the LoRA model (merged) to 1-sentence requests at concurrency 16 (wrk): `loopml serve`
   against a hand-written FastAPI + transformers endpoint that loads the same package folder (the
   encoder with transformers, the head with torch) and answers the same JSON body, under uvicorn.
   Target: loopml >= 2x.

   The champion `loopml optimize` registered (ONNX Runtime int8 when it passes) is served as well.

Run: `python bench/text.py [--seconds 10] [--epochs 3] [--skip-serving] [--serve-only PROJECT]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from own_data import loopml  # noqa: E402
from serve_vs_peers import free_port, server, wrk  # noqa: E402

BIN = Path(sys.executable).parent
SENTENCE = "Hello, my parcel never arrived although the invoice was fine. Please help."

FASTAPI_APP = '''
"""A hand-written endpoint, as one would write it: FastAPI + transformers on the same merged model."""
import json, os
from pathlib import Path

import torch
from fastapi import FastAPI
from transformers import AutoModel, AutoTokenizer

package = Path(os.environ["PACKAGE"])
meta = json.loads((package / "loopml-model.json").read_text())
tokenizer = AutoTokenizer.from_pretrained(package / "encoder")
encoder = AutoModel.from_pretrained(package / "encoder").eval()
head = torch.nn.Linear(encoder.config.hidden_size, len(meta["classes"]))
head.load_state_dict(torch.load(package / "head.pt"))
classes = meta["classes"]
app = FastAPI()


@app.get("/ready")
def ready():
    return {"ready": True}


@app.post("/invocations")
def invocations(body: dict):
    texts = body["inputs"]["text"]
    batch = tokenizer(texts, padding=True, truncation=True, max_length=meta["text"]["max_length"],
                      return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        logits = head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9))
    return {"predictions": [classes[i] for i in logits.argmax(1).tolist()]}
'''


def project(root: Path, name: str, edit, epochs: int) -> Path:
    folder = root / name
    loopml("init", str(folder), "--template", "text", cwd=root)
    config = yaml.safe_load((folder / "loopml.yaml").read_text())
    config["train"].update(epochs=epochs, patience=0)  # the same number of epochs for both
    edit(config)
    (folder / "loopml.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    loopml("run", cwd=folder)
    return folder


def lora(config: dict) -> None:
    pass  # the template as it is


def full(config: dict) -> None:
    config["model"]["lora"] = None
    config["train"]["lr"] = 5e-5


def figures(folder: Path) -> dict:
    from loopml.project import Project
    from loopml.registry import Registry

    train = json.loads((folder / "outputs/train.json").read_text())
    evaluated = json.loads((folder / "outputs/evaluate.json").read_text())
    metrics = Registry.of(Project(folder)).client.get_run(train["run_id"]).data.metrics
    epoch_s = train["history"]
    return {"trainable": int(metrics["trainable_params"]), "total": int(metrics["total_params"]),
            "adam_mb": metrics["trainable_params"] * 8 / 1e6,  # two fp32 moments per trained weight
            "peak_rss_mb": metrics["peak_rss_mb"], "epochs": len(epoch_s),
            "s_per_epoch": train["seconds"] / max(len(epoch_s), 1), "samples_per_s": train["samples_per_s"],
            "accuracy": evaluated["metrics"]["accuracy"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--serve-only", type=Path, help="serve this trained text project only (no training)")
    args = parser.parse_args()
    if args.serve_only:
        with tempfile.TemporaryDirectory() as tmp:
            served(args.serve_only.resolve(), Path(tmp), args.seconds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = {"LoRA r=8 (q,v)": project(root, "lora", lora, args.epochs),
                "full fine-tuning": project(root, "full", full, args.epochs)}  # fmt: skip
        found = {label: figures(folder) for label, folder in runs.items()}
        print(f"\n1. all-MiniLM-L6-v2 on the text template (2,000 messages), {args.epochs} epochs, CPU")
        print(f"{'':18s} {'trainable':>12s} {'share':>7s} {'Adam MB':>8s} {'peak RSS MB':>12s} {'s/epoch':>8s} "
              f"{'samples/s':>10s} {'accuracy':>9s}")  # fmt: skip
        for label, f in found.items():
            print(f"{label:18s} {f['trainable']:12,d} {f['trainable'] / f['total']:7.2%} {f['adam_mb']:8.1f} "
                  f"{f['peak_rss_mb']:12.0f} {f['s_per_epoch']:8.1f} {f['samples_per_s']:10.1f} "
                  f"{f['accuracy']:9.4f}")  # fmt: skip
        a, b = found.values()
        print(f"LoRA / full: {a['trainable'] / b['trainable']:.4f} of the trainable weights, "
              f"{b['s_per_epoch'] / a['s_per_epoch']:.2f}x faster per epoch, "
              f"{b['peak_rss_mb'] - a['peak_rss_mb']:.0f} MB less peak RSS, "
              f"accuracy {100 * (a['accuracy'] - b['accuracy']):+.2f} points")  # fmt: skip
        if not args.skip_serving:
            served(runs["LoRA r=8 (q,v)"], root, args.seconds)


def served(folder: Path, root: Path, seconds: int) -> None:
    body = json.dumps({"inputs": {"text": [SENTENCE]}}).encode()
    results = {}
    name = yaml.safe_load((folder / "loopml.yaml").read_text())["name"]
    # the merged model as trained (torch), the package folder the peer loads too; then the champion
    # `loopml optimize` registered (an ONNX Runtime variant when one passed its gates)
    for label, model in (("loopml serve (same model)", str(folder / "outputs/model")),
                         ("loopml serve (champion)", None)):  # fmt: skip
        port = free_port()
        cmd = [str(BIN / "loopml"), "serve", "--port", str(port), "--no-access-log"]
        cmd += ["--model", model, "--name", name] if model else []
        with server(cmd, port, "/v2/health/ready", cwd=folder) as proc:
            found = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/v2/models/{name}"], capture_output=True,
                                   text=True).stdout  # fmt: skip
            platform = json.loads(found or "{}").get("platform")
            results[label] = wrk(f"http://127.0.0.1:{port}/invocations", body, "application/json", 16, seconds, proc)
            results[label]["platform"] = platform or "?"
    app = root / "handwritten.py"
    app.write_text(FASTAPI_APP)
    port = free_port()
    cmd = [str(BIN / "uvicorn"), "handwritten:app", "--port", str(port), "--log-level", "warning"]
    env = {"PACKAGE": str(folder / "outputs/model")}
    with server(cmd, port, "/ready", env=env, cwd=root) as proc:
        results["FastAPI + transformers"] = wrk(f"http://127.0.0.1:{port}/invocations", body, "application/json", 16,
                                                seconds, proc)  # fmt: skip
    print(f"\n2. served, 1-sentence requests at c=16 for {seconds} s (the same merged model)")
    for label, r in results.items():
        print(f"{label:28s} {r.get('platform', 'torch'):18s} {r['rps']:8,.0f} req/s  p50 {r['p50_ms']:.1f} ms  "
              f"p99 {r['p99_ms']:.1f} ms  CPU {r['cpu']:.2f} cores  non-2xx {r['non_2xx']}")  # fmt: skip
    same, champion, peer = results.values()
    if any(r["non_2xx"] for r in results.values()):
        print("some requests failed: the ratios do not count")
    print(f"loopml / hand-written, the same merged model: {same['rps'] / peer['rps']:.2f}x (target >= 2x); the "
          f"registered champion: {champion['rps'] / peer['rps']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
