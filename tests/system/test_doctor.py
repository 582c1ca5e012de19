"""`loopml doctor` against recorded machines, fake NVML states and fake tools on PATH.

Every verdict is driven through the real CLI: a system root built from the H100 recording
(`--root`), a fake `pynvml` (tests/fakes/nvml) and fake executables on PATH.
"""

import json
import time

import pytest

from tests.conftest import loopml
from tests.system import fakes


def doctor(tmp_path, *args, root=None, nvml=None, torch=None, tools=None):
    bin_dir = fakes.executables(tmp_path, tools) if tools else None
    argv = ["doctor", "--json", *args] + (["--root", str(root)] if root else [])
    proc = loopml(*argv, cwd=tmp_path, env=fakes.env(nvml, torch, bin_dir))
    return json.loads(proc.stdout)


def ids(report) -> dict[str, dict]:
    return {f["id"]: f for f in report["findings"]}


def test_this_machine_is_ready_for_cpu_training(tmp_path):
    started = time.perf_counter()
    report = loopml("doctor", cwd=tmp_path)
    assert time.perf_counter() - started < 20  # generous: only proves it does not hang
    assert "ready for" in report.stdout
    data = json.loads(loopml("doctor", "--json", cwd=tmp_path).stdout)
    assert data["schema"] == 1 and data["summary"]["level"] in (("cpu", "gpu", "containers") if fakes.GPU_HOST
                                                                else ("cpu",))  # fmt: skip
    assert set(data["facts"]) >= {"os", "cpu", "memory", "disk", "python", "packages", "driver", "gpus", "torch",
                                  "cuda_toolkit_host", "docker", "container_toolkit", "cluster", "mlflow"}  # fmt: skip
    assert all(p["ok"] for p in data["probes"].values()), data["probes"]
    if fakes.GPU_HOST:
        assert data["facts"]["gpus"] and "no-gpu" not in ids(data)
    else:
        assert data["facts"]["gpus"] == [] and "no-gpu" in ids(data)


def test_deep_imports_torch_in_a_subprocess(tmp_path):
    data = json.loads(loopml("doctor", "--deep", "--json", cwd=tmp_path).stdout)
    assert data["facts"]["torch"]["version"].startswith("2.")
    if not fakes.GPU_HOST:
        assert data["facts"]["torch"]["available"] is False and data["summary"]["line"] == "ready for CPU training"
    else:  # a CUDA build sees the GPU; the CPU build of `make setup` does not, and says why
        assert data["facts"]["torch"]["available"] in (True, False)


def test_recorded_h100_with_cuda13_torch_is_ready_for_gpu_training(tmp_path):
    report = doctor(tmp_path, root=fakes.h100_root(tmp_path), nvml=fakes.h100_nvml(tmp_path),
                    torch=fakes.fake_torch(tmp_path, "2.11.0+cu130", "13.0"),
                    tools={"docker": fakes.DOCKER_DAEMON_DOWN})  # fmt: skip
    facts = report["facts"]
    assert facts["driver"]["kernel_module"] == {"version": "580.159.04", "module": "open",
                                                "line": facts["driver"]["kernel_module"]["line"]}  # fmt: skip
    assert facts["driver"]["max_cuda"] == "13.0" and facts["os"]["distro"] == "Ubuntu 24.04.3 LTS"
    gpu = facts["gpus"][0]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" and gpu["compute_capability"] == [9, 0]
    assert gpu["persistence"] is True and gpu["ecc"] is True and gpu["power_limit_w"] == 700.0
    assert report["summary"] == {"level": "gpu", "line": "ready for GPU training"}
    assert "docker-daemon-down" in ids(report)


def test_proprietary_module_and_old_driver_for_cuda13_torch(tmp_path):
    root = fakes.h100_root(tmp_path, driver_line=fakes.PROPRIETARY)
    nvml = fakes.h100_nvml(tmp_path, driver="535.129.03", cuda_driver=12020)
    report = doctor(tmp_path, root=root, nvml=nvml, torch=fakes.fake_torch(tmp_path, "2.11.0+cu130", "13.0"))
    assert report["facts"]["driver"]["kernel_module"]["module"] == "proprietary"
    assert report["facts"]["driver"]["kernel_module"]["version"] == "535.129.03"
    finding = ids(report)["driver-too-old"]
    assert "needs >= 580.65.06" in finding["message"] and "nvidia-driver-580" in finding["fix"]
    assert "whl/cu128" in finding["fix"]  # the newest build a 12.x driver runs
    assert report["summary"]["level"] == "cpu" and "GPU is not usable yet" in report["summary"]["line"]


