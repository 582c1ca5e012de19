"""`loopml doctor`: gather facts with isolated probes, turn them into verdicts with fixes.

The report (`Report.as_dict()`, printed by `--json`) has a stable shape, version 1:

    {"schema": 1, "summary": {"level": "none|cpu|gpu|gpu-containers", "line": "..."},
     "findings": [{"id", "severity": "error|warning|info", "message", "fix"}],
     "facts": {"os", "cpu", "memory", "disk", "python", "packages", "driver", "gpus",
               "torch", "cuda_toolkit_host", "docker", "container_toolkit", "cluster", "mlflow"},
     "probes": {name: {"ok", "seconds", "error"}}}
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loopml.system import compat, containers, host, nvidia, torch_build
from loopml.system.probe import run_probes

SCHEMA = 1
QUICK_TIMEOUT = 1.5  # seconds for all probes together: doctor answers in < 2 s
DEEP_TIMEOUT = 90.0
LOW_DISK_GIB, NO_DISK_GIB = 10.0, 2.0
TORCH_CUDA_INDEXES = ("13.0", "12.8", "12.6", "11.8")  # PyTorch's published CUDA wheel indexes


@dataclass
class Finding:
    id: str
    severity: str  # error | warning | info
    message: str
    fix: str = ""


@dataclass
class Report:
    facts: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    level: str = "none"
    line: str = ""

    def add(self, id: str, severity: str, message: str, fix: str = "") -> None:
        self.findings.append(Finding(id, severity, message, fix))

    def as_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "summary": {"level": self.level, "line": self.line},
                "findings": [asdict(f) for f in self.findings], "facts": self.facts, "probes": self.probes}  # fmt: skip


def inspect(root: Path = Path("/"), project: Path | None = None, deep: bool = False) -> Report:
    """Run every probe (in parallel, each isolated) and derive the verdicts."""
    workdir = project or Path.cwd()
    probes = {
        "os": lambda: host.os_info(root),
        "cpu": lambda: host.cpu_info(root),
        "memory": lambda: host.memory_info(root),
        "disk": lambda: host.disk_info(workdir),
        "python": host.python_info,
        "packages": host.packages,
        "kernel_driver": lambda: nvidia.kernel_driver(root),
        "device_nodes": lambda: nvidia.device_nodes(root),
        "pci_gpus": lambda: nvidia.pci_gpus(root),
        "nvml": _nvml,
        "torch": torch_build.deep if deep else torch_build.quick,
        "cuda_toolkit_host": containers.host_cuda_toolkit,
        "docker": lambda: containers.docker(root),
        "container_toolkit": containers.nvidia_container_toolkit,
        "cluster": containers.cluster_tools,
        "mlflow": lambda: _mlflow(workdir),
    }
    outcomes = run_probes(probes, DEEP_TIMEOUT if deep else QUICK_TIMEOUT)
    facts = {name: outcome.value for name, outcome in outcomes.items()}
    report = Report(
        facts={}, probes={n: {"ok": o.ok, "seconds": o.seconds, "error": o.error} for n, o in outcomes.items()}
    )
    for name, outcome in outcomes.items():
        if not outcome.ok:
            report.add(f"probe-{name}", "warning", f"the {name} probe failed: {outcome.error}",
                       "run `loopml doctor -v` and report it if it persists")  # fmt: skip
    _verdicts(report, facts, deep)
    nvml = facts.pop("nvml") or {}
    report.facts = {
        **{k: facts[k] for k in ("os", "cpu", "memory", "disk", "python", "packages")},
        "driver": {"kernel_module": facts["kernel_driver"], "device_nodes": facts["device_nodes"],
                   "pci_gpus": facts["pci_gpus"], "nvml_driver": nvml.get("driver"),
                   "max_cuda": nvml.get("cuda_driver"), "nvml_error": nvml.get("error")},
        "gpus": nvml.get("gpus", []),
        **{k: facts[k] for k in ("torch", "cuda_toolkit_host", "docker", "container_toolkit", "cluster", "mlflow")},
    }  # fmt: skip
    return report


def _nvml() -> dict[str, Any]:
    try:
        return nvidia.nvml_snapshot(processes=False)
    except nvidia.NvmlUnavailable as exc:
        return {"error": exc.kind, "detail": exc.detail, "gpus": []}


def _mlflow(workdir: Path) -> dict[str, Any] | None:
    """Where the project's tracking store and artifacts live (its `.env` counts), and whether they answer."""
    from loopml.errors import ConfigError
    from loopml.project import Project
    from loopml.store import facts

    try:
        project = Project.find(workdir)  # also loads the project's .env (MLFLOW_TRACKING_URI, credentials)
    except ConfigError:
        project = None
    if project is not None:
        local = project.tracking_uri.startswith("sqlite:")
        found = facts(project.tracking_uri, project.config.name, project.artifact_location if local else None)
    elif os.environ.get("MLFLOW_TRACKING_URI"):
        found = facts(os.environ["MLFLOW_TRACKING_URI"], "Default")
    else:
        return None
    return asdict(found)


