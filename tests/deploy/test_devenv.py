"""`loopml deploy render devenv`: a GPU Jupyter + SSH image definition a user can compose up.

No Docker engine runs here, so the recipe is checked as text and structure: the Dockerfile
parsed by dockerfile-parse, the compose file as YAML against what Compose needs for GPUs,
the entry point by `sh -n`.
"""

import subprocess

import yaml
from dockerfile_parse import DockerfileParser

from tests.conftest import BIN, loopml, loopml_json


def test_devenv_recipe(tmp_path):
    result = loopml_json("deploy", "render", "devenv", "--out", "env", cwd=tmp_path)
    out = tmp_path / "env"
    assert sorted(result["files"]) == ["Dockerfile", "README.md", "compose.yaml", "entrypoint.sh", "requirements.txt",
                                       "wheels/"]  # fmt: skip

    docker = DockerfileParser(path=str(out / "Dockerfile"))
    assert docker.baseimage == "nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04"
    text = docker.content
    assert "download.pytorch.org/whl/cu128" in text
    assert 'pip install "torch==${TORCH_VERSION}"' in text and "ARG TORCH_VERSION=2.9.1" in text
    requirements = (out / "requirements.txt").read_text()
    for package in ("jupyterlab", "numpy", "scipy", "pandas", "matplotlib", "seaborn", "scikit-learn", "tqdm", "mlflow",
                    "dvc"):  # fmt: skip
        assert f"\n{package}" in requirements, package
    assert [w.name.split("-")[0] for w in (out / "wheels").iterdir()] == ["loopml"]  # the loop runs inside
    for arg in ("WITH_CUPY", "WITH_RAPIDS", "WITH_DALI"):
        assert f"ARG {arg}=0" in text
    assert "cupy-cuda12x" in text and "cudf-cu12" in text and "cuml-cu12" in text and "nvidia-dali" in text
    assert "PasswordAuthentication no" in text and "PermitRootLogin no" in text and "openssh-server" in text
    assert "useradd" in text and 'runuser -u "$user"' in (out / "entrypoint.sh").read_text()
    instructions = [i["instruction"] for i in docker.structure]
    assert instructions[-1] == "ENTRYPOINT" and "EXPOSE" in instructions and "HEALTHCHECK" in instructions

    compose = yaml.safe_load((out / "compose.yaml").read_text())
    service = compose["services"]["devenv"]
    assert all(port.startswith("127.0.0.1:") for port in service["ports"])
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert service["build"]["args"]["CUDA_VERSION"] == "12.8.1"

    entrypoint = out / "entrypoint.sh"
    assert entrypoint.stat().st_mode & 0o111
    subprocess.run(["sh", "-n", str(entrypoint)], check=True)


def test_cuda_version_picks_the_matching_torch_build(tmp_path):
    result = loopml_json("deploy", "render", "devenv", "--out", "env", "--cuda", "12.6.3", cwd=tmp_path)
    assert result["torch_index"].endswith("/cu126")
    assert "nvidia/cuda:${CUDA_VERSION}" in (tmp_path / "env" / "Dockerfile").read_text()
    # the course material's CUDA 12.4 (an Ubuntu 22.04 image, the last torch built for it), and 13.0
    old = loopml_json("deploy", "render", "devenv", "--out", "old", "--cuda", "12.4", cwd=tmp_path)
    assert (old["cuda"], old["ubuntu"], old["torch"], old["torch_index"][-5:]) == ("12.4.1", "22.04", "2.6.0", "cu124")
    new = loopml_json("deploy", "render", "devenv", "--out", "new", "--cuda", "13.0", cwd=tmp_path)
    assert new["cuda"] == "13.0.2" and new["torch_index"].endswith("/cu130")
    assert '"cupy-cuda13x"' in (tmp_path / "new" / "Dockerfile").read_text()
    for folder in ("env", "old", "new"):
        dockerfile = str(tmp_path / folder / "Dockerfile")
        lint = subprocess.run([str(BIN / "hadolint"), dockerfile], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout


def test_bad_input(tmp_path):
    proc = loopml("deploy", "render", "devenv", "--cuda", "11.8", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "expected one of 12.4.1, 12.6.3, 12.8.1, 12.9.1, 13.0.2" in proc.stderr
    (tmp_path / "devenv").mkdir()
    (tmp_path / "devenv" / "mine").write_text("keep")
    proc = loopml("deploy", "render", "devenv", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "--force" in proc.stderr
    proc = loopml("deploy", "render", "k8s", cwd=tmp_path, check=False)  # outside a project
    assert proc.returncode == 1 and "runs inside a project" in proc.stderr