def test_minor_version_compatibility_is_a_warning(tmp_path):
    nvml = fakes.h100_nvml(tmp_path, driver="535.129.03", cuda_driver=12020)
    root = fakes.h100_root(tmp_path, driver_line=fakes.PROPRIETARY)
    report = doctor(tmp_path, root=root, nvml=nvml, torch=fakes.fake_torch(tmp_path, "2.7.0+cu128", "12.8"))
    assert ids(report)["driver-minor-compat"]["severity"] == "warning"
    assert report["summary"]["level"] == "gpu"


@pytest.mark.parametrize(
    ("init_error", "driver", "pci", "expected", "fix"),
    [
        (9, True, True, "driver-not-loaded", "sudo modprobe nvidia"),
        (18, True, True, "driver-mismatch", "sudo reboot"),
        (12, True, True, "nvml-library-missing", "nvidia-utils-580"),
        (12, False, True, "driver-not-installed", "sudo ubuntu-drivers install"),
        (12, False, False, "no-gpu", "GPU machine"),
        (4, True, True, "gpu-permission", "usermod -aG video"),
    ],
)
def test_each_nvml_failure_gets_its_own_fix(tmp_path, init_error, driver, pci, expected, fix):
    report = doctor(tmp_path, root=fakes.h100_root(tmp_path, driver=driver, pci=pci),
                    nvml=fakes.h100_nvml(tmp_path, init_error=init_error))  # fmt: skip
    assert fix in ids(report)[expected]["fix"]
    assert report["facts"]["gpus"] == []


def test_upgraded_driver_without_reboot(tmp_path):
    report = doctor(tmp_path, root=fakes.h100_root(tmp_path), nvml=fakes.h100_nvml(tmp_path, driver="580.95.05"),
                    torch=fakes.fake_torch(tmp_path, "2.11.0+cu130", "13.0"))  # fmt: skip
    finding = ids(report)["driver-mismatch"]
    assert "580.159.04" in finding["message"] and "580.95.05" in finding["message"] and finding["fix"] == "sudo reboot"


def test_cpu_only_torch_on_a_gpu_machine(tmp_path):
    report = doctor(tmp_path, root=fakes.h100_root(tmp_path), nvml=fakes.h100_nvml(tmp_path),
                    torch=fakes.fake_torch(tmp_path, "2.13.0+cpu", None))  # fmt: skip
    assert "whl/cu130" in ids(report)["torch-cpu-build"]["fix"]


def test_broken_torch_is_a_finding_not_a_crash(tmp_path):
    report = doctor(tmp_path, nvml=fakes.h100_nvml(tmp_path, init_error=12),
                    torch=fakes.fake_torch(tmp_path, "", None, broken=True))  # fmt: skip
    assert "torch-broken" in ids(report) and report["summary"]["level"] == "none"
    deep = doctor(tmp_path, "--deep", nvml=fakes.h100_nvml(tmp_path, init_error=12),
                  torch=fakes.fake_torch(tmp_path, "", None, broken=True))  # fmt: skip
    assert "fake torch: import is not allowed" in ids(deep)["torch-broken"]["message"]


@pytest.mark.parametrize(
    ("tools", "level", "finding"),
    [
        ({"docker": fakes.DOCKER_WITH_NVIDIA, "nvidia-ctk": fakes.NVIDIA_CTK}, "gpu-containers", None),
        ({"docker": fakes.DOCKER_NO_NVIDIA, "nvidia-ctk": fakes.NVIDIA_CTK}, "gpu", "container-runtime-unconfigured"),
        ({"docker": fakes.DOCKER_NO_NVIDIA}, "gpu", "container-toolkit-missing"),
    ],
)
def test_container_toolkit_verdicts(tmp_path, tools, level, finding):
    report = doctor(tmp_path, root=fakes.h100_root(tmp_path), nvml=fakes.h100_nvml(tmp_path),
                    torch=fakes.fake_torch(tmp_path, "2.11.0+cu130", "13.0"), tools=tools)  # fmt: skip
    assert report["summary"]["level"] == level
    if finding:
        assert "nvidia-ctk runtime configure --runtime=docker" in ids(report)[finding]["fix"]
    else:
        assert report["facts"]["docker"]["nvidia_runtime"] is True
        assert report["summary"]["line"] == "ready for GPU training and GPU containers"


def test_a_hanging_tool_times_out_as_a_finding(tmp_path):
    started = time.perf_counter()
    report = doctor(tmp_path, tools={"docker": "sleep 30"})
    assert time.perf_counter() - started < 15
    assert "timed out" in ids(report)["probe-docker"]["message"]
    assert report["summary"]["level"] == "cpu"
