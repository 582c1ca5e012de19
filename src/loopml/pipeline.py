"""The stage graph on DVC: run `dvc repro`, stream its progress, summarize what ran.

DVC owns caching and the graph (`dvc.yaml` in the project); every stage command is a
`loopml <stage>` call, so the same stage works with or without DVC. Stage output (progress
bars included) goes straight to the terminal; DVC's own lines are parsed to learn which
stages ran and which were cached. Before DVC decides, results that no longer hold are dropped:
a run or version the tracking store lost (a reset store), or an evaluation that failed its gates
(latency is measured again, not cached as a failure).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loopml.contracts import EvaluateResult, RegisterResult, TrainResult
from loopml.errors import PipelineError
from loopml.project import Project

logger = logging.getLogger(__name__)
RUNNING = re.compile(r"^Running stage '([^']+)'")
CACHED = re.compile(r"^Stage '([^']+)' (didn't change, skipping|is cached - skipping run)")
# The stage commands' own options, set for the commands DVC runs (each is a Typer option with
# this envvar, so it shows in `loopml train --help` and `loopml register --help`).
RESUME_ENV = "LOOPML_RESUME"
REGISTER_AS_ENV = "LOOPML_REGISTER_AS"


@dataclass(frozen=True)
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


def dvc(root: Path, *args: str) -> str:
    """Run a DVC command in `root`; its output, or PipelineError with DVC's own words."""
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=tool_env(), capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode != 0:
        raise PipelineError(f"`dvc {' '.join(args)}` failed in {root}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def dvc_add(root: Path, path: str) -> str:
    """`dvc add PATH`: cache it and record its hash in PATH.dvc; returns that hash."""
    import yaml

    dvc(root, "add", "-q", path)
    return yaml.safe_load((root / f"{path}.dvc").read_text())["outs"][0]["md5"]


def drop_stale_results(project: Project) -> list[str]:
    """Remove stage results that no longer hold, so DVC runs those stages again; says why."""
    from loopml import store

    notes = []
    uri = project.tracking_uri
    trained = project.read_result(TrainResult)
    if trained is not None and store.run_exists(uri, trained.run_id) is False:
        notes.append(f"the tracking store has no run {trained.run_id} (a new or reset store?): training again")
        for stage in ("train", "evaluate", "optimize", "register"):
            project.result_path(stage).unlink(missing_ok=True)
        return notes
    registered = project.read_result(RegisterResult)
    if registered is not None and trained is not None:
        owner = store.version_run(uri, project.config.name, registered.version)
        if owner is not None and owner != trained.run_id:
            notes.append(f"{project.config.name} v{registered.version} is not in the tracking store (any more): "
                         "registering again")  # fmt: skip
            project.result_path("register").unlink(missing_ok=True)
    evaluated = project.read_result(EvaluateResult)
    if evaluated is not None and not evaluated.registrable:
        notes.append("the last evaluation failed its gates: measuring again")
        project.result_path("evaluate").unlink(missing_ok=True)
    return notes


def repro(project: Project, force: bool = False, resume: bool = False, as_challenger: bool = False,
          echo: Callable[[str], None] = lambda line: None) -> tuple[list[StageRun], int]:  # fmt: skip
    """Run `dvc repro`; returns each stage's outcome and DVC's exit code. `resume` continues an
    interrupted training; `as_challenger` registers a passing model as challenger only."""
    names = stage_names(project)
    for note in drop_stale_results(project):
        echo(note)
    cmd = [sys.executable, "-m", "dvc", "repro"] + (["--force"] if force else [])
    options = {RESUME_ENV: "1"} if resume else {}
    if as_challenger:
        options[REGISTER_AS_ENV] = "challenger"
    env = tool_env(options)
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
    runs = [StageRun(name, status.get(name, "not run"), seconds.get(name),
                     project.stage_figure(name) if status.get(name) in ("ran", "cached") else "")
            for name in names]  # fmt: skip
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
