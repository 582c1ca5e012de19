"""Host facts: OS, kernel, CPU features that matter for ML, memory, disk, Python environment.

File-based facts read under `root` (normally "/"), so tests and image inspection can point
them at a recorded tree. Package versions come from metadata: nothing heavy is imported.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ML_CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile",
                "amx_bf16", "amx_int8", "asimd", "sve")  # fmt: skip
# Recorded by doctor and with every training run (environment.json).
KEY_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "pyarrow", "scikit-learn", "mlflow", "dvc",
                "pandera", "onnxruntime", "onnxruntime-gpu", "nvidia-ml-py", "xgboost", "lightgbm", "cupy-cuda12x",
                "jax")  # fmt: skip


def os_info(root: Path) -> dict[str, Any]:
    release = _os_release(root / "etc" / "os-release")
    uname = platform.uname()
    return {
        "system": uname.system,
        "distro": release.get("PRETTY_NAME") or release.get("NAME") or "unknown",
        "distro_id": release.get("ID"),
        "distro_version": release.get("VERSION_ID"),
        "kernel": uname.release,
        "arch": uname.machine,
        "wsl": "microsoft" in uname.release.lower(),
        "container": _in_container(root),
    }


def cpu_info(root: Path) -> dict[str, Any]:
    flags: set[str] = set()
    model = platform.processor() or "unknown"
    cpuinfo = root / "proc" / "cpuinfo"
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("flags", "Features") and not flags:
                flags = set(value.split())
            elif key == "model name" and model in ("unknown", "", "x86_64"):
                model = value.strip()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    known = cpuinfo.is_file()  # None: unknown (no /proc/cpuinfo under this root), not "no flags"
    return {"model": model, "logical_cores": os.cpu_count(), "usable_cores": usable,
            "ml_flags": [f for f in ML_CPU_FLAGS if f in flags] if known else None}  # fmt: skip


def memory_info(root: Path) -> dict[str, Any]:
    fields = {}
    meminfo = root / "proc" / "meminfo"
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            key, _, value = line.partition(":")
            parts = value.split()
            if parts and parts[0].isdigit():
                fields[key] = int(parts[0]) * 1024
    if "MemTotal" not in fields:
        return {"total_gib": None, "available_gib": None}  # no /proc/meminfo under this root
    return {"total_gib": round(fields["MemTotal"] / 2**30, 1),
            "available_gib": round(fields.get("MemAvailable", 0) / 2**30, 1)}  # fmt: skip


def disk_info(path: Path) -> dict[str, Any]:
    usage = shutil.disk_usage(path)
    return {"path": str(path), "free_gib": round(usage.free / 2**30, 1), "total_gib": round(usage.total / 2**30, 1)}


def python_info() -> dict[str, Any]:
    if os.environ.get("CONDA_PREFIX") and sys.prefix == os.environ["CONDA_PREFIX"]:
        kind = "conda"
    elif sys.prefix != getattr(sys, "base_prefix", sys.prefix):
        kind = "venv"
    else:
        kind = "system"
    return {"version": platform.python_version(), "executable": sys.executable, "environment": kind}


def packages() -> dict[str, str]:
    found = {}
    for name in KEY_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _os_release(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def _in_container(root: Path) -> bool:
    if (root / ".dockerenv").exists() or (root / "run" / ".containerenv").exists():
        return True
    cgroup = root / "proc" / "1" / "cgroup"
    try:
        text = cgroup.read_text()
    except OSError:
        return False
    return any(word in text for word in ("docker", "kubepods", "containerd", "libpod"))
