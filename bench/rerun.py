"""A no-op `loopml run` (nothing changed) and `loopml --help`, beside their peers.

Targets (DESIGN.md §5): a re-run with nothing changed < 3 s; `loopml --help` < 0.5 s. The
peers are a bare `dvc repro` on the same project (what `loopml run` wraps) and `dvc --help`.
Run: `python bench/rerun.py` (it trains the digits example once first, about a minute).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(cmd: list[str], cwd: Path, env: dict[str, str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "digits"
        subprocess.run([BIN / "loopml", "init", str(project)], check=True, capture_output=True, env=env)
        print("training the digits example once ...", flush=True)
        subprocess.run([BIN / "loopml", "run"], cwd=project, check=True, capture_output=True, env=env)
        rerun = timed([str(BIN / "loopml"), "run"], project, env)
        dvc = timed([sys.executable, "-m", "dvc", "repro"], project, env)
        help_time = timed([str(BIN / "loopml"), "--help"], project, env, repeats=10)
        dvc_help = timed([sys.executable, "-m", "dvc", "--help"], project, env, repeats=10)
    print(f"no-op loopml run  {rerun:6.2f} s (target < 3 s);   bare dvc repro {dvc:6.2f} s; ratio {rerun / dvc:.2f}x")
    ratio = help_time / dvc_help
    print(f"loopml --help     {help_time:6.2f} s (target < 0.5 s); dvc --help {dvc_help:6.2f} s; ratio {ratio:.2f}x")


if __name__ == "__main__":
    main()
