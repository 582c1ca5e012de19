"""Data larger than memory: peak memory of `loopml train` on 1x and 10x the rows, streamed and not.

A generated table (32 float features, 4 classes that depend on them non-linearly, Parquet row
groups of 50,000 rows) trains an MLP through the real train stage, in a fresh process per run:
with `data.streaming: true` (row-group IterableDataset) and with the table in memory. Each run
prints the process's peak RSS and the training loop's samples/s. Target (issue 16): streamed peak
memory flat (<= 1.2x from 1x to 10x the rows) at unchanged samples/s (10x >= 0.9x of 1x).

The peer is the loop people write for a big Parquet file: pyarrow's `iter_batches` into the same
MLP, same batch, AdamW, no split, no validation, nothing fitted: loopml streamed / that loop is
printed as the cost of loopml's split, preprocessing and early stopping.

Run: `python bench/train_memory.py [--rows 200000] [--epochs 2]`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FEATURES = 32
ROW_GROUP = 50_000
BATCH = 256
MODEL = """
import torch


def build(n_features, n_outputs, hidden=128):
    return torch.nn.Sequential(torch.nn.Linear(n_features, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_outputs))
"""


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    """`rows` rows, written one row group at a time (the generator holds no more than one either)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(1).normal(size=(FEATURES, 4))
    writer = None
    for start in range(0, rows, ROW_GROUP):
        n = min(ROW_GROUP, rows - start)
        X = rng.normal(size=(n, FEATURES)).astype(np.float32)
        label = np.argmax(np.tanh(X @ mixing) + rng.normal(scale=0.3, size=(n, 4)), axis=1)
        table = pa.table({**{f"x{i}": X[:, i] for i in range(FEATURES)}, "label": label.astype(np.int64)})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP)
    writer.close()


def make_project(root: Path, data: Path, streaming: bool, epochs: int) -> Path:
    root.mkdir(parents=True)
    (root / "model.py").write_text(MODEL)
    config = {
        "name": "memory", "task": "classification",
        "data": {"path": str(data), "target": "label", "streaming": streaming},
        "model": {"type": "torch", "factory": "model.py:build", "params": {"hidden": 128}},
        "train": {"epochs": epochs, "batch_size": BATCH, "patience": 0, "device": "cpu", "lr": 0.003},
        "gates": {"accuracy": ">= 0.5"},
    }  # fmt: skip
    (root / "loopml.yaml").write_text(json.dumps(config))  # JSON is YAML
    return root


def child_train(root: str) -> None:
    """One training in this process; print its figures and this process's peak RSS."""
    from loopml.project import Project
    from loopml.train.stage import train

    started = time.perf_counter()
    result = train(Project(Path(root)), show_progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"peak_rss_mb": round(peak, 1), "samples_per_s": result.samples_per_s,
                      "seconds": round(time.perf_counter() - started, 1), "figure": result.figure}))  # fmt: skip


def child_peer(data: str, epochs: int) -> None:
    """The hand-written streaming loop: iter_batches -> the same MLP."""
    import pyarrow.parquet as pq
    import torch

    torch.manual_seed(0)
    namespace: dict = {}
    exec(MODEL, namespace)
    model = namespace["build"](FEATURES, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=0.003)
    loss_fn = torch.nn.CrossEntropyLoss()
    names = [f"x{i}" for i in range(FEATURES)]
    seen, started = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in pq.ParquetFile(data).iter_batches(batch_size=BATCH, columns=[*names, "label"]):
            x = torch.from_numpy(np.stack([batch.column(n).to_numpy() for n in names], axis=1))
            y = torch.from_numpy(batch.column("label").to_numpy())
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(y)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": round(peak, 1), "samples_per_s": seen / (time.perf_counter() - started)}))


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the 1x table")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_train(args.child[1]) if args.child[0] == "train" else child_peer(args.child[1], args.epochs)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (1, 10):
            data = Path(tmp) / f"table-{scale}x.parquet"
            write_table(data, args.rows * scale)
            mb = data.stat().st_size / 1e6
            for streaming in (True, False):
                name = f"{'streamed' if streaming else 'in memory'} {scale}x"
                project = make_project(Path(tmp) / name.replace(" ", "-"), data, streaming, args.epochs)
                results[name] = run_child("--child", "train", str(project))
                print(f"{name:>15} ({args.rows * scale:>9,} rows, {mb:6.0f} MB): peak RSS "
                      f"{results[name]['peak_rss_mb']:7.0f} MB, {results[name]['samples_per_s']:9,.0f} samples/s, "
                      f"train stage {results[name]['seconds']:.0f} s", flush=True)  # fmt: skip
            if scale == 10:
                results["peer"] = run_child("--epochs", str(args.epochs), "--child", "peer", str(data))
                print(f"{'iter_batches 10x':>15}: peak RSS {results['peer']['peak_rss_mb']:7.0f} MB, "
                      f"{results['peer']['samples_per_s']:9,.0f} samples/s (hand-written, nothing fitted)")  # fmt: skip
    s1, s10 = results["streamed 1x"], results["streamed 10x"]
    memory = s10["peak_rss_mb"] / s1["peak_rss_mb"]
    speed = s10["samples_per_s"] / s1["samples_per_s"]
    peer = s10["samples_per_s"] / results["peer"]["samples_per_s"]
    grown = results["in memory 10x"]["peak_rss_mb"] / results["in memory 1x"]["peak_rss_mb"]
    print(f"streamed peak memory 10x/1x: {memory:.2f} (target <= 1.2; in memory: {grown:.2f})")
    print(f"streamed samples/s 10x/1x: {speed:.2f} (target >= 0.9)")
    print(f"loopml streamed / hand-written iter_batches loop, samples/s: {peer:.2f}")


if __name__ == "__main__":
    main()
