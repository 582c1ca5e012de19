"""What the installed PyTorch was built for — without importing it in this process.

The quick path reads `torch/version.py` as text (version, CUDA and HIP builds). `deep()`
imports torch in a subprocess with a timeout and runs a small CUDA matmul, a bf16 autocast
check and a cuDNN convolution, so a broken or hanging torch is a finding, not a crash.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

DEEP_TIMEOUT = 60.0  # first CUDA context creation can take tens of seconds on a cold GPU

_DEEP_SCRIPT = r"""
import json, time
out = {}
try:
    import torch
except Exception as exc:
    print(json.dumps({"import_error": f"{type(exc).__name__}: {exc}"})); raise SystemExit
out.update(version=torch.__version__, cuda=torch.version.cuda, hip=torch.version.hip,
           arch_list=torch.cuda.get_arch_list() if torch.backends.cuda.is_built() else [])
try:
    out["cudnn"] = torch.backends.cudnn.version()
except Exception as exc:
    out["cudnn_error"] = f"{type(exc).__name__}: {exc}"
try:
    out["available"] = torch.cuda.is_available()
    out["device_count"] = torch.cuda.device_count()
except Exception as exc:
    out["available"], out["cuda_error"] = False, f"{type(exc).__name__}: {exc}"
if out.get("available"):
    checks = {}
    try:
        a = torch.randn(1024, 1024, device="cuda"); torch.cuda.synchronize()
        start = time.perf_counter(); (a @ a).sum().item(); checks["matmul_ms"] = (time.perf_counter() - start) * 1e3
        checks["matmul"] = True
    except Exception as exc:
        checks["matmul"], checks["matmul_error"] = False, f"{type(exc).__name__}: {exc}"
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = torch.randn(64, 64, device="cuda") @ torch.randn(64, 64, device="cuda")
        checks["bf16_autocast"] = y.dtype == torch.bfloat16 and torch.cuda.is_bf16_supported()
    except Exception as exc:
        checks["bf16_autocast"], checks["bf16_error"] = False, f"{type(exc).__name__}: {exc}"
    try:
        conv = torch.nn.Conv2d(3, 8, 3).cuda()
        conv(torch.randn(2, 3, 16, 16, device="cuda")).sum().item()
        checks["cudnn_conv"] = True
    except Exception as exc:
        checks["cudnn_conv"], checks["cudnn_conv_error"] = False, f"{type(exc).__name__}: {exc}"
    out["checks"] = checks
    out["devices"] = [{"name": torch.cuda.get_device_name(i),
                       "capability": list(torch.cuda.get_device_capability(i))}
                      for i in range(torch.cuda.device_count())]
print(json.dumps(out))
"""


def quick() -> dict[str, Any] | None:
    """torch's version and build from its version.py; None when torch is not installed."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    if not version_file.is_file():
        return {"installed": True, "error": f"{version_file} is missing: the torch install is broken"}
    text = version_file.read_text(errors="replace")

    def field(name: str) -> str | None:
        match = re.search(rf"^{name}(?::[^=]*)?\s*=\s*'([^']*)'", text, re.MULTILINE)
        return match[1] if match else None

    return {"installed": True, "version": field("__version__"), "cuda": field("cuda"), "hip": field("hip"),
            "location": str(version_file.parent)}  # fmt: skip


def deep(timeout: float = DEEP_TIMEOUT) -> dict[str, Any]:
    """Import torch in a subprocess and exercise the GPU; failures come back as fields."""
    try:
        done = subprocess.run([sys.executable, "-c", _DEEP_SCRIPT], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"import_error": f"importing torch or touching the GPU took over {timeout:.0f}s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"import_error": f"the torch probe crashed (exit {done.returncode}): {tail}"}
    return json.loads(lines[-1])
