"""The NVIDIA stack from the outside in: PCI devices, the kernel module, device nodes, NVML.

NVML comes from `nvidia-ml-py` (`import pynvml`) when installed; every NVML failure is
classified (library missing, driver not loaded, driver/library mismatch, ...) because each
has a different fix. Readings are plain dicts, shared by `doctor`, `gpu` and the exporter.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from loopml.system.compat import cuda_from_int

NVIDIA_PCI_VENDOR = "0x10de"
DISPLAY_CLASSES = ("0x0300", "0x0302")  # VGA and 3D controllers: GPUs, not audio/USB functions
DRIVER_LINE = re.compile(
    r"NVRM version:\s+NVIDIA UNIX (Open Kernel Module for )?\S+\s+(Kernel Module\s+)?(\d+(?:\.\d+)+)"
)


class NvmlUnavailable(Exception):
    """NVML could not start; `kind` says why (see NVML_FAILURES)."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


# NVML error codes (nvml.h) → our failure kinds
NVML_FAILURES = {12: "library-missing", 9: "driver-not-loaded", 18: "version-mismatch", 4: "no-permission"}


def kernel_driver(root: Path) -> dict[str, Any] | None:
    """The loaded kernel module, from /proc/driver/nvidia/version (open or proprietary)."""
    path = root / "proc" / "driver" / "nvidia" / "version"
    if not path.is_file():
        return None
    first = path.read_text(errors="replace").splitlines()[0] if path.read_text(errors="replace") else ""
    match = DRIVER_LINE.search(first)
    return {
        "version": match[3] if match else None,
        "module": "open" if "Open Kernel Module" in first else "proprietary",
        "line": first.strip(),
    }


def device_nodes(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "dev").glob("nvidia*")) if (root / "dev").is_dir() else []


def pci_gpus(root: Path) -> list[str]:
    """PCI addresses of NVIDIA GPUs, whether or not a driver is bound (sysfs, no lspci needed)."""
    found = []
    for device in sorted((root / "sys" / "bus" / "pci" / "devices").glob("*")):
        try:
            vendor = (device / "vendor").read_text().strip()
            klass = (device / "class").read_text().strip()
        except OSError:
            continue
        if vendor == NVIDIA_PCI_VENDOR and klass[:6] in DISPLAY_CLASSES:
            found.append(device.name)
    return found


def nvml_snapshot(processes: bool = True) -> dict[str, Any]:
    """Driver facts and per-GPU readings through NVML; raises NvmlUnavailable with a kind."""
    try:
        import pynvml
    except ImportError:
        raise NvmlUnavailable("bindings-missing", "the nvidia-ml-py package is not installed") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(NVML_FAILURES.get(getattr(exc, "value", None), "nvml-error"), str(exc)) from None
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = cuda_from_int(pynvml.nvmlSystemGetCudaDriverVersion())
        gpus = [_device(pynvml, i, processes) for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()
    return {"driver": driver, "cuda_driver": cuda, "gpus": gpus}


def _device(nv, index: int, processes: bool) -> dict[str, Any]:
    handle = nv.nvmlDeviceGetHandleByIndex(index)
    memory = nv.nvmlDeviceGetMemoryInfo(handle)
    gpu: dict[str, Any] = {
        "index": index,
        "name": _text(nv.nvmlDeviceGetName(handle)),
        "uuid": _text(nv.nvmlDeviceGetUUID(handle)),
        "minor": _maybe(lambda: nv.nvmlDeviceGetMinorNumber(handle), index),
        "pci_bus_id": _maybe(lambda: _text(nv.nvmlDeviceGetPciInfo(handle).busId)),
        "memory_total_mib": memory.total // 2**20,
        "memory_used_mib": memory.used // 2**20,
        "memory_free_mib": memory.free // 2**20,
        "compute_capability": list(nv.nvmlDeviceGetCudaComputeCapability(handle)),
    }
    util = _maybe(lambda: nv.nvmlDeviceGetUtilizationRates(handle))
    gpu["utilization_gpu"] = util.gpu if util else None
    gpu["utilization_memory"] = util.memory if util else None
    gpu["temperature_c"] = _maybe(lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU))
    power = _maybe(lambda: nv.nvmlDeviceGetPowerUsage(handle))
    limit = _maybe(lambda: nv.nvmlDeviceGetEnforcedPowerLimit(handle))
    gpu["power_w"] = round(power / 1000, 1) if power is not None else None
    gpu["power_limit_w"] = round(limit / 1000, 1) if limit is not None else None
    energy = _maybe(lambda: nv.nvmlDeviceGetTotalEnergyConsumption(handle))
    gpu["energy_mj"] = energy
    gpu["sm_clock_mhz"] = _maybe(lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM))
    gpu["mem_clock_mhz"] = _maybe(lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_MEM))
    mig = _maybe(lambda: nv.nvmlDeviceGetMigMode(handle))
    gpu["mig_enabled"] = bool(mig[0]) if mig else False
    gpu["persistence"] = _maybe(lambda: bool(nv.nvmlDeviceGetPersistenceMode(handle)))
    ecc = _maybe(lambda: nv.nvmlDeviceGetEccMode(handle))
    gpu["ecc"] = bool(ecc[0]) if ecc else None
    gpu["mig_devices"] = _mig_devices(nv, handle) if gpu["mig_enabled"] else []
    gpu["processes"] = _processes(nv, handle) if processes else []
    return gpu


def _mig_devices(nv, handle) -> list[dict[str, Any]]:
    devices = []
    for slot in range(_maybe(lambda: nv.nvmlDeviceGetMaxMigDeviceCount(handle), 0) or 0):
        mig = _maybe(lambda s=slot: nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, s))
        if mig is None:
            continue
        memory = _maybe(lambda m=mig: nv.nvmlDeviceGetMemoryInfo(m))
        devices.append({
            "index": slot,
            "uuid": _maybe(lambda m=mig: _text(nv.nvmlDeviceGetUUID(m))),
            "memory_total_mib": memory.total // 2**20 if memory else None,
            "memory_used_mib": memory.used // 2**20 if memory else None,
        })  # fmt: skip
    return devices


def _processes(nv, handle) -> list[dict[str, Any]]:
    seen = {}
    for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        for proc in _maybe(lambda g=getter: getattr(nv, g)(handle), []) or []:
            used = getattr(proc, "usedGpuMemory", None)
            seen[proc.pid] = {"pid": proc.pid, "memory_mib": used // 2**20 if isinstance(used, int) else None}
    for proc in seen.values():
        command = _command_line(proc["pid"])
        proc["command"] = command
        proc["loopml"] = "loopml" in command
    return list(seen.values())


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _maybe(call, default=None):
    """NVML raises NotSupported for fields a card lacks (fan speed on data-centre GPUs...)."""
    try:
        return call()
    except Exception:
        return default


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
