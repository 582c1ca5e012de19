"""Latency and throughput of a loaded package, at a fixed thread count, the way serving calls it.

All-numeric models are timed on float matrices (`infer_matrix`, the server's fast path), others on
tables of raw columns. Each figure is the best of a few rounds (other processes only add time).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from loopml.evaluate.metrics import torch_threads
from loopml_runtime import Predictor

SINGLE_CALLS = 200  # one-row calls per round ...
MIN_SINGLE_CALLS = 50  # ... or fewer for a slow model (a transformer), so a round lasts about ROUND_S
ROUND_S = 1.0
BATCH_CALLS = 5  # batch calls per round
ROUNDS = 3
# What int8 speed depends on: without VNNI (or AMX), int8 matrix products are slower than fp32 ones.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "amx_tile")


def timings(predictor: Predictor, X: pd.DataFrame, batch_size: int, threads: int) -> dict[str, float]:
    """p50/p95 ms at one row and at `batch_size` rows, and rows/s at `batch_size`."""
    rows = _rows(predictor, X, max(batch_size, 1))
    call = predictor.infer_matrix if predictor.numeric else predictor.infer
    singles = [rows[i % len(rows) : i % len(rows) + 1] for i in range(SINGLE_CALLS)]
    batch = rows[:batch_size]
    with torch_threads(threads):
        started = time.perf_counter()
        for single in singles[:10]:
            call(single)
        per_call = (time.perf_counter() - started) / 10
        singles = singles[: max(MIN_SINGLE_CALLS, min(SINGLE_CALLS, int(ROUND_S / max(per_call, 1e-9))))]
        call(batch)
        one = _best(call, singles)
        many = _best(call, [batch] * BATCH_CALLS)
    return {
        "row_p50_ms": float(np.percentile(one, 50) * 1e3),
        "row_p95_ms": float(np.percentile(one, 95) * 1e3),
        "batch_p50_ms": float(np.percentile(many, 50) * 1e3),
        "batch_p95_ms": float(np.percentile(many, 95) * 1e3),
        "throughput_rows_s": float(len(batch) / np.median(many)),
    }


def _rows(predictor: Predictor, X: pd.DataFrame, at_least: int):
    """The test rows as the server hands them over, repeated up to `at_least` rows."""
    repeat = -(-at_least // max(len(X), 1))
    frame = pd.concat([X] * repeat, ignore_index=True) if repeat > 1 else X.reset_index(drop=True)
    if predictor.numeric:
        return predictor.conform(frame).to_numpy(dtype=np.float64, na_value=np.nan)
    return frame


def _best(call, inputs: list) -> np.ndarray:
    rounds = []
    for _ in range(ROUNDS):
        times = np.empty(len(inputs))
        for i, x in enumerate(inputs):
            start = time.perf_counter()
            call(x)
            times[i] = time.perf_counter() - start
        rounds.append(times)
    return min(rounds, key=lambda r: np.percentile(r, 95))


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The CPU_FLAGS this machine has (empty where /proc/cpuinfo is missing)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return []
    found = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            found.update(line.split(":", 1)[1].split())
            break
    return [flag for flag in CPU_FLAGS if flag in found]
