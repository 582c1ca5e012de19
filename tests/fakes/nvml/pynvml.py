"""A fake of nvidia-ml-py's `pynvml`, driven by the JSON file named in $FAKE_NVML_STATE.

Only what loopml calls is implemented; the values come from recordings of a real H100
(tests/fixtures/gpu-h100/torch_nvml.json) or from a test's scenario. `"init_error": 12`
makes nvmlInit fail with that NVML error code (12 library missing, 9 driver not loaded,
18 driver/library mismatch).
"""

import json
import os
from types import SimpleNamespace

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_ERROR_NOT_SUPPORTED = 3


class NVMLError(Exception):
    def __init__(self, value):
        super().__init__(f"NVML error {value}")
        self.value = value


def _state():
    with open(os.environ["FAKE_NVML_STATE"]) as handle:
        return json.load(handle)


def _gpu(handle):
    return _state()["gpus"][handle]


def _field(handle, key):
    value = _gpu(handle).get(key)
    if value is None or value == "unsupported":
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return value


def nvmlInit():
    error = _state().get("init_error")
    if error:
        raise NVMLError(error)


def nvmlShutdown():
    pass


def nvmlSystemGetDriverVersion():
    return _state()["driver"]


def nvmlSystemGetCudaDriverVersion():
    return _state()["cuda_driver"]


def nvmlDeviceGetCount():
    return len(_state()["gpus"])


def nvmlDeviceGetHandleByIndex(index):
    return index


def nvmlDeviceGetName(handle):
    return _field(handle, "name")


def nvmlDeviceGetUUID(handle):
    return _field(handle, "uuid")


def nvmlDeviceGetMinorNumber(handle):
    return handle


def nvmlDeviceGetPciInfo(handle):
    return SimpleNamespace(busId=_field(handle, "pci"))


def nvmlDeviceGetMemoryInfo(handle):
    if isinstance(handle, tuple):  # a MIG device handle
        gpu, slot = handle
        mig = _gpu(gpu)["mig_devices"][slot]
        return SimpleNamespace(total=mig["mem_total"], used=mig["mem_used"], free=mig["mem_total"] - mig["mem_used"])
    total, used = _field(handle, "mem_total"), _field(handle, "mem_used")
    return SimpleNamespace(total=total, used=used, free=total - used)


def nvmlDeviceGetCudaComputeCapability(handle):
    return tuple(_field(handle, "cc"))


def nvmlDeviceGetUtilizationRates(handle):
    return SimpleNamespace(gpu=_field(handle, "util_gpu"), memory=_field(handle, "util_mem"))


def nvmlDeviceGetTemperature(handle, sensor):
    return _field(handle, "temp")


def nvmlDeviceGetPowerUsage(handle):
    return _field(handle, "power_mw")


def nvmlDeviceGetEnforcedPowerLimit(handle):
    return _field(handle, "power_limit_mw")


def nvmlDeviceGetTotalEnergyConsumption(handle):
    return _field(handle, "energy_mj")


def nvmlDeviceGetClockInfo(handle, clock):
    return _field(handle, "sm_clock" if clock == NVML_CLOCK_SM else "mem_clock")


def nvmlDeviceGetMigMode(handle):
    return tuple(_field(handle, "mig"))


def nvmlDeviceGetPersistenceMode(handle):
    return _field(handle, "persistence")


def nvmlDeviceGetEccMode(handle):
    return tuple(_field(handle, "ecc"))


def nvmlDeviceGetMaxMigDeviceCount(handle):
    return len(_gpu(handle).get("mig_devices", []))


def nvmlDeviceGetMigDeviceHandleByIndex(handle, slot):
    return (handle, slot)


def nvmlDeviceGetComputeRunningProcesses(handle):
    procs = _gpu(handle).get("processes", [])
    return [SimpleNamespace(pid=os.getpid() if p["pid"] == "self" else p["pid"], usedGpuMemory=p["mem"]) for p in procs]


def nvmlDeviceGetGraphicsRunningProcesses(handle):
    return []
