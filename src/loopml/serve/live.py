"""Live monitoring inside the server: a rolling window of traffic, drift gauges, the inference log,
and the request ids feedback may name.

The hot path only appends references to arrays it already has (O(1) per request); the window is
compared with the model's reference profile, and the log written to Parquet, in a worker thread
every `monitor.every_s` seconds (see `data.inference_log` for the format and the privacy policy).
No drift verdict is given on fewer than `monitor.min_rows` rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.config import MonitorConfig
from loopml.data import inference_log
from loopml.data.drift import compare
from loopml.data.profile import PREDICTION_COLUMN, Profile
from loopml.serve.rows import Rows, Table, join

logger = logging.getLogger(__name__)
STATS = ("psi", "ks", "wasserstein_norm", "jensen_shannon")


class LiveMonitor:
    def __init__(self, name: str, version: str, features: list[str], profile: Profile | None, cfg: MonitorConfig,
                 log_dir: Path | None, metrics, remember_ids: int = 200_000,
                 describe: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> None:  # fmt: skip
        self.name, self.version, self.features = name, version, features
        # the columns drift is watched on (Predictor.describe): a text's length, unknown words, embedding
        self.describe = describe
        self.profile, self.cfg, self.log_dir, self.metrics = profile, cfg, log_dir, metrics
        self.policy = inference_log.LogPolicy.of(cfg, log_dir) if log_dir is not None else None
        self.window: deque[tuple[Rows, np.ndarray]] = deque()
        self.window_rows = 0
        self.seen = 0
        self._computed_at_seen = 0
        self._log: list[tuple[str, float, Rows, np.ndarray]] = []
        self._feedback: list[tuple[str, int, Any]] = []
        self._ids: OrderedDict[str, int] = OrderedDict()  # request id -> its rows, newest last
        self._remember = remember_ids
        self._task: asyncio.Task | None = None
        self.last_report = None

    # -- hot path ------------------------------------------------------------------------------
    def observe(self, request_id: str, rows: Rows, predictions: np.ndarray) -> None:
        n = len(rows)
        self.window.append((rows, predictions))
        self.window_rows += n
        while self.window_rows - len(self.window[0][0]) >= self.cfg.window:
            self.window_rows -= len(self.window.popleft()[0])
        self.seen += n
        if self.log_dir is not None:
            self._log.append((request_id, time.time(), rows, predictions))
            self._ids[request_id] = n
            if len(self._ids) > self._remember:
                self._ids.popitem(last=False)

    def rows_of(self, request_id: str) -> int | None:
        """How many rows a request this version answered had (None: not one of its requests)."""
        return self._ids.get(request_id)

    def feedback(self, items: list[tuple[str, int, Any]]) -> None:
        """Checked labels, (request id, row, label): written beside the log at the next tick."""
        self._feedback.extend(items)

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
                self.metrics.monitor_up.set(1)
            except Exception:  # monitoring must never take serving down, but it must not go quiet either
                logger.exception("live monitoring of %s v%s failed; serving goes on", self.name, self.version)
                self.metrics.monitor_up.set(0)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        log, self._log = self._log, []
        feedback, self._feedback = self._feedback, []
        window = list(self.window) if self.seen != self._computed_at_seen else []
        self._computed_at_seen = self.seen
        await loop.run_in_executor(None, self._work, window, log, feedback, time.time())

    def _work(self, window, log, feedback, taken_at: float) -> None:
        if log:  # the log first: a failing drift computation must not lose traffic or labels
            self._write_log(log)
        if feedback:
            inference_log.write(self.log_dir, "feedback", inference_log.feedback_frame(feedback), self.policy)
        if window and self.profile is not None:
            self._drift(window, taken_at)

    def _frame(self, rows: Rows) -> pd.DataFrame:
        if isinstance(rows, Table):
            return rows.frame()
        return pd.DataFrame(rows, columns=self.features)

    def _drift(self, window, taken_at: float) -> None:
        labels = (self.name, self.version)
        frame = self._frame(join([r for r, _ in window]))
        if self.describe is not None:
            frame = self.describe(frame)
        frame[PREDICTION_COLUMN] = np.concatenate([p for _, p in window])
        self.metrics.window_rows.labels(*labels).set(len(frame))
        if len(frame) < self.cfg.min_rows:
            return  # too few rows to judge: no verdict yet
        report = compare(self.profile, frame, self.cfg.thresholds())
        self.last_report = report
        for column in report.columns:
            for stat in STATS:
                value = column.stats.get(stat)
                if value is not None and np.isfinite(value):
                    self.metrics.feature_drift.labels(*labels, column.column, stat).set(value)
        self.metrics.dataset_drift.labels(*labels).set(1.0 if report.dataset_drift else 0.0)
        self.metrics.drifted_share.labels(*labels).set(report.drift_share)
        self.metrics.window_time.labels(*labels).set(taken_at)  # the verdict above is on traffic up to then

    def _write_log(self, log) -> None:
        inputs = self._frame(join([rows for _, _, rows, _ in log]))
        predictions = np.concatenate([p for _, _, _, p in log])
        frame = inference_log.log_frame(
            [i for i, _, _, _ in log],
            [t for _, t, _, _ in log],
            [len(rows) for _, _, rows, _ in log],
            self.version,
            inputs,
            predictions,
        )
        inference_log.write(self.log_dir, "inferences", self.policy.apply(frame), self.policy)
