"""`loopml doctor`: can this machine train and serve? Facts, verdicts and the commands that fix them."""

from __future__ import annotations

from pathlib import Path

import typer

from loopml.cli.output import console, emit_json

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(
    deep: bool = typer.Option(
        False, "--deep", help="Also import torch (in a subprocess) and run CUDA/bf16/cuDNN checks."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON (stable shape, see `schema`)."),
    root: Path = typer.Option(
        Path("/"),
        "--root",
        help="Read /proc, /sys, /dev and /etc under ROOT (a recorded machine or a chroot); "
        "commands and NVML still probe this machine.",
    ),
) -> None:
    """Check OS, CPU, driver, GPUs, the torch build, containers and MLflow; say what is wrong and how to fix it.

    Without --deep it never imports torch and answers in about a second, so it works exactly
    where the ML stack is broken. Exit code 0 whatever it finds: the summary line says what
    this machine is ready for.
    """
    from loopml.system.doctor import inspect

    report = inspect(root, Path.cwd(), deep=deep)
    if json_out:
        emit_json(report.as_dict())
        return
    _print(report)


def _print(report) -> None:
    from rich.table import Table
    from rich.text import Text

    facts = report.facts
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    os_info, cpu, mem, disk, py = (facts.get(k) or {} for k in ("os", "cpu", "memory", "disk", "python"))
    table.add_row("OS", f"{os_info.get('distro')} · kernel {os_info.get('kernel')} · {os_info.get('arch')}"
                  + (" · container" if os_info.get("container") else ""))  # fmt: skip
    table.add_row(
        "CPU",
        f"{cpu.get('model')} · {cpu.get('usable_cores')} cores · {_flags(cpu.get('ml_flags'))}",
    )
    memory = "unknown" if mem.get("total_gib") is None else f"{mem['total_gib']} GiB ({mem['available_gib']} available)"
    table.add_row("Memory", memory)
    table.add_row("Disk", f"{disk.get('free_gib')} GiB free of {disk.get('total_gib')} at {disk.get('path')}")
    table.add_row("Python", f"{py.get('version')} ({py.get('environment')}) {py.get('executable')}")
    packages = facts.get("packages") or {}
    table.add_row("Packages", ", ".join(f"{k} {v}" for k, v in packages.items()) or "none of the ML stack")
    driver = facts.get("driver") or {}
    module = driver.get("kernel_module") or {}
    table.add_row("Driver", f"{module.get('version') or driver.get('nvml_driver') or 'none'}"
                  + (f" ({module.get('module')} module)" if module else "")
                  + (f" · CUDA {driver['max_cuda']} max" if driver.get("max_cuda") else ""))  # fmt: skip
    for gpu in facts.get("gpus") or []:
        cc = ".".join(map(str, gpu.get("compute_capability") or []))
        table.add_row(f"GPU {gpu['index']}", f"{gpu['name']} · {gpu['memory_total_mib']} MiB · cc {cc} · "
                      f"MIG {'on' if gpu.get('mig_enabled') else 'off'} · persistence {_onoff(gpu.get('persistence'))}"
                      f" · ECC {_onoff(gpu.get('ecc'))} · power limit {gpu.get('power_limit_w')} W")  # fmt: skip
    torch = facts.get("torch") or {}
    if torch:
        build = (
            f"CUDA {torch['cuda']}" if torch.get("cuda") else (f"ROCm {torch['hip']}" if torch.get("hip") else "CPU")
        )
        extra = ""
        if "available" in torch:
            arch = " ".join(torch.get("arch_list") or [])
            extra = f" · sees GPUs: {torch.get('available')} · cuDNN {torch.get('cudnn')} · arch {arch}"
        table.add_row("PyTorch", f"{torch.get('version')} ({build} build){extra}")
    else:
        table.add_row("PyTorch", "not installed")
    nvcc = facts.get("cuda_toolkit_host")
    table.add_row(
        "Host CUDA", f"nvcc {nvcc['nvcc']} (the host's toolkit; PyTorch wheels bring their own)" if nvcc else "no nvcc"
    )
    docker = facts.get("docker") or {}
    toolkit = facts.get("container_toolkit") or {}
    runtime = "yes" if docker.get("nvidia_runtime") else "no"
    table.add_row("Docker", f"client {docker.get('client') or '—'} · daemon {docker.get('daemon') or '—'} · "
                  f"nvidia runtime {runtime} · nvidia-ctk {toolkit.get('nvidia_ctk') or '—'}")  # fmt: skip
    cluster = facts.get("cluster") or {}
    table.add_row("Cluster", " · ".join(f"{k} {v or '—'}" for k, v in cluster.items()))
    mlflow = facts.get("mlflow")
    if mlflow:
        table.add_row("MLflow", f"{mlflow['uri']} · answers: {mlflow.get('answers')}")
    console.print(table)
    console.print()
    for finding in report.findings:
        style = SEVERITY_STYLE[finding.severity]
        console.print(Text.assemble((f"{finding.severity:7s} ", style), finding.message))
        if finding.fix:
            console.print(Text.assemble(("        fix: ", "bold"), finding.fix))
    style = {"none": "bold red", "cpu": "bold cyan"}.get(report.level, "bold green")
    console.print()
    console.print(Text(report.line, style=style))


def _flags(flags: list[str] | None) -> str:
    if flags is None:
        return "flags unknown"
    return " ".join(flags) or "no AVX2"


def _onoff(value) -> str:
    return "—" if value is None else ("on" if value else "off")
