"""The PyTorch training loop: autocast, seeded shuffling, early stopping, checkpoint/resume, DDP.

Kept deliberately close to a hand-written loop (data lives on the device as tensors, batches
are index slices, no per-batch host sync) so its samples/s stays within a few percent of the
plain loop — `bench/train_overhead.py` measures that. A checkpoint is written after every
epoch with everything needed to continue bit-for-bit: weights, optimizer, grad scaler, the
shuffling generator and the global RNG, the early-stopping state and the metric history.

Under DDP (`world.distributed`) every rank takes its shard of each epoch's permutation (the same
generator state everywhere: DistributedSampler with `set_epoch`), gradients are averaged by
DistributedDataParallel, losses summed over ranks, and rank 0 alone writes the checkpoint while
the others wait at a barrier. Early stopping is rank 0's decision, shared, so no rank leaves early.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from loopml.errors import ModelError
from loopml.progress import progress_bar
from loopml.train.distributed import World

logger = logging.getLogger(__name__)


@dataclass
class LoopSettings:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    patience: int  # 0 disables early stopping
    seed: int
    device: object  # torch.device
    autocast_dtype: object | None  # torch.bfloat16 / torch.float16 / None (fp32)
    checkpoint: Path | None = None
    resume: bool = False
    fingerprint: str = ""  # identifies config + data; a checkpoint from other settings is refused
    world: World = field(default_factory=World)  # this process's rank among the training's processes


@dataclass
class FitResult:
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    resumed_from: int | None
    seconds: float
    samples_per_s: float  # all ranks together
    history: list[dict[str, float]] = field(default_factory=list)
    rank_samples_per_s: float = 0.0  # this rank's


class TensorBatches:
    """Training rows held on the device as two tensors; an epoch is a seeded permutation, cut into
    index slices (under DDP, each rank's shard of it). The fast path: no copy, no host sync."""

    def __init__(self, X: np.ndarray, y: np.ndarray, batch_size: int, world: World, device, target_dtype):
        import torch

        self.xt = inputs_tensor(X, device)
        self.yt = torch.as_tensor(y, dtype=target_dtype, device=device)
        self.batch_size, self.world, self.device = batch_size, world, device
        # rows per rank per epoch: equal, so no rank waits on a step the others skip
        self.shard = len(self.xt) // world.size

    def steps(self, epoch: int) -> int:
        return math.ceil(self.shard / self.batch_size)

    def epoch(self, epoch: int, generator):
        import torch

        perm = torch.randperm(len(self.xt), generator=generator)
        if self.world.distributed:
            perm = perm[: self.shard * self.world.size][self.world.rank :: self.world.size]
        perm = perm.to(self.device)
        for i in range(0, self.shard, self.batch_size):
            idx = perm[i : i + self.batch_size]
            yield self.xt[idx], self.yt[idx]


def inputs_tensor(X: np.ndarray, device):
    """Network inputs on the device: features as float32; integer token ids (text models) as int64."""
    import torch

    dtype = torch.int64 if np.asarray(X).dtype.kind in "iu" else torch.float32
    return torch.as_tensor(X, dtype=dtype, device=device)


def fit(model, train, X_val: np.ndarray, y_val: np.ndarray, task: str, settings: LoopSettings,
        on_epoch: Callable[[int, dict], None] | None = None, show_progress: bool = True) -> FitResult:  # fmt: skip
    """Train `model` on `train`'s batches (`TensorBatches`, or a streamed table's
    `loopml.train.streaming.StreamBatches`), validating on X_val/y_val (held on the device) every epoch."""
    import torch

    device = settings.device
    dtype = settings.autocast_dtype
    world = settings.world
    classification = task == "classification"
    model.to(device)
    net = model  # what trains: the model itself, or its DDP wrapper (checkpoints hold the model's state)
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    loss_fn = torch.nn.CrossEntropyLoss() if classification else torch.nn.MSELoss()
    generator = torch.Generator().manual_seed(settings.seed)
    target_dtype = torch.long if classification else torch.float32
    xv = inputs_tensor(X_val, device)
    yv = torch.as_tensor(y_val, dtype=target_dtype, device=device)

    start_epoch, best_loss, best_epoch, bad_epochs = 0, math.inf, -1, 0
    best_state, history, resumed_from = None, [], None
    if settings.resume and settings.checkpoint and settings.checkpoint.is_file():
        state = load_checkpoint(settings.checkpoint, device)
        if state["fingerprint"] != settings.fingerprint:
            raise ModelError(
                f"{settings.checkpoint} was written for other settings or data; run without --resume to start over"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        start_epoch = resumed_from = state["epoch"] + 1
        best_loss, best_epoch, bad_epochs = state["best_loss"], state["best_epoch"], state["bad_epochs"]
        best_state, history = state["best_state"], state["history"]
        logger.info("resuming from epoch %d of %d", start_epoch, settings.epochs)

    # Per-batch costs matter at small batches: no autocast context or grad scaler unless used.
    def autocast():
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def forward_loss(xb, yb, module=net):
        with autocast():
            out = module(xb)
            return loss_fn(out if classification else out.reshape(-1), yb), out

    def step(loss):
        optimizer.zero_grad(set_to_none=True)
        if scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    progress = progress_bar(show_progress and world.is_main)
    task_id = progress.add_task("train", total=sum(train.steps(e) for e in range(start_epoch, settings.epochs)))
    stopped_early = False
    trained_samples = 0
    started = time.perf_counter()
    with progress:
        for epoch in range(start_epoch, settings.epochs):
            net.train()
            total = torch.zeros((), device=device)
            rows = 0
            for xb, yb in train.epoch(epoch, generator):
                loss, _ = forward_loss(xb, yb)
                step(loss)
                total.add_(loss.detach(), alpha=len(xb))
                rows += len(xb)
                progress.advance(task_id)
            trained_samples += rows
            summed = torch.stack([total.float(), total.new_tensor(float(rows), dtype=torch.float32)])
            world.sum_(summed)  # the loss and the rows of every rank
            metrics = {"train_loss": summed[0].item() / max(summed[1].item(), 1.0),
                       **_evaluate(model, forward_loss, xv, yv, classification)}  # fmt: skip
            if not math.isfinite(metrics["train_loss"]):
                raise ModelError(
                    f"training diverged at epoch {epoch + 1} (loss {metrics['train_loss']}); "
                    "lower train.lr or use train.precision: fp32"
                )
            history.append({"epoch": epoch + 1, **metrics})
            if metrics["val_loss"] < best_loss - 1e-7:
                best_loss, best_epoch, bad_epochs = metrics["val_loss"], epoch, 0
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            else:
                bad_epochs += 1
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            progress.update(task_id, description=f"epoch {epoch + 1}/{settings.epochs} {shown}")
            if on_epoch and world.is_main:
                on_epoch(epoch + 1, metrics)
            if settings.checkpoint and world.is_main:
                _save_checkpoint(settings.checkpoint, {
                    "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(), "generator": generator.get_state(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "best_loss": best_loss, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                    "best_state": best_state, "history": history, "fingerprint": settings.fingerprint,
                })  # fmt: skip
            # rank 0 decides after its checkpoint is written: the other ranks wait for the decision, so
            # none goes on (or could be restarted) before the checkpoint is whole
            if world.decide(bool(settings.patience and bad_epochs >= settings.patience)):
                stopped_early = True
                progress.update(task_id, total=progress.tasks[0].completed)
                break
    seconds = time.perf_counter() - started
    if settings.patience and best_state is not None:
        model.load_state_dict(best_state)  # early stopping keeps the best epoch, not the last
    rank_rate = trained_samples / seconds if seconds else 0.0
    return FitResult(
        epochs_run=len(history),
        best_epoch=best_epoch + 1,
        stopped_early=stopped_early,
        resumed_from=resumed_from,
        seconds=seconds,
        samples_per_s=sum(world.gather(rank_rate)),
        history=history,
        rank_samples_per_s=rank_rate,
    )


def _evaluate(model, forward_loss, xv, yv, classification: bool) -> dict[str, float]:
    """Every rank scores the whole validation split with the same weights: the same figures everywhere."""
    import torch

    model.eval()
    with torch.inference_mode():
        loss, out = forward_loss(xv, yv, module=model)
        metrics = {"val_loss": loss.item()}
        if classification:
            metrics["val_accuracy"] = (out.argmax(dim=1) == yv).float().mean().item()
    return metrics


def load_checkpoint(path: Path, device) -> dict:
    """A checkpoint's state, loaded as data only (`weights_only`: a crafted file cannot run code);
    a damaged one is a ModelError that says how to start over."""
    import torch

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError... for a bad file
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelError(f"{path}: the checkpoint is damaged or not a loopml checkpoint ({reason}); delete it, or "
                         "run without --resume to start the training over") from None  # fmt: skip
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise ModelError(f"{path}: not a loopml checkpoint; delete it, or run without --resume")
    return state


def _save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a kill (or a full disk) during the write leaves the previous checkpoint intact."""
    import torch

    from loopml.fileio import disk_error

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(path, exc) from None