# -- verdicts ----------------------------------------------------------------------------


def _verdicts(report: Report, facts: dict[str, Any], deep: bool) -> None:
    gpu_ready = _gpu_verdicts(report, facts, deep)
    cpu_ready = _torch_verdicts(report, facts, facts.get("torch"))
    containers_ready = gpu_ready and _container_verdicts(report, facts)
    _resource_verdicts(report, facts)
    blocked = any(f.id in ("disk-full", "torch-broken") for f in report.findings)
    if gpu_ready and containers_ready and not blocked:
        report.level, report.line = "gpu-containers", "ready for GPU training and GPU containers"
    elif gpu_ready and not blocked:
        report.level, report.line = "gpu", "ready for GPU training"
    elif cpu_ready and not blocked:
        report.level, report.line = "cpu", "ready for CPU training"
    else:
        first = next((f for f in report.findings if f.severity == "error"), None)
        report.level, report.line = "none", f"not ready: {first.message if first else 'see the findings'}"
    if report.level == "cpu" and facts.get("pci_gpus"):
        report.line += " (the GPU is not usable yet: see the errors above)"


def _gpu_verdicts(report: Report, facts: dict[str, Any], deep: bool) -> bool:
    nvml = facts.get("nvml") or {}
    kernel = facts.get("kernel_driver")
    pci = facts.get("pci_gpus") or []
    nodes = facts.get("device_nodes") or []
    error = nvml.get("error")
    if error:
        _nvml_failure(report, error, nvml.get("detail", ""), kernel, pci, nodes, facts)
        return False
    gpus = nvml.get("gpus") or []
    if not gpus:
        _no_gpu(report, facts)
        return False
    if kernel and kernel.get("version") and kernel["version"] != nvml.get("driver"):
        report.add("driver-mismatch", "error",
                   f"the loaded kernel module is {kernel['version']} but the NVML library is {nvml.get('driver')}: "
                   "the driver was upgraded without a reboot", "sudo reboot")  # fmt: skip
        return False
    if kernel and not nodes:
        report.add("no-device-nodes", "warning", "the driver is loaded but /dev/nvidia* do not exist",
                   "sudo nvidia-modprobe -u -c=0 (or run `sudo nvidia-smi` once)")  # fmt: skip
    torch = facts.get("torch") or {}
    ok = True
    if torch.get("cuda"):
        verdict, wanted = compat.driver_verdict(nvml["driver"], torch["cuda"])
        if verdict == "too-old":
            index = _best_index(nvml.get("cuda_driver"))
            report.add("driver-too-old", "error",
                       f"driver {nvml['driver']} (CUDA {nvml.get('cuda_driver')} at most) is too old for torch "
                       f"{torch.get('version')} built for CUDA {torch['cuda']}, which needs >= {wanted}",
                       f"upgrade the driver to >= {wanted} (e.g. sudo apt install nvidia-driver-{wanted.split('.')[0]}"
                       f" && sudo reboot), or install a torch build your driver supports: {index}")  # fmt: skip
            ok = False
        elif verdict == "minor-compat":
            report.add("driver-minor-compat", "warning",
                       f"driver {nvml['driver']} runs torch's CUDA {torch['cuda']} only through minor version "
                       f"compatibility (full support needs >= {wanted}); PTX JIT of newer kernels will fail",
                       f"upgrade the driver to >= {wanted} when you can")  # fmt: skip
    elif torch.get("installed") and not torch.get("hip") and not torch.get("import_error"):
        report.add("torch-cpu-build", "error",
                   f"torch {torch.get('version')} is a CPU-only build, so it cannot use the {len(gpus)} GPU(s)",
                   _best_index(nvml.get("cuda_driver")))  # fmt: skip
        ok = False
    if deep and torch and not torch.get("import_error"):
        ok = _deep_verdicts(report, torch, gpus) and ok
    for gpu in gpus:
        if gpu.get("mig_enabled") and not gpu.get("mig_devices"):
            report.add("mig-no-instances", "warning", f"GPU {gpu['index']} is in MIG mode but has no MIG instances",
                       "sudo nvidia-smi mig -cgi <profiles> -C, or sudo nvidia-smi -i N -mig 0")  # fmt: skip
    names = ", ".join(sorted({g["name"] for g in gpus}))
    report.add(
        "gpus", "info", f"{len(gpus)} GPU(s): {names}; driver {nvml['driver']}, CUDA {nvml.get('cuda_driver')} max"
    )
    return ok


