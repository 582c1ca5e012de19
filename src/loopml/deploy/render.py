"""`loopml deploy render TARGET`: write a deployment recipe from the bundled templates.

Targets are folders under `templates/`; each file is rendered with Jinja2 (`{{ ... }}`),
with `${...}` left alone for Docker Compose and the shell.
"""

from __future__ import annotations

import stat
from importlib import resources
from pathlib import Path
from typing import Any

from loopml.errors import ConfigError

TARGETS = {"devenv": "a GPU deep-learning dev environment: CUDA + cuDNN, PyTorch, JupyterLab, SSH (compose)"}
# CUDA 12.x images of nvidia/cuda and the PyTorch wheel index built for each.
CUDA_TORCH_INDEX = {"12.6": "cu126", "12.8": "cu128", "12.9": "cu129"}
DEFAULT_CUDA = "12.8.1"
EXECUTABLE = {"entrypoint.sh"}


def render(target: str, out: Path, force: bool = False, cuda: str = DEFAULT_CUDA, user: str = "dev") -> dict[str, Any]:
    if target not in TARGETS:
        raise ConfigError(f'unknown deploy target "{target}"; expected one of {", ".join(TARGETS)}')
    minor = ".".join(cuda.split(".")[:2])
    if minor not in CUDA_TORCH_INDEX or len(cuda.split(".")) != 3:
        raise ConfigError(
            f'--cuda must be a full CUDA 12.x image version like "12.8.1"; got "{cuda}" '
            f"(PyTorch publishes wheels for {', '.join(CUDA_TORCH_INDEX)})"
        )
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} is not empty; choose another --out or pass --force to overwrite its files")
    import jinja2

    env = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    context = {"cuda": cuda, "cuda_minor": minor, "torch_index": f"https://download.pytorch.org/whl/{CUDA_TORCH_INDEX[minor]}",
               "user": user}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for template in sorted(resources.files("loopml.deploy").joinpath("templates", target).iterdir()):
        if template.name.startswith(("_", ".")) or template.is_dir():
            continue
        name = template.name.removesuffix(".j2")
        path = out / name
        path.write_text(env.from_string(template.read_text()).render(**context))
        if name in EXECUTABLE:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        written.append(name)
    return {"target": target, "out": str(out), "files": written, **context}
