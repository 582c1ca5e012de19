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


def requirements(kind: str, uses_sklearn: bool, extra: tuple[str, ...] = ()) -> list[str]:
    """pip requirements for a logged model: what a fresh environment needs to load and run it,
    installable from PyPI (a local build label such as "+cpu" is dropped: `torch==2.13.0` matches
    whichever build the installing machine's index offers). MLflow adds itself; `extra` names
    distributions the estimator comes from (xgboost, lightgbm, ...)."""
    from importlib import metadata

    wanted = ["numpy", "pandas", "cloudpickle"]
    if kind in ("torch", "text"):
        wanted.append("torch")
    if kind == "onnx":  # an optimized variant run by ONNX Runtime: no torch, no estimator library
        wanted.append("onnxruntime")
    if kind == "sklearn" or uses_sklearn:
        wanted += ["scikit-learn", "scipy", "joblib"]
    pinned = []
    for name in dict.fromkeys([*wanted, *extra]):
        try:
            pinned.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            continue
    return pinned
