"""`loopml gpu`: a live NVML view of the GPUs, and a DCGM-compatible Prometheus exporter."""

from __future__ import annotations

import time

import typer

from loopml.cli.output import console, emit_json, err

app = typer.Typer(help="GPU readings: utilization, memory, temperature, power, clocks, processes.",
                  invoke_without_command=True)  # fmt: skip


@app.callback()
def gpu(
    ctx: typer.Context,
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh in place until Ctrl-C."),
    interval: float = typer.Option(1.0, "--interval", help="Seconds between refreshes with --watch."),
    json_out: bool = typer.Option(False, "--json", help="Print the readings as JSON (an empty list without GPUs)."),
) -> None:
    """Per GPU: utilization, memory used/total, temperature, power/limit, clocks, MIG devices and
    processes (loopml's own marked). Exit 0 with a plain message when there is no GPU."""
    if ctx.invoked_subcommand:
        return
    from loopml.system import nvidia

    def read():
        try:
            return nvidia.nvml_snapshot(), None
        except nvidia.NvmlUnavailable as exc:
            return {"gpus": [], "driver": None, "cuda_driver": None}, exc

    snapshot, problem = read()
    if json_out:
        emit_json(snapshot["gpus"])
        return
    if problem and not watch:
        console.print(f"No GPU readings: {_plain(problem)}. `loopml doctor` says why and how to fix it.")
        return
    if not watch:
        console.print(_view(snapshot))
        return
    import signal
    import threading

    from rich.live import Live

    # Ctrl-C sets a flag the loop checks, rather than raising KeyboardInterrupt wherever the main
    # thread happens to be (inside Rich's Live, that could leave its refresh thread waiting)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    err.print(f"refreshing every {interval:g} s; Ctrl-C stops")
    with Live(_view(snapshot), console=console, refresh_per_second=4, screen=False) as live:
        while not stop.wait(interval):
            snapshot, problem = read()
            live.update(_view(snapshot, problem))


@app.command("export")
def export(
    port: int = typer.Option(9400, "--port", help="Port to serve /metrics on (dcgm-exporter's default)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 0.0.0.0 exposes it to the network."),
) -> None:
    """Serve GPU readings to Prometheus under the DCGM exporter's names (DCGM_FI_DEV_GPU_UTIL, ...)."""
    from loopml.system.exporter import serve

    server, _ = serve(port, host)
    console.print(f"GPU exporter on http://{host}:{port}/metrics (DCGM-compatible names); Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()


def _view(snapshot, problem=None):
    from rich.console import Group
    from rich.table import Table

    if problem or not snapshot["gpus"]:
        return f"No GPU readings: {_plain(problem) if problem else 'no NVIDIA GPU found'}"
    table = Table(title=f"driver {snapshot['driver']} · CUDA {snapshot['cuda_driver']} max", title_justify="left")
    for column in ("GPU", "name", "util", "memory", "temp", "power", "SM / mem clock", "MIG"):
        table.add_column(column)
    processes = Table(title="processes", title_justify="left")
    for column in ("GPU", "pid", "memory", "command"):
        processes.add_column(column)
    for gpu in snapshot["gpus"]:
        used, total = gpu["memory_used_mib"], gpu["memory_total_mib"]
        table.add_row(
            str(gpu["index"]), gpu["name"], _pct(gpu.get("utilization_gpu")),
            f"{used:,} / {total:,} MiB {_bar(used, total)}",
            f"{gpu.get('temperature_c')} °C", f"{gpu.get('power_w')} / {gpu.get('power_limit_w')} W",
            f"{gpu.get('sm_clock_mhz')} / {gpu.get('mem_clock_mhz')} MHz",
            f"{len(gpu['mig_devices'])} instances" if gpu.get("mig_enabled") else "off",
        )  # fmt: skip
        for mig in gpu.get("mig_devices") or []:
            table.add_row(f"  {gpu['index']}.{mig['index']}", "MIG instance", "", f"{mig.get('memory_used_mib')} / "
                          f"{mig.get('memory_total_mib')} MiB", "", "", "", "")  # fmt: skip
        for proc in gpu.get("processes") or []:
            mark = "[bold green]loopml[/] " if proc.get("loopml") else ""
            processes.add_row(str(gpu["index"]), str(proc["pid"]), f"{proc.get('memory_mib')} MiB",
                              mark + (proc.get("command") or "")[:80])  # fmt: skip
    return Group(table, processes) if processes.row_count else table


def _pct(value) -> str:
    return "—" if value is None else f"{value}%"


def _bar(used: int, total: int, width: int = 10) -> str:
    filled = round(width * used / total) if total else 0
    return "█" * filled + "░" * (width - filled)


def _plain(problem) -> str:
    return {"bindings-missing": "nvidia-ml-py is not installed", "library-missing": "no NVIDIA driver (NVML) here",
            "driver-not-loaded": "the NVIDIA driver is not loaded"}.get(problem.kind, str(problem))  # fmt: skip
