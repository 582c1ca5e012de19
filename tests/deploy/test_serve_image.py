"""`loopml deploy render serve`: the serving image's build context for the digits champion.

No container engine runs here, so the image is not built. What is proven instead: hadolint passes
the Dockerfile; the context is complete, because a fresh venv holding only the context's
`requirements.txt` and `wheels/` serves the context's `model/` from outside the project, and an
unmodified tritonclient gets answers equal to offline predictions; rendering touches nothing in
the project outside `--out`; bad choices are refused with the choices named."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import BIN, free_port, loopml, loopml_json, wait_ready

pytestmark = pytest.mark.slow


def snapshot(project: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(project)): (p.stat().st_size, p.stat().st_mtime_ns) for p in project.rglob("*")
            if p.is_file() and ".loopml" not in p.parts and ".dvc" not in p.parts}  # fmt: skip


def test_the_image_context_is_complete_and_hadolint_clean(digits_run, tmp_path):
    before = snapshot(digits_run)
    context = tmp_path / "image"
    result = loopml_json("deploy", "render", "serve", "--out", str(context), cwd=digits_run)
    assert snapshot(digits_run) == before  # nothing in the project changed
    assert result["name"] == "digits" and result["version"] == "1" and result["alias"] == "champion"
    assert {"Dockerfile", ".dockerignore", "README.md", "requirements.txt", "wheels/", "model/"} <= set(result["files"])
    dockerfile = (context / "Dockerfile").read_text()
    lint = subprocess.run([str(BIN / "hadolint"), str(context / "Dockerfile")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for expected in ("FROM python:3.11-slim AS build", "USER 10001", "HEALTHCHECK", "/v2/health/ready", "tini",
                     f'ai.loopml.model.run_id="{result["run_id"]}"', "download.pytorch.org/whl/cpu",
                     "COPY model/ /srv/digits/model/",
                     'CMD ["loopml", "serve", "--model", "/srv/digits/model"'):  # fmt: skip
        assert expected in dockerfile, expected
    runtime = json.loads((context / "model" / "loopml-model.json").read_text()).get("runtime", "torch")
    # the model's own requirements: an ONNX variant (what optimize chose) needs ONNX Runtime, not torch
    pin = "onnxruntime==" if runtime == "onnxruntime" else "torch==2.13.0"
    assert pin in (context / "requirements.txt").read_text()
    assert (context / "model" / "loopml-model.json").is_file()

    # the context's Python environment, built as the Dockerfile builds it, serves model/ on its own.
    # The Dockerfile takes torch from download.pytorch.org's CPU index; PyPI's Linux wheel is the CUDA
    # build (4.5 GB more), so a constraint pins the build this venv runs (the CPU one `make setup`
    # installs). --no-compile: bytecode is written on import instead of for every installed file.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheels = [str(w) for w in (context / "wheels").glob("*.whl")]
    torch = importlib.metadata.version("torch").partition("+")[0]
    (tmp_path / "constraints.txt").write_text(f"torch=={torch}\n")
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-compile", "-c",
                          str(tmp_path / "constraints.txt"), "-r", str(context / "requirements.txt"), *wheels],
                         capture_output=True, text=True)  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-2000:]
    elsewhere = tmp_path / "run"  # not the project: no loopml.yaml, no registry
    elsewhere.mkdir()
    # laid out as KServe's storage initializer does (/mnt/models, named by --name); the image's own
    # /srv/digits/model is named by its folder. The image's LOOPML_MONITOR__LOG_DIR keeps the log.
    served = shutil.copytree(context / "model", tmp_path / "mnt" / "models")
    port = free_port()
    server = subprocess.Popen([str(venv / "bin" / "loopml"), "serve", "--model", str(served), "--name", "digits",
                               "--port", str(port)], cwd=elsewhere,
                              env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(elsewhere),
                                   "LOOPML_MONITOR__LOG_DIR": str(tmp_path / "inference")},
                              stdout=(tmp_path / "serve.log").open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}", server, seconds=180)
        import tritonclient.http as triton

        rows = pd.read_parquet(digits_run / "data" / "raw" / "digits.parquet").drop(columns="label").head(50)
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        tensor = triton.InferInput("input", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows.to_numpy(np.float64))
        answer = client.infer("digits", [tensor]).as_numpy("predict")
        from loopml_runtime import Predictor

        offline = Predictor(context / "model").predict(rows)
        assert list(answer) == list(offline)
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
    assert list((tmp_path / "inference").rglob("*.parquet")), "no inference log where LOOPML_MONITOR__LOG_DIR says"


def test_bad_choices_are_refused_with_the_choices_named(digits_run, tmp_path):
    gpu = loopml("deploy", "render", "serve", "--gpu", "--out", str(tmp_path / "gpu"), cwd=digits_run, check=False)
    assert gpu.returncode == 1 and "CPU-only PyTorch build (2.13.0+cpu); render without --gpu" in gpu.stderr
    other = loopml("deploy", "render", "serve", "--model", "churn@champion", "--out", str(tmp_path / "o"),
                   cwd=digits_run, check=False)  # fmt: skip
    assert other.returncode == 1 and "this project registers 'digits'" in other.stderr
    missing = loopml("deploy", "render", "serve", "--model", "models:/digits/9", "--out", str(tmp_path / "m"),
                     cwd=digits_run, check=False)  # fmt: skip
    assert missing.returncode == 1 and "digits has no version '9'; versions: 1" in missing.stderr
    unknown = loopml("deploy", "render", "kubernetes", cwd=digits_run, check=False)
    assert unknown.returncode == 1
    assert "expected one of serve, compose, k8s, k8s-train, ci, slurm, devenv" in unknown.stderr
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("not loopml's")
    busy = loopml("deploy", "render", "serve", "--out", str(kept), cwd=digits_run, check=False)
    assert busy.returncode == 1 and "pass --force" in busy.stderr
    assert sorted(p.name for p in kept.iterdir()) == ["mine.txt"]
    loopml("deploy", "render", "serve", "--out", str(kept), "--force", "--pull-at-start", cwd=digits_run)
    assert (kept / "mine.txt").read_text() == "not loopml's"  # --force never deletes what it did not write
    assert not (kept / "model").exists()
    assert 'CMD ["loopml", "serve", "--model", "models:/digits@champion"' in (kept / "Dockerfile").read_text()
    shutil.rmtree(kept)
