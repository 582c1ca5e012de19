"""Builders for fake machines: a system root from the recorded H100, NVML states, executables."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "gpu-h100"
# Tests about *this* machine hold on a CPU host and on a GPU host alike: they branch on this.
GPU_HOST = Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()
FAKE_NVML = REPO / "tests" / "fakes" / "nvml"
PROPRIETARY = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023\n"


def h100_root(base: Path, driver_line: str | None = None, driver: bool = True, pci: bool = True) -> Path:
    """A system root laid out like the recorded H100 machine."""
    root = base / "root"
    (root / "etc").mkdir(parents=True)
    os_lines = (FIXTURES / "os.txt").read_text().splitlines()[1:]  # line 1 is uname -a
    (root / "etc" / "os-release").write_text("\n".join(os_lines) + "\n")
    if driver:
        version = root / "proc" / "driver" / "nvidia" / "version"
        version.parent.mkdir(parents=True)
        version.write_text(driver_line or (FIXTURES / "proc_driver_nvidia_version.txt").read_text())
        (root / "dev").mkdir()
        for node in ("nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"):
            (root / "dev" / node).touch()
    if pci:
        device = root / "sys" / "bus" / "pci" / "devices" / "0000:00:06.0"
        device.mkdir(parents=True)
        (device / "vendor").write_text("0x10de\n")
        (device / "class").write_text("0x030200\n")
    return root


def h100_nvml(base: Path, **changes) -> Path:
    """An NVML state file from the recorded H100 readings, with `changes` applied."""
    recorded = json.loads((FIXTURES / "torch_nvml.json").read_text())["nvml"]
    gpu = {k: v for k, v in recorded.items() if k not in ("driver", "cuda_driver", "fan")}
    gpu.update(mem_total=recorded["mem_total"], energy_mj=123456789, mem_clock=2619, processes=[])
    state = {"driver": recorded["driver"], "cuda_driver": recorded["cuda_driver"], "gpus": [gpu]}
    for key, value in changes.items():
        if key.startswith("gpu_"):
            gpu[key[4:]] = value
        else:
            state[key] = value
    path = base / "nvml.json"
    path.write_text(json.dumps(state))
    return path


def fake_torch(base: Path, version: str, cuda: str | None, broken: bool = False) -> Path:
    """A `torch` package with only version.py — what doctor reads without importing torch."""
    folder = base / "torchpkg"
    (folder / "torch").mkdir(parents=True, exist_ok=True)
    (folder / "torch" / "__init__.py").write_text("raise ImportError('fake torch: import is not allowed here')\n")
    if not broken:
        cuda_text = repr(cuda) if cuda else "None"
        (folder / "torch" / "version.py").write_text(
            f"from typing import Optional\n__version__ = '{version}'\ncuda: Optional[str] = {cuda_text}\n"
            "hip: Optional[str] = None\n"
        )
    return folder


def executables(base: Path, scripts: dict[str, str]) -> Path:
    """Fake commands on PATH: name → shell script body."""
    folder = base / "bin"
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = folder / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return folder


DOCKER_WITH_NVIDIA = """case "$1" in
  version) echo '{"Client":{"Version":"28.2.2"},"Server":{"Version":"28.2.2"}}' ;;
  info) echo '{"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}' ;;
esac"""
DOCKER_NO_NVIDIA = DOCKER_WITH_NVIDIA.replace('"nvidia":{"path":"nvidia-container-runtime"},', "")
DOCKER_DAEMON_DOWN = """echo '{"Client":{"Version":"28.2.2"},"Server":null}'
echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2
exit 1"""
NVIDIA_CTK = 'echo "NVIDIA Container Toolkit CLI version 1.17.8"'
NVIDIA_SMI = f'cat "{FIXTURES / "nvidia-smi.txt"}"'


def env(nvml: Path | None, torch: Path | None = None, bin_dir: Path | None = None) -> dict[str, str]:
    paths = [str(FAKE_NVML)] if nvml else []
    if torch:
        paths.insert(0, str(torch))
    extra = {"PYTHONPATH": os.pathsep.join(paths)} if paths else {}
    if nvml:
        extra["FAKE_NVML_STATE"] = str(nvml)
    if bin_dir:
        extra["PATH"] = f"{bin_dir}{os.pathsep}" + os.environ.get("PATH", "")
    return extra
