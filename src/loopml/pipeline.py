"""The stage graph on DVC: run `dvc repro`, stream its progress, summarize what ran.

DVC owns caching and the graph (`dvc.yaml` in the project); every stage command is a
`loopml <stage>` call, so the same stage works with or without DVC. Stage output (progress
bars included) goes straight to the terminal; DVC's own lines are parsed to learn which
stages ran and which were cached.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loopml.errors import PipelineError
from loopml.project import Project

RUNNING = re.compile(r"^Running stage '([^']+)'")
CACHED = re.compile(r"^Stage '([^']+)' (didn't change, skipping|is cached - skipping run)")


@dataclass
class StageRun:
    name: str
    status: str  # "ran", "cached", "failed" or "not run"
    seconds: float | None
    figure: str


def stage_names(project: Project) -> list[str]:
    import yaml

    dvc_file = project.root / "dvc.yaml"
    if not dvc_file.is_file():
        raise PipelineError(f"{dvc_file} is missing; `loopml init` writes one, or write your own stages")
    try:
        return list((yaml.safe_load(dvc_file.read_text()) or {}).get("stages", {}))
    except yaml.YAMLError as exc:
        raise PipelineError(f"{dvc_file}: not valid YAML ({exc})") from None


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for DVC and stage commands: this interpreter's `bin` first on PATH, so
    `loopml` and `python` in dvc.yaml are the ones running now; DVC analytics off (no network)."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["DVC_NO_ANALYTICS"] = "1"
    env.update(extra or {})
    return env


def dvc_add(root: Path, path: str) -> str:
    """`dvc add PATH`: cache it and record its hash in PATH.dvc; returns that hash."""
    import yaml

    done = subprocess.run([sys.executable, "-m", "dvc", "add", "-q", path], cwd=root, env=tool_env(),
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise PipelineError(f"`dvc add {path}` failed in {root}: {done.stderr.strip() or done.stdout.strip()}")
    return yaml.safe_load((root / f"{path}.dvc").read_text())["outs"][0]["md5"]


def repro(project: Project, force: bool = False, resume: bool = False,
          echo: Callable[[str], None] = lambda line: None,
          extra_env: dict[str, str] | None = None) -> tuple[list[StageRun], int]:  # fmt: skip
    """Run `dvc repro`; returns each stage's outcome and DVC's exit code."""
    names = stage_names(project)
    cmd = [sys.executable, "-m", "dvc", "repro"] + (["--force"] if force else [])
    env = tool_env({**({"LOOPML_RESUME": "1"} if resume else {}), **(extra_env or {})})
    status: dict[str, str] = {}
    started: dict[str, float] = {}
    started_wall: dict[str, float] = {}
    seconds: dict[str, float] = {}
    current = None
    try:
        proc = subprocess.Popen(cmd, cwd=project.root, env=env, stdout=subprocess.PIPE, text=True, bufsize=1)
    except OSError as exc:
        raise PipelineError(f"cannot start DVC ({exc}); is dvc installed (`pip install dvc`)?") from None
    with proc:
        for line in proc.stdout:
            line = line.rstrip("\n")
            now = time.perf_counter()
            if (m := RUNNING.match(line)) or (c := CACHED.match(line)):
                if current:
                    seconds[current] = now - started[current]
                    current = None
                if m:
                    current = m[1]
                    status[current], started[current] = "ran", now
                    started_wall[current] = time.time()
                else:
                    status[c[1]] = "cached"
            echo(line)
        code = proc.wait()
    if current:
        seconds[current] = time.perf_counter() - started[current]
    if code != 0:
        _blame(project, names, status, current, started_wall)
    runs = []
    for name in names:
        result = project.read_result(name) if status.get(name) in ("ran", "cached") else None
        runs.append(StageRun(name, status.get(name, "not run"), seconds.get(name),
                             (result or {}).get("figure", "")))  # fmt: skip
    return runs, code


def _blame(project: Project, names: list[str], status: dict[str, str], current: str | None,
           started_wall: dict[str, float]) -> None:  # fmt: skip
    """Mark the stage that failed. DVC can fail between stages (say, checking the next stage's
    params) after the last one it ran succeeded: a result written since that stage started
    means it finished, so the blame goes to the next stage."""
    result = project.result_path(current) if current else None
    finished = result is not None and result.is_file() and result.stat().st_mtime >= started_wall[current]
    if current and not finished:
        status[current] = "failed"
        return
    pending = [n for n in names if n not in status]
    if pending:
        status[pending[0]] = "failed"
