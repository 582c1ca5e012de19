"""Running probes so that none can break the report: each in its own thread with a timeout,
commands in subprocesses with timeouts, every failure returned as data."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

COMMAND_TIMEOUT = 3.0  # seconds; a hung `docker info` must not hang the doctor


@dataclass
class CommandResult:
    found: bool
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.found and self.returncode == 0 and not self.timed_out


def run_command(cmd: list[str], timeout: float = COMMAND_TIMEOUT) -> CommandResult:
    if shutil.which(cmd[0]) is None:
        return CommandResult(found=False)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return CommandResult(found=True, timed_out=True)
    except OSError as exc:
        return CommandResult(found=True, returncode=-1, stderr=str(exc))
    return CommandResult(True, done.returncode, done.stdout, done.stderr)


@dataclass
class ProbeOutcome:
    value: Any
    ok: bool
    seconds: float
    error: str | None = None


def run_probes(probes: dict[str, Callable[[], Any]], timeout: float) -> dict[str, ProbeOutcome]:
    """Run all probes in parallel; a probe that raises or overruns becomes an error outcome.

    Daemon threads, not a thread pool: a probe stuck in a C call (a wedged NVML) can neither
    be cancelled nor joined, and must not keep the process from exiting.
    """
    results: dict[str, ProbeOutcome] = {}

    def work(name: str, fn: Callable[[], Any]) -> None:
        start = time.perf_counter()
        try:
            results[name] = ProbeOutcome(fn(), True, round(time.perf_counter() - start, 3))
        except Exception as exc:  # a probe's bug or a broken library: reported, never raised
            results[name] = ProbeOutcome(None, False, round(time.perf_counter() - start, 3),
                                         f"{type(exc).__name__}: {exc}")  # fmt: skip

    threads = {name: threading.Thread(target=work, args=(name, fn), daemon=True, name=f"probe-{name}")
               for name, fn in probes.items()}  # fmt: skip
    for thread in threads.values():
        thread.start()
    deadline = time.perf_counter() + timeout
    for name, thread in threads.items():
        thread.join(max(0.0, deadline - time.perf_counter()))
        if name not in results:
            results[name] = ProbeOutcome(None, False, round(timeout, 3), f"timed out after {timeout:g}s")
    return {name: results[name] for name in probes}
