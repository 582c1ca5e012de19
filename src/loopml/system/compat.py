"""Compatibility tables as data: CUDA toolkit ↔ minimum Linux driver, GPU architectures.

Source: NVIDIA's CUDA Toolkit release notes ("CUDA Toolkit and Corresponding Driver
Versions", Linux x86_64) and the CUDA Compatibility guide (minor version compatibility).
A toolkit runs on its own minimum driver or newer; within a major family (11.x, 12.x, 13.x)
it also runs — with a limited feature set (no PTX JIT of newer code) — on any driver at
or above the family's minor-version-compatibility floor.
"""

from __future__ import annotations

# CUDA major.minor → minimum Linux driver of its GA release.
TOOLKIT_MIN_DRIVER: dict[str, str] = {
    "11.0": "450.36.06",
    "11.1": "455.23",
    "11.2": "460.27.03",
    "11.3": "465.19.01",
    "11.4": "470.42.01",
    "11.5": "495.29.05",
    "11.6": "510.39.01",
    "11.7": "515.43.04",
    "11.8": "520.61.05",
    "12.0": "525.60.13",
    "12.1": "530.30.02",
    "12.2": "535.54.03",
    "12.3": "545.23.06",
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
    "13.1": "590.44.01",
}

# CUDA major → (lowest driver for minor version compatibility, first driver of the next family).
MINOR_COMPAT: dict[int, tuple[str, str | None]] = {
    11: ("450.80.02", "525"),
    12: ("525.60.13", "580"),
    13: ("580.65.06", None),
}

# Compute capability → architecture name, for messages.
ARCHITECTURES: dict[int, str] = {3: "Kepler", 5: "Maxwell", 6: "Pascal", 7: "Volta/Turing", 8: "Ampere/Ada",
                                 9: "Hopper", 10: "Blackwell", 12: "Blackwell (consumer)"}  # fmt: skip


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def cuda_from_int(value: int) -> str:
    """NVML's CUDA driver version (e.g. 13000) → "13.0"."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def driver_verdict(driver: str, torch_cuda: str) -> tuple[str, str]:
    """("ok" | "minor-compat" | "too-old", minimum driver needed for full support)."""
    wanted = TOOLKIT_MIN_DRIVER.get(torch_cuda) or _nearest_min(torch_cuda)
    if version_tuple(driver) >= version_tuple(wanted):
        return "ok", wanted
    major = version_tuple(torch_cuda)[0]
    floor = MINOR_COMPAT.get(major, (wanted, None))[0]
    if version_tuple(driver) >= version_tuple(floor):
        return "minor-compat", wanted
    return "too-old", wanted


def _nearest_min(torch_cuda: str) -> str:
    """A CUDA minor not in the table (newer than it): the highest known of its major, or later."""
    major = version_tuple(torch_cuda)[0]
    same = [v for k, v in TOOLKIT_MIN_DRIVER.items() if version_tuple(k)[0] == major]
    return max(same, key=version_tuple) if same else max(TOOLKIT_MIN_DRIVER.values(), key=version_tuple)


def arch_supported(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Does a torch build with `arch_list` (e.g. ["sm_80", "sm_90", "compute_90"]) run on this GPU?

    A cubin for sm_XY runs on GPUs of the same major X with minor >= Y; PTX (compute_XY) is
    JIT-compiled by the driver for any GPU of capability >= X.Y.
    """
    major, minor = capability
    for arch in arch_list:
        kind, _, number = arch.partition("_")
        if not number[:-1].isdigit():
            continue
        a_major, a_minor = int(number[:-1]), int(number[-1])
        if kind == "sm" and a_major == major and a_minor <= minor:
            return True
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def wheel_advice(capability: tuple[int, int]) -> str:
    """Which PyTorch build to install for a GPU whose capability the current build lacks."""
    major, minor = capability
    if major >= 10:
        return ("pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu128 "
                "(Blackwell needs a CUDA 12.8+ build, torch >= 2.7)")  # fmt: skip
    if (major, minor) < (5, 0):
        return ("no current PyTorch wheel supports this GPU (compute capability < 5.0); "
                "build PyTorch from source with TORCH_CUDA_ARCH_LIST or use the CPU")  # fmt: skip
    if (major, minor) < (7, 5):
        return ("pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu126 "
                "(CUDA 12.8+ builds dropped Maxwell/Pascal/Volta kernels)")  # fmt: skip
    return "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu128"
