"""Where and how precisely to train: device, autocast dtype, batch size, seeding."""

from __future__ import annotations

import logging
import random
import sys

import numpy as np

from loopml.errors import ConfigError

logger = logging.getLogger(__name__)

CPU_BATCH_SIZE = 64  # small batches converge fast on small CPU datasets and keep caches warm
MAX_AUTO_BATCH_SIZE = 4096  # beyond this, larger batches mostly cost accuracy per epoch
# A batch that fits in GPU memory can still be too big for the data: on an H100 the digits CNN
# fitted 1024 of its 1437 training rows, two optimizer steps an epoch, and reached 0.86 test
# accuracy in 5 epochs where batches of 64 reach 0.9+. Auto batches leave at least this many steps.
MIN_STEPS_PER_EPOCH = 16


def choose_device(requested: str):
    """`auto`: CUDA, then MPS, then CPU; an explicit device must exist."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f'train.device is "{requested}" but torch sees no CUDA device; run `loopml doctor` '
            "to see why, or set train.device: auto"
        )
    if requested.startswith("cuda:") and int(requested[5:]) >= torch.cuda.device_count():
        raise ConfigError(f'train.device is "{requested}" but only {torch.cuda.device_count()} GPU(s) exist')
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError('train.device is "mps" but MPS is not available here; set train.device: auto')
    return torch.device(requested)


def choose_precision(device, requested: str):
    """The autocast dtype, or None for plain fp32. `auto`: bf16 on GPUs that support it."""
    import torch

    if requested == "fp32" or (requested == "auto" and device.type != "cuda"):
        return None
    if requested == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and requested == "fp16":
        raise ConfigError('train.precision "fp16" needs a GPU; use "bf16" or "fp32" on CPU')
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[requested]


def peak_rss_mb() -> float:
    """This process's peak resident memory so far."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def auto_batch_size(build, n_features: int, n_rows: int, device, loss_fn, target_dtype, example=None) -> int:
    """Largest power-of-two batch whose forward+backward fits in GPU memory and that leaves at least
    MIN_STEPS_PER_EPOCH optimizer steps an epoch (CPU: a default). Probed on random rows of
    `n_features` floats, or on copies of `example` (one input row, e.g. a text's longest token ids)."""
    import torch

    limit = max(1, min(MAX_AUTO_BATCH_SIZE, n_rows))
    if device.type != "cuda":
        return min(CPU_BATCH_SIZE, limit)
    limit = max(min(limit, 32), min(limit, n_rows // MIN_STEPS_PER_EPOCH))
    model = build().to(device)
    fits = min(16, limit)
    size = 32
    while size <= limit:
        try:
            x = (torch.randn(size, n_features, device=device) if example is None else
                 torch.as_tensor(example, device=device).unsqueeze(0).expand(size, -1).contiguous())  # fmt: skip
            out = model(x)
            target = torch.zeros(out.shape[0], dtype=target_dtype, device=device)
            if target_dtype == torch.float32:
                target = target.view_as(out)
            loss_fn(out, target).backward()
            fits = size
            size *= 2
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            model.zero_grad(set_to_none=True)
    del model
    torch.cuda.empty_cache()
    logger.info("batch_size auto: %d fits on %s", fits, device)
    return fits


def seed_everything(seed: int) -> None:
    """Python's and NumPy's generators, and PyTorch's where it is loaded: a scikit-learn model's training
    never needs torch, whose import costs it 1.5 s (an estimator built on torch has loaded it by then)."""
    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
