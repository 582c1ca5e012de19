"""loopml's PyTorch training loop vs a plain hand-written loop: same model, data and batches.

Target (DESIGN.md §5): loopml reaches >= 0.95x the plain loop's training samples/s.
loopml's loop does more per epoch than the bare loop (a validation pass for early stopping,
a checkpoint, a progress bar), so the plain loop is timed twice: bare, and with the same
per-epoch validation pass a hand-written loop usually has. Run: `python bench/train_overhead.py`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from loopml.train.loop import LoopSettings, TensorBatches, fit


def make_data(rows: int, features: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=(features, classes)).astype(np.float32)
    y = (X @ w + rng.normal(scale=0.5, size=(rows, classes))).argmax(axis=1).astype(np.int64)
    return X, y


def make_model(features: int, classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, classes))


def plain_loop(model, X, y, Xv, yv, epochs: int, batch_size: int, seed: int, validate: bool) -> float:
    """What people write by hand: tensors in memory, randperm batches, AdamW, cross-entropy."""
    xt, yt, xv, yvt = map(torch.as_tensor, (X, y, Xv, yv))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch_size):
            idx = perm[i : i + batch_size]
            loss = loss_fn(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if validate:
            model.eval()
            with torch.inference_mode():
                loss_fn(model(xv), yvt).item()
    return len(xt) * epochs / (time.perf_counter() - start)


def loopml_loop(model, X, y, Xv, yv, epochs: int, batch_size: int, seed: int, folder: Path) -> float:
    settings = LoopSettings(
        epochs=epochs,
        batch_size=batch_size,
        lr=1e-3,
        weight_decay=0.0,
        patience=0,
        seed=seed,
        device=torch.device("cpu"),
        autocast_dtype=None,
        checkpoint=folder / "last.pt",
    )
    batches = TensorBatches(X, y, batch_size, settings.world, settings.device, torch.long)
    return fit(model, batches, Xv, yv, "classification", settings, show_progress=True).samples_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: least noise)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    X, y = make_data(args.rows, args.features, 10)
    split = int(len(X) * 0.9)  # loopml holds out 10% for early stopping; both train on the same 90%
    X, Xv, y, yv = X[:split], X[split:], y[:split], y[split:]
    results: dict[str, list[float]] = {"plain": [], "plain+val": [], "loopml": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):  # interleaved, so machine noise hits all three alike
            for name in results:
                model = make_model(args.features, 10, seed=repeat)
                if name == "loopml":
                    rate = loopml_loop(model, X, y, Xv, yv, args.epochs, args.batch_size, repeat, Path(tmp))
                else:
                    rate = plain_loop(model, X, y, Xv, yv, args.epochs, args.batch_size, repeat, name == "plain+val")
                results[name].append(rate)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{len(X)} rows x {args.features} features, MLP, batch {args.batch_size}, {args.epochs} epochs, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")  # fmt: skip
    for name, rate in med.items():
        print(f"  {name:10s} {rate:12,.0f} samples/s")
    print(f"loopml / plain loop             = {med['loopml'] / med['plain']:.3f}x  (target >= 0.95)")
    print(f"loopml / plain loop with val    = {med['loopml'] / med['plain+val']:.3f}x")


if __name__ == "__main__":
    main()
