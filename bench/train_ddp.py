"""loopml's DDP training loop vs a hand-written DDP loop, on 1 and 2 processes (CPU, gloo).

Target: loopml >= 0.95x the hand-written DDP loop's samples/s at the same world size. Both train
the same MLP on the same rows with the same per-process batch, AdamW and cross-entropy; the
hand-written loop shards each epoch's permutation as DistributedSampler does and runs the same
per-epoch validation pass loopml's early stopping needs. Each world size is one `torchrun`; inside,
the two loops alternate `--repeats` times so machine noise hits both alike. On a 2-core machine
2 processes share the cores 1 process had: the ratio is what this measures, not scaling.
Run: `python bench/train_ddp.py` (it starts torchrun itself).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from train_overhead import make_data, make_model  # noqa: E402

from loopml.train.distributed import World, world_from_env  # noqa: E402
from loopml.train.loop import LoopSettings, TensorBatches, fit  # noqa: E402


def hand_written(model, X, y, Xv, yv, epochs: int, batch_size: int, seed: int, world: World) -> float:
    """The DDP loop people write: DistributedDataParallel, a sharded randperm per epoch, AdamW."""
    ddp = nn.parallel.DistributedDataParallel(model) if world.distributed else model
    xt, yt, xv, yvt = map(torch.as_tensor, (X, y, Xv, yv))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    shard = len(xt) // world.size
    start = time.perf_counter()
    for _ in range(epochs):
        ddp.train()
        perm = torch.randperm(len(xt), generator=g)[: shard * world.size][world.rank :: world.size]
        for i in range(0, shard, batch_size):
            idx = perm[i : i + batch_size]
            loss = loss_fn(ddp(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            loss_fn(model(xv), yvt).item()
    rate = shard * epochs / (time.perf_counter() - start)
    return sum(world.gather(rate))


def loopml(model, X, y, Xv, yv, epochs: int, batch_size: int, seed: int, world: World, folder: Path) -> float:
    settings = LoopSettings(epochs=epochs, batch_size=batch_size, lr=1e-3, weight_decay=0.0, patience=0, seed=seed,
                            device=torch.device("cpu"), autocast_dtype=None, checkpoint=folder / "last.pt",
                            world=world)  # fmt: skip
    batches = TensorBatches(X, y, batch_size, world, settings.device, torch.long)
    return fit(model, batches, Xv, yv, "classification", settings, show_progress=False).samples_per_s


def worker(args) -> None:
    """One rank: both loops, alternated; rank 0 writes the medians."""
    world = world_from_env()
    if world.distributed:
        dist.init_process_group("gloo")
    torch.set_num_threads(args.threads)
    X, y = make_data(args.rows, args.features, 10)
    split = int(len(X) * 0.9)
    X, Xv, y, yv = X[:split], X[split:], y[:split], y[split:]
    results: dict[str, list[float]] = {"hand-written": [], "loopml": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name in results:
                model = make_model(args.features, 10, seed=repeat)
                if name == "loopml":
                    rate = loopml(model, X, y, Xv, yv, args.epochs, args.batch_size, repeat, world, Path(tmp))
                else:
                    rate = hand_written(model, X, y, Xv, yv, args.epochs, args.batch_size, repeat, world)
                results[name].append(rate)
    if world.is_main:
        Path(args.out).write_text(json.dumps({k: statistics.median(v) for k, v in results.items()}))
    if world.distributed:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256, help="per process")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--worlds", default="1,2", help="process counts to run")
    parser.add_argument("--out", help=argparse.SUPPRESS)  # set for the workers
    args = parser.parse_args()
    if args.out:
        worker(args)
        return
    print(f"{args.rows} rows x {args.features} features, MLP, batch {args.batch_size} per process, {args.epochs} "
          f"epochs, {args.threads} thread(s) per process, median of {args.repeats}, gloo on CPU")  # fmt: skip
    for size in (int(n) for n in args.worlds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            forwarded = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("out", "worlds")]
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={size}",
                       __file__, *forwarded, f"--out={out}"]  # fmt: skip
            subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            med = json.loads(out.read_text())
        ratio = med["loopml"] / med["hand-written"]
        print(f"  {size} process(es): hand-written DDP {med['hand-written']:10,.0f} samples/s   loopml "
              f"{med['loopml']:10,.0f} samples/s   loopml / hand-written = {ratio:.3f}x  (target >= 0.95)")  # fmt: skip


if __name__ == "__main__":
    main()
