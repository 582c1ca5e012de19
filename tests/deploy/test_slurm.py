"""`loopml deploy render slurm`, submitted to a real single-node SLURM cluster (Debian's slurm-wlm
and munge, with slurmdbd accounting on MariaDB, started by scripts/slurm-cluster with the daemons in
the foreground): the rendered sbatch script runs `srun torchrun` with 2 DDP workers, then evaluate
and register; the job ends COMPLETED (in scontrol and in sacct) with one MLflow run and a
registered champion. The Apptainer definition is parsed by
spython (there is no Apptainer here to build it).

Without SLURM installed the test is skipped, unless LOOPML_REQUIRE_STACK=1 (CI sets it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port, loopml, loopml_json, tool_env
from tests.train.test_distributed import train_runs

pytestmark = pytest.mark.slow
CLUSTER = Path(__file__).parents[2] / "scripts" / "slurm-cluster"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if not all(shutil.which(tool) for tool in ("slurmctld", "munged", "slurmdbd", "mariadbd")):
        message = "SLURM is not installed (apt-get install slurm-wlm munge slurmdbd mariadb-server); .ci/run does"
        if os.environ.get("LOOPML_REQUIRE_STACK") == "1":
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("slurm")
    ports = ("SLURMCTLD_PORT", "SLURMD_PORT", "SLURMDBD_PORT", "SLURM_DB_PORT")
    env = {**os.environ, **{name: str(free_port()) for name in ports}}
    up = subprocess.run([str(CLUSTER), "up", str(folder)], env=env, capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield {"SLURM_CONF": up.stdout.strip().rpartition("=")[2]}
    finally:
        subprocess.run([str(CLUSTER), "down", str(folder)], env=env, capture_output=True, timeout=60)


def job_state(job: str, env: dict[str, str]) -> dict[str, str]:
    shown = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", shown))


def accounted(job: str, env: dict[str, str]) -> str:
    """The job's state in the accounting database (slurmctld reports an ended job to slurmdbd
    asynchronously: ask again for a while)."""
    state = ""
    for _ in range(60):
        shown = subprocess.run(["sacct", "-j", job, "-X", "-n", "-P", "-o", "State"], env=env, capture_output=True,
                               text=True).stdout.split()  # fmt: skip
        state = shown[0] if shown else ""
        if state not in ("", "RUNNING", "PENDING", "COMPLETING"):
            break
        time.sleep(0.5)
    return state


def test_rendered_sbatch_trains_with_ddp_on_a_real_cluster(slurm, digits):
    config = yaml.safe_load((digits / "loopml.yaml").read_text())
    config["train"]["distributed"] = {"nproc_per_node": 2}
    config["deploy"] = {"slurm_cpus_per_task": os.cpu_count() or 1}  # what this one node has
    (digits / "loopml.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    loopml_json("deploy", "render", "slurm", "--out", "slurm", cwd=digits)
    script = (digits / "slurm" / "train.sbatch").read_text()
    for expected in ("#SBATCH --requeue", "--nproc-per-node=2", '--rdzv-id="$SLURM_JOB_ID"', "scontrol show hostnames",
                     "resume=(--resume)", "-m loopml train"):  # fmt: skip
        assert expected in script, expected
    subprocess.run(["bash", "-n", str(digits / "slurm" / "train.sbatch")], check=True)

    (digits / "logs").mkdir()
    env = {**tool_env(), **slurm}
    submitted = subprocess.run(["sbatch", "--parsable", f"--export=ALL,LOOPML_RDZV_PORT={free_port()}",
                                "slurm/train.sbatch"], cwd=digits, env=env, capture_output=True, text=True)  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 400
    while (state := job_state(job, env)).get("JobState") not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
        assert time.monotonic() < deadline, f"job {job} still {state.get('JobState')}"
        time.sleep(1)
    log = (digits / "logs" / f"digits-train-{job}.out").read_text()
    assert state["JobState"] == "COMPLETED" and state["ExitCode"] == "0:0", log[-4000:]
    assert "rendezvous" in log and "register" in log
    assert accounted(job, env) == "COMPLETED"  # what sacct, from slurmdbd's database, says of the job
    result = yaml.safe_load((digits / "outputs" / "train.json").read_text())
    assert result["world_size"] == 2
    (run,) = train_runs(digits)
    assert run.data.tags["loopml.world_size"] == "2"
    assert yaml.safe_load((digits / "outputs" / "evaluate.json").read_text())["metrics"]["accuracy"] >= 0.95
    assert loopml_json("models", "list", cwd=digits)[0]["aliases"]


def test_apptainer_definition_parses_and_refusals(digits):
    from spython.main.parse.parsers import SingularityParser

    loopml("deploy", "render", "slurm", "--out", "slurm", cwd=digits)
    (recipe,) = SingularityParser(str(digits / "slurm" / "apptainer.def")).recipe.values()
    assert recipe.fromHeader.startswith("python:") and recipe.fromHeader.endswith("-slim")
    assert "PATH=/opt/venv/bin:$PATH" in recipe.environ and recipe.cmd == 'exec loopml "$@"'
    assert any("wheels" in str(pair) for pair in recipe.files)
    assert any("pip install" in line and "/opt/loopml-wheels/*.whl" in line for line in recipe.install)
    requirements = (digits / "slurm" / "requirements.txt").read_text()
    assert re.search(r"^torch==\d", requirements, re.M) and "mlflow==" in requirements
    assert [w.name.split("-")[0] for w in (digits / "slurm" / "wheels").iterdir()] == ["loopml"]
    gpu_count = loopml("deploy", "render", "slurm", "--out", "gpu", cwd=digits, check=False,
                       env={"LOOPML_TRAIN__DISTRIBUTED__NPROC_PER_NODE": "gpu"})  # fmt: skip
    assert gpu_count.returncode == 1 and "render with --gpu" in gpu_count.stderr
