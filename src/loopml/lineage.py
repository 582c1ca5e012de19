"""Lineage facts recorded with every run: git commit, package versions, the training device."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

from loopml import __version__


def git_commit(root: Path) -> str:
    """HEAD's commit, suffixed `-dirty` when tracked files changed; `none` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return "none"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)  # fmt: skip
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "none"


def package_versions() -> dict[str, str]:
    from loopml.system.host import packages

    return {"python": platform.python_version(), "loopml": __version__, **packages()}


def environment(device: str) -> dict[str, object]:
    env: dict[str, object] = {
        "packages": package_versions(),
        "platform": platform.platform(),
        "python_executable": sys.executable,
        "device": device,
    }
    if device.startswith("cuda"):
        import torch

        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["cuda"] = torch.version.cuda
    return env


def requirements() -> list[str]:
    """pip requirements for a logged model: what a fresh environment needs to load it."""
    versions = package_versions()
    wanted = ("torch", "scikit-learn", "numpy", "pandas", "pyarrow", "mlflow")
    return [f"{name}=={versions[name]}" for name in wanted if name in versions]
