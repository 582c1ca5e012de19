"""The serving image's build context (`loopml deploy render serve`): the chosen registered version
exported from the registry into the context (or pulled at start), its pinned requirements, a
loopml wheel, and the facts the Dockerfile's labels and base image are chosen from.

The context is complete without a registry or the project: `pip install -r requirements.txt
wheels/*.whl` then `loopml serve --model model` is the whole image, which is what the tests build
(as a venv: there is no container engine on these machines).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loopml.errors import ConfigError
from loopml.project import Project

# PyTorch wheel indexes by CUDA minor version, and the nvidia/cuda runtime image for each.
CUDA_IMAGES = {"12.6": "12.6.3", "12.8": "12.8.1", "12.9": "12.9.1", "13.0": "13.0.2"}
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class ImageFacts:
    """What the Dockerfile is rendered from."""

    name: str
    version: str
    alias: str
    run_id: str
    data_digest: str
    git_commit: str
    python: str  # major.minor the model was trained with
    torch: str | None  # the model's torch build ("2.13.0+cpu"), None for a scikit-learn model
    cuda: str | None  # the nvidia/cuda image version for --gpu, else None
    torch_index: str | None  # the PyTorch wheel index the image installs torch from
    pulled: bool  # the model is pulled from the registry at start, not copied in


def export(project: Project, ref_text: str | None, out: Path, gpu: bool, pull: bool) -> ImageFacts:
    """Write model/ (unless pulled), requirements.txt and wheels/ into `out`; the facts for the Dockerfile."""
    facts, mlflow_model, package = _resolve(project, ref_text, gpu, pull)
    out.mkdir(parents=True, exist_ok=True)
    if not pull:
        if (out / "model").exists():
            shutil.rmtree(out / "model")
        shutil.copytree(package, out / "model")
    requirements = (mlflow_model / "requirements.txt").read_text() if (mlflow_model / "requirements.txt").is_file() \
        else ""  # fmt: skip
    (out / "requirements.txt").write_text(_requirements(requirements, gpu))
    loopml_wheel(out / "wheels")
    return facts


def describe(project: Project, ref_text: str | None, gpu: bool) -> ImageFacts:
    """The facts of the version an image ships, without writing anything (compose and k8s name its tag)."""
    return _resolve(project, ref_text, gpu, pull=False)[0]


def _resolve(project: Project, ref_text: str | None, gpu: bool, pull: bool) -> tuple[ImageFacts, Path, Path]:
    """The chosen registered version's facts, its MLflow model folder and its loopml package folder."""
    from loopml.contracts import Tag
    from loopml.registry import Registry
    from loopml.uri import ModelRef

    registry = Registry.of(project)
    ref = ModelRef.parse(ref_text, default=project.config.name)
    if not ref.in_registry:
        raise ConfigError(f"--model {ref_text}: the image ships a registered version; pass NAME@ALIAS or "
                          "models:/NAME/VERSION (register the model first: loopml run)")  # fmt: skip
    if ref.name != project.config.name:
        raise ConfigError(f"--model {ref_text}: this project registers {project.config.name!r}; "
                          f"use {project.config.name}@ALIAS or models:/{project.config.name}/VERSION")  # fmt: skip
    version = registry.resolve(ref)
    described = registry.describe(version)
    mlflow_model, package = registry.export(version)
    environment = json.loads((package / "environment.json").read_text()) if (package / "environment.json").is_file() \
        else {}  # fmt: skip
    packages = environment.get("packages", {})
    meta = json.loads((package / "loopml-model.json").read_text())
    # a torch model, also as an ONNX variant: the image's torch (loopml needs it) matches the training build
    torch = packages.get("torch") if meta.get("kind") == "torch" else None
    cuda = _cuda_image(torch) if gpu else None
    python = ".".join(str(packages.get("python", f"{sys.version_info[0]}.{sys.version_info[1]}")).split(".")[:2])
    # loopml itself depends on torch: a CPU image takes PyTorch's CPU build (PyPI's Linux wheel carries CUDA)
    index = f"https://download.pytorch.org/whl/cu{cuda.replace('.', '')}" if cuda else CPU_TORCH_INDEX
    facts = ImageFacts(
        name=ref.name, version=version, alias=ref.alias or "", run_id=described.run_id or "",
        data_digest=described.data_digest, git_commit=described.tags.get(Tag.GIT_COMMIT, "") or _git_head(project),
        python=python, torch=torch, cuda=CUDA_IMAGES[cuda] if cuda else None, torch_index=index, pulled=pull,
    )  # fmt: skip
    return facts, mlflow_model, package


def _cuda_image(torch: str | None) -> str:
    """The CUDA minor version of the model's torch build, for an image that matches it."""
    if torch is None:
        raise ConfigError("--gpu: this model is a scikit-learn model and runs on CPU only; render without --gpu")
    local = torch.partition("+")[2]
    if local == "cpu":
        raise ConfigError(f"--gpu: the model was trained with a CPU-only PyTorch build ({torch}); render "
                          "without --gpu, or retrain with a CUDA build (make setup TORCH_SPEC=torch)")  # fmt: skip
    if not local.startswith("cu"):
        return "12.8"  # PyPI's default Linux build of recent torch is CUDA 12.8
    digits = local.removeprefix("cu")
    minor = f"{digits[:-1]}.{digits[-1]}"
    if minor not in CUDA_IMAGES:
        raise ConfigError(f"--gpu: the model's PyTorch build is for CUDA {minor} ({torch}); images are rendered for "
                          f"CUDA {', '.join(CUDA_IMAGES)}: retrain with one of those builds")  # fmt: skip
    return minor


def _requirements(text: str, gpu: bool = False) -> str:
    """The model's pinned requirements, minus what the image provides otherwise (loopml comes as a wheel);
    on a GPU image ONNX Runtime is its CUDA build (same version), so an ONNX variant runs on the GPU."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    kept = [line for line in lines if not line.lower().startswith(("loopml==", "loopml "))]
    if gpu:
        kept = [("onnxruntime-gpu" + line[len("onnxruntime"):]) if line.lower().startswith("onnxruntime==") else line
                for line in kept]  # fmt: skip
    return "# the model's pinned requirements (from its MLflow requirements.txt); loopml comes from wheels/\n" + \
        "\n".join(kept) + "\n"  # fmt: skip


def loopml_wheel(folder: Path) -> None:
    """loopml itself as a wheel (it serves the model): built from the source tree this loopml runs from.

    Built from a copy of the tree: setuptools builds in the tree's build/ folder, which two renders
    running at once (or a developer's own build) would share."""
    import tempfile

    import loopml

    source = Path(loopml.__file__).resolve().parents[2]
    if not (source / "pyproject.toml").is_file():
        raise ConfigError(f"loopml runs from an installed wheel ({source}), not a source tree: put that wheel in "
                          f"{folder} by hand (pip download loopml --no-deps -d {folder})")  # fmt: skip
    if folder.exists():
        shutil.rmtree(folder)
    with tempfile.TemporaryDirectory(prefix="loopml-wheel-") as scratch:
        tree = Path(scratch) / "src-tree"
        tree.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (source / name).is_file():
                shutil.copy2(source / name, tree / name)
        shutil.copytree(source / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                               str(folder), str(tree)], capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise ConfigError(f"could not build loopml's wheel from {source}: {done.stderr.strip()[-500:]}")


def _git_head(project: Project) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project.root, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""
