"""`loopml init`: write a complete project from a bundled template, then `git init` and `dvc init`,
and start the (empty) DVC-tracked folder the loop adds labelled traffic to."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from loopml.errors import ConfigError, PipelineError

TEMPLATES = ("digits", "tabular")


def init(target: Path, template: str = "digits", force: bool = False) -> dict:
    if template not in TEMPLATES:
        raise ConfigError(f'unknown template "{template}"; expected one of {", ".join(TEMPLATES)}')
    target = target.resolve()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} exists and is not a folder; choose another DIR")
    if target.exists() and any(target.iterdir()) and not force:
        raise ConfigError(
            f"{target} is not empty; choose an empty or new DIR, or pass --force to write the "
            "template into it (files with the same names are overwritten)"
        )
    target.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", target.name).strip("-.") or "project"
    written = []
    source = resources.files("loopml.templates").joinpath(template)
    for item in _walk(source):
        relative = item["path"]
        text = item["file"].read_text().replace("{{ name }}", name)
        out = target / relative.replace("dot-", ".")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        written.append(str(out.relative_to(target)))
    git = _git_init(target)
    _dvc_init(target)
    _track_traffic(target)
    return {"project": str(target), "name": name, "template": template, "files": sorted(written),
            "git_init": git}  # fmt: skip


def _walk(folder, prefix: str = ""):
    for entry in folder.iterdir():
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        else:
            yield {"path": f"{prefix}{entry.name}", "file": entry}


def _git_init(target: Path) -> bool:
    """`git init` unless the folder already belongs to a repository that does not ignore it."""
    if shutil.which("git") is None:
        raise PipelineError("git is not installed; install it (e.g. `apt-get install git`)")
    inside = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=target, capture_output=True, text=True)
    if inside.returncode == 0:
        ignored = subprocess.run(["git", "check-ignore", "-q", str(target)], cwd=inside.stdout.strip())
        if ignored.returncode != 0:
            return False
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    return True


def _dvc_init(target: Path) -> None:
    from loopml.pipeline import tool_env

    if (target / ".dvc").is_dir():
        return
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=target, capture_output=True, text=True)
    subdir = ["--subdir"] if Path(top.stdout.strip()).resolve() != target else []
    env = tool_env()
    # analytics off: no network calls; autostage: DVC `git add`s what it changes, no reminders
    for cmd in (["init", "-q", *subdir], ["config", "core.analytics", "false"], ["config", "core.autostage", "true"]):
        done = subprocess.run([sys.executable, "-m", "dvc", *cmd], cwd=target, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise PipelineError(
                f"`dvc {' '.join(cmd)}` failed in {target}: {done.stderr.strip() or done.stdout.strip()}"
            )


def _track_traffic(target: Path) -> None:
    """`dvc add data/traffic` while it is empty: the pipeline depends on it from the start, and each
    retraining set the loop writes there becomes a new DVC version of it."""
    from loopml.pipeline import dvc_add

    (target / "data" / "traffic").mkdir(parents=True, exist_ok=True)
    dvc_add(target, "data/traffic")
