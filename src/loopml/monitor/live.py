"""Live monitoring inside the server: rolling windows of traffic, drift gauges, the inference log.

The hot path only appends references to arrays it already has (O(1) per request); windows are
compared with the model's reference profile and the log is written to Parquet in a worker
thread every `monitor.every_s` seconds. Feedback (ground-truth labels for request ids) is
buffered and written beside the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd

from loopml.config import MonitorConfig
from loopml.data.drift import Thresholds, compare
from loopml.data.profile import PREDICTION_COLUMN, Profile

logger = logging.getLogger(__name__)
STATS = ("psi", "ks", "wasserstein_norm", "jensen_shannon")


class LiveMonitor:
    def __init__(self, name: str, version: str, features: list[str], profile: Profile | None, cfg: MonitorConfig,
                 log_dir: Path | None, metrics) -> None:  # fmt: skip
        self.name, self.version, self.features = name, version, features
        self.profile, self.cfg, self.log_dir, self.metrics = profile, cfg, log_dir, metrics
        self.window: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self.window_rows = 0
        self.seen = 0
        self._computed_at_seen = 0
        self._log: list[tuple[str, float, np.ndarray, np.ndarray]] = []
        self._feedback: list[dict] = []
        self._task: asyncio.Task | None = None
        self.last_report = None

    # -- hot path ------------------------------------------------------------------------------
    def observe(self, request_id: str, matrix: np.ndarray, predictions: np.ndarray) -> None:
        self.window.append((matrix, predictions))
        self.window_rows += len(matrix)
        while self.window_rows - len(self.window[0][0]) >= self.cfg.window:
            self.window_rows -= len(self.window.popleft()[0])
        self.seen += len(matrix)
        if self.log_dir is not None:
            self._log.append((request_id, time.time(), matrix, predictions))

    def feedback(self, items: list[dict]) -> None:
        """Labels keyed by request id and row; a list label covers rows 0, 1, ... of that request."""
        now = time.time()
        for item in items:
            labels = item["label"] if isinstance(item["label"], list) else [item["label"]]
            first = int(item.get("row", 0))
            self._feedback.extend({"id": str(item["id"]), "row": first + offset, "label": label, "time": now}
                                  for offset, label in enumerate(labels))  # fmt: skip

    # -- background ----------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        await self._tick()  # the last window and log lines are not lost on reload or shutdown

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.every_s)
            try:
                await self._tick()
            except Exception:  # monitoring must never take serving down
                logger.exception("live monitoring failed; serving goes on")

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        log, self._log = self._log, []
        feedback, self._feedback = self._feedback, []
        window = list(self.window) if self.seen != self._computed_at_seen else []
        self._computed_at_seen = self.seen
        await loop.run_in_executor(None, self._work, window, log, feedback)

    def _work(self, window, log, feedback) -> None:
        if log:  # the log first: a failing drift computation must not lose traffic or labels
            self._write_log(log)
        if feedback:
            self._write("feedback", pd.DataFrame(feedback))
        if window and self.profile is not None:
            self._drift(window)

    def _drift(self, window) -> None:
        matrix = np.concatenate([m for m, _ in window])
        frame = pd.DataFrame(matrix, columns=self.features)
        frame[PREDICTION_COLUMN] = np.concatenate([p for _, p in window])
        report = compare(self.profile, frame, Thresholds.of(self.cfg))
        self.last_report = report
        labels = (self.name, self.version)
        for column in report.columns:
            for stat in STATS:
                value = column.stats.get(stat)
                if value is not None and np.isfinite(value):
                    self.metrics.feature_drift.labels(*labels, column.column, stat).set(value)
        self.metrics.dataset_drift.labels(*labels).set(1.0 if report.dataset_drift else 0.0)
        self.metrics.drifted_share.labels(*labels).set(report.drift_share)

    def _write_log(self, log) -> None:
        ids, times, rows, versions = [], [], [], []
        for request_id, when, matrix, _ in log:
            ids.extend([request_id] * len(matrix))
            rows.extend(range(len(matrix)))
            times.extend([when] * len(matrix))
            versions.extend([self.version] * len(matrix))
        frame = pd.DataFrame(np.concatenate([m for _, _, m, _ in log]), columns=self.features)
        frame.insert(0, "row", rows)
        frame.insert(0, "version", versions)
        frame.insert(0, "time", times)
        frame.insert(0, "id", ids)
        frame[PREDICTION_COLUMN] = np.concatenate([p for _, _, _, p in log])
        self._write("inferences", frame)

    def _write(self, kind: str, frame: pd.DataFrame) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        name = f"{kind}-{time.time_ns()}-{uuid.uuid4().hex[:6]}.parquet"
        frame.to_parquet(self.log_dir / name, index=False)
        files = sorted(self.log_dir.glob(f"{kind}-*.parquet"))
        for old in files[: max(0, len(files) - self.cfg.log_keep_files)]:  # bounded: oldest go first
            old.unlink(missing_ok=True)