def _nvml_failure(report, error, detail, kernel, pci, nodes, facts) -> None:
    if error == "bindings-missing":
        if kernel or nodes or pci:
            report.add("nvml-bindings-missing", "warning", "nvidia-ml-py is not installed, so GPU readings are missing",
                       "pip install nvidia-ml-py")  # fmt: skip
        else:
            _no_gpu(report, facts)
    elif error == "library-missing":
        if kernel:
            major = (kernel.get("version") or "").split(".")[0] or "<version>"
            report.add("nvml-library-missing", "error",
                       f"the kernel driver {kernel.get('version')} is loaded but libnvidia-ml.so is missing",
                       f"install the driver's user-space libraries: sudo apt install nvidia-utils-{major} "
                       "(or reinstall the same driver version)")  # fmt: skip
        elif pci:
            report.add("driver-not-installed", "error",
                       f"NVIDIA GPU(s) at PCI {', '.join(pci)} but no NVIDIA driver is loaded",
                       "sudo ubuntu-drivers install (or sudo apt install nvidia-driver-580) "
                       "&& sudo reboot")  # fmt: skip
        else:
            _no_gpu(report, facts)
    elif error == "driver-not-loaded":
        report.add("driver-not-loaded", "error", "the NVIDIA kernel module is not loaded (NVML: driver not loaded)",
                   "sudo modprobe nvidia; if that fails check `dmesg | grep -i nvidia` (Secure Boot may block "
                   "unsigned modules) and reinstall the driver")  # fmt: skip
    elif error == "version-mismatch":
        loaded = kernel.get("version") if kernel else "unknown"
        report.add("driver-mismatch", "error",
                   f"driver/library version mismatch: the kernel module is {loaded} but the user-space "
                   "library is a different version (the driver was upgraded without a reboot)",
                   "sudo reboot (or unload and reload: sudo rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia "
                   "&& sudo modprobe nvidia)")  # fmt: skip
    elif error == "no-permission":
        report.add("gpu-permission", "error", "NVML is not allowed to open /dev/nvidia*",
                   "add yourself to the group owning /dev/nvidia* (often `video`): "
                   "sudo usermod -aG video $USER")  # fmt: skip
    else:
        report.add("nvml-error", "error", f"NVML failed: {detail}", "run nvidia-smi to see the driver's own error")


