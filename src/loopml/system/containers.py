"""Containers and clusters: Docker client and daemon, the NVIDIA Container Toolkit, kubectl,
SLURM, Apptainer. Each tool is asked for its version with a timeout; absence is a fact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loopml.system.probe import run_command


def docker(root: Path) -> dict[str, Any]:
    client = run_command(["docker", "version", "--format", "{{json .}}"])
    facts: dict[str, Any] = {"client": None, "daemon": None, "runtimes": [], "nvidia_runtime": False}
    if not client.found:
        return facts
    parsed = _json(client.stdout) or {}
    facts["client"] = (parsed.get("Client") or {}).get("Version") or _first_line(client.stdout)
    server = parsed.get("Server")
    if server:
        facts["daemon"] = server.get("Version")
        info = run_command(["docker", "info", "--format", "{{json .Runtimes}}"])
        facts["runtimes"] = sorted((_json(info.stdout) or {}).keys()) if info.ok else []
    else:
        facts["daemon_error"] = _first_line(client.stderr) or "the Docker daemon did not answer"
    daemon_json = _json(_read(root / "etc" / "docker" / "daemon.json")) or {}
    facts["daemon_json_runtimes"] = sorted((daemon_json.get("runtimes") or {}).keys())
    facts["nvidia_runtime"] = "nvidia" in facts["runtimes"] or "nvidia" in facts["daemon_json_runtimes"]
    return facts


def nvidia_container_toolkit() -> dict[str, Any]:
    ctk = run_command(["nvidia-ctk", "--version"])
    cli = run_command(["nvidia-container-cli", "info"])
    return {
        "nvidia_ctk": _first_line(ctk.stdout) if ctk.ok else None,
        "nvidia_container_cli": cli.found,
        "nvidia_container_cli_ok": cli.ok,
        "nvidia_container_cli_error": None if cli.ok or not cli.found else _first_line(cli.stderr or cli.stdout),
    }


def cluster_tools() -> dict[str, Any]:
    tools = {
        "kubectl": ["kubectl", "version", "--client", "--output=json"],
        "slurm": ["sinfo", "--version"],
        "apptainer": ["apptainer", "--version"],
        "singularity": ["singularity", "--version"],
    }
    found = {}
    for name, cmd in tools.items():
        result = run_command(cmd)
        if not result.ok:
            found[name] = None
        elif name == "kubectl":
            found[name] = ((_json(result.stdout) or {}).get("clientVersion") or {}).get("gitVersion")
        else:
            found[name] = _first_line(result.stdout)
    return found


def host_cuda_toolkit() -> dict[str, Any] | None:
    """nvcc on the host — the host's toolkit, which PyTorch wheels do not use."""
    nvcc = run_command(["nvcc", "--version"])
    if not nvcc.ok:
        return None
    release = next((line for line in nvcc.stdout.splitlines() if "release" in line), "")
    version = release.split("release")[-1].split(",")[0].strip() if release else None
    return {"nvcc": version, "line": release.strip()}


def _json(text: str | None):
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""