def _no_gpu(report: Report, facts: dict[str, Any]) -> None:
    cpu = facts.get("cpu") or {}
    flags = cpu.get("ml_flags") or []
    fast = [f for f in flags if f.startswith(("avx512", "amx", "avx_vnni"))]
    report.add("no-gpu", "info",
               f"no NVIDIA GPU: training runs on the CPU ({cpu.get('usable_cores')} cores"
               f"{', ' + ', '.join(fast) if fast else ''}). Tabular models, small MLPs and small CNNs train fine; "
               "large CNNs, transformers and anything over ~10M parameters will be slow",
               "for big models use a GPU machine (then run `loopml doctor` there)")  # fmt: skip


def _deep_verdicts(report: Report, torch: dict[str, Any], gpus: list[dict]) -> bool:
    ok = True
    if not torch.get("available"):
        report.add("torch-no-cuda", "error",
                   f"torch.cuda.is_available() is False ({torch.get('cuda_error') or 'no reason given'})",
                   "check the driver findings above; then reinstall torch for your CUDA")  # fmt: skip
        return False
    arch_list = torch.get("arch_list") or []
    for gpu in gpus:
        capability = tuple(gpu["compute_capability"])
        if arch_list and not compat.arch_supported(capability, arch_list):
            arch = compat.ARCHITECTURES.get(capability[0], "this")
            report.add("arch-missing", "error",
                       f"torch {torch.get('version')} has no kernels for {gpu['name']} (compute capability "
                       f"{capability[0]}.{capability[1]}, {arch}); its arch list is {' '.join(arch_list)}",
                       compat.wheel_advice(capability))  # fmt: skip
            ok = False
    checks = torch.get("checks") or {}
    if checks and not checks.get("matmul"):
        report.add("cuda-matmul-failed", "error", f"a CUDA matmul failed: {checks.get('matmul_error')}",
                   "check `dmesg` for Xid errors; reinstall torch for your CUDA")  # fmt: skip
        ok = False
    if torch.get("cudnn_error") or (checks and not checks.get("cudnn_conv")):
        reason = torch.get("cudnn_error") or checks.get("cudnn_conv_error")
        report.add("cudnn-unusable", "error", f"cuDNN is unusable: {reason}",
                   "pip install --force-reinstall torch (its wheel bundles cuDNN); remove other cuDNN copies "
                   "from LD_LIBRARY_PATH")  # fmt: skip
        ok = False
    if checks and not checks.get("bf16_autocast"):
        report.add("no-bf16", "info", "this GPU has no bf16: loopml trains with fp16 autocast and loss scaling")
    if checks.get("matmul"):
        bf16 = "ok" if checks.get("bf16_autocast") else "unavailable"
        report.add("cuda-works", "info", f"CUDA matmul ok ({checks.get('matmul_ms', 0):.1f} ms for 1024²), "
                   f"bf16 autocast {bf16}, cuDNN {torch.get('cudnn')}")  # fmt: skip
    return ok


def _torch_verdicts(report: Report, facts: dict[str, Any], torch: dict[str, Any] | None) -> bool:
    if torch is None:
        report.add("torch-missing", "warning", "PyTorch is not installed: only scikit-learn models can train",
                   "pip install torch  (CPU build: pip install torch "
                   "--index-url https://download.pytorch.org/whl/cpu)")  # fmt: skip
        return "scikit-learn" in (facts.get("packages") or {})
    problem = torch.get("error") or torch.get("import_error")
    if problem:
        report.add("torch-broken", "error", f"PyTorch is installed but broken: {problem}",
                   "pip install --force-reinstall torch")  # fmt: skip
        return False
    return True


def _container_verdicts(report: Report, facts: dict[str, Any]) -> bool:
    docker = facts.get("docker") or {}
    toolkit = facts.get("container_toolkit") or {}
    if not docker.get("client"):
        report.add("docker-missing", "info", "Docker is not installed: GPU containers are not available",
                   "install Docker Engine (https://docs.docker.com/engine/install/)")  # fmt: skip
        return False
    if not docker.get("daemon"):
        report.add("docker-daemon-down", "warning", f"the Docker daemon does not answer: {docker.get('daemon_error')}",
                   "sudo systemctl start docker; sudo usermod -aG docker $USER (then log in again)")  # fmt: skip
        return False
    if not toolkit.get("nvidia_ctk"):
        report.add("container-toolkit-missing", "warning", "the NVIDIA Container Toolkit is not installed",
                   "install nvidia-container-toolkit (https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/"
                   "latest/install-guide.html), then sudo nvidia-ctk runtime configure --runtime=docker && "
                   "sudo systemctl restart docker")  # fmt: skip
        return False
    if not docker.get("nvidia_runtime"):
        report.add("container-runtime-unconfigured", "warning",
                   "the NVIDIA Container Toolkit is installed but Docker has no `nvidia` runtime",
                   "sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker")  # fmt: skip
        return False
    if toolkit.get("nvidia_container_cli") and not toolkit.get("nvidia_container_cli_ok"):
        report.add("container-cli-failed", "warning",
                   f"nvidia-container-cli info failed: {toolkit.get('nvidia_container_cli_error')}",
                   "check the driver findings; sudo nvidia-ctk runtime configure --runtime=docker")  # fmt: skip
        return False
    return True


def _resource_verdicts(report: Report, facts: dict[str, Any]) -> None:
    disk = facts.get("disk") or {}
    free = disk.get("free_gib")
    if free is not None and free < NO_DISK_GIB:
        report.add("disk-full", "error", f"only {free} GiB free at {disk.get('path')}",
                   "free space: pip cache purge; docker system prune; remove old .loopml/artifacts")  # fmt: skip
    elif free is not None and free < LOW_DISK_GIB:
        report.add("disk-low", "warning", f"only {free} GiB free at {disk.get('path')} (CUDA wheels need ~5 GiB)",
                   "pip cache purge; docker system prune")  # fmt: skip
    memory = facts.get("memory") or {}
    if memory.get("total_gib") and memory["total_gib"] < 4:
        report.add("memory-low", "warning", f"only {memory['total_gib']} GiB of RAM", "use smaller batches")
    _store_verdicts(report, facts.get("mlflow"))


def _store_verdicts(report: Report, store: dict[str, Any] | None) -> None:
    if not store:
        return
    if store["answers"] is False:
        report.add("mlflow-unreachable", "warning",
                   f"the MLflow tracking store {store['tracking']} does not answer ({store['error']})",
                   "start the server, fix MLFLOW_TRACKING_URI (environment or the project's .env), or unset it "
                   "to use the project's SQLite store")  # fmt: skip
        return
    if store["artifacts_answer"] is False:
        report.add("artifacts-unreachable", "warning",
                   f"the MLflow server {store['tracking']} answers, but its artifact store does not "
                   f"({store['error']})",
                   "check the server's --artifacts-destination: the bucket must exist and the server's "
                   "AWS_* credentials and MLFLOW_S3_ENDPOINT_URL must be right")  # fmt: skip
        return
    report.add("mlflow-store", "info", f"runs and models in {store['tracking']}; artifacts in "
               f"{store['artifacts'] or 'the experiment default (none created yet)'}")  # fmt: skip


def _best_index(max_cuda: str | None) -> str:
    """The PyTorch wheel index for the newest CUDA this driver runs (minor version
    compatibility lets any 12.x build run on a 12.x driver, and so on)."""
    if max_cuda:
        major = compat.version_tuple(max_cuda)[0]
        for cuda in TORCH_CUDA_INDEXES:
            if compat.version_tuple(cuda)[0] <= major:
                tag = cuda.replace(".", "")
                return f"pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu{tag}"
    return "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu118"
