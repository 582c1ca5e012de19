"""DDP under torchrun on CPU (gloo): two processes through `loopml run`, two rendezvoused agents,
and a killed rank that recovers from the checkpoint. Each ends in one MLflow run and a model that
passes the digits gates (test accuracy >= 0.95).

CPU runs prove correctness, not speed: on 2 cores two processes share the cores one used."""

from __future__ import annotations

import signal
import subprocess
import time

import psutil
import pytest
import yaml

from loopml.config import DistributedConfig
from loopml.train.distributed import explain_failure, launch_command
from tests.conftest import BIN, free_port, loopml, loopml_json, tool_env

pytestmark = pytest.mark.slow


def train_runs(project) -> list:
    """The MLflow runs named train in the project's store."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{project / '.loopml' / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, "attributes.run_name = 'train'")


def accuracy(project) -> float:
    return loopml_json("evaluate", cwd=project)["metrics"]["accuracy"]


def test_loopml_run_trains_with_two_processes_as_configured(digits):
    config = yaml.safe_load((digits / "loopml.yaml").read_text())
    config["train"]["distributed"] = {"nproc_per_node": 2}
    (digits / "loopml.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    loopml("run", cwd=digits)
    trained = loopml_json("models", "list", cwd=digits)
    assert trained and trained[0]["version"] == "1"
    result = yaml.safe_load((digits / "outputs" / "train.json").read_text())
    assert result["world_size"] == 2
    (run,) = train_runs(digits)  # one run for the training, never one per rank
    assert run.data.tags["loopml.world_size"] == "2"
    assert {"rank0.samples_per_s", "rank1.samples_per_s", "rank0.peak_rss_mb", "rank1.peak_rss_mb"} <= set(
        run.data.metrics
    )
    assert yaml.safe_load((digits / "outputs" / "evaluate.json").read_text())["metrics"]["accuracy"] >= 0.95


def test_two_agents_rendezvous_like_two_nodes(digits):
    loopml("validate", cwd=digits)
    endpoint = f"127.0.0.1:{free_port()}"
    command = [str(BIN / "loopml"), "train", "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-endpoint", endpoint]
    agents = [subprocess.Popen(command, cwd=digits, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True) for _ in range(2)]  # fmt: skip
    outputs = [agent.communicate(timeout=300)[0] for agent in agents]
    assert [agent.returncode for agent in agents] == [0, 0], outputs
    assert yaml.safe_load((digits / "outputs" / "train.json").read_text())["world_size"] == 2
    assert len(train_runs(digits)) == 1
    assert accuracy(digits) >= 0.95


def test_a_killed_rank_restarts_the_group_from_the_checkpoint(digits):
    loopml("validate", cwd=digits)
    checkpoint = digits / ".loopml" / "checkpoints" / "last.pt"
    launcher = subprocess.Popen([str(BIN / "loopml"), "train", "--nproc-per-node", "2", "--max-restarts", "1"],
                                cwd=digits, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)  # fmt: skip
    killed = None
    deadline = time.monotonic() + 180
    while killed is None and time.monotonic() < deadline and launcher.poll() is None:
        if checkpoint.exists():  # an epoch is done: kill rank 1 mid-training
            for child in psutil.Process(launcher.pid).children(recursive=True):
                try:
                    if child.environ().get("RANK") == "1" and "loopml" in " ".join(child.cmdline()):
                        child.send_signal(signal.SIGKILL)
                        killed = child.pid
                        break
                except psutil.Error:
                    continue
        time.sleep(0.05)
    output = launcher.communicate(timeout=300)[0]
    assert killed is not None, "rank 1 was never seen running"
    assert launcher.returncode == 0, output[-3000:]
    assert f"local_rank: 1 (pid: {killed})" in output  # torchrun saw the kill, and restarted the group
    result = yaml.safe_load((digits / "outputs" / "train.json").read_text())
    assert result["world_size"] == 2 and result["resumed_from_epoch"] >= 1
    assert len(train_runs(digits)) == 1  # the restarted rank 0 went on with the same MLflow run
    assert accuracy(digits) >= 0.95


def test_bad_launches_are_refused_with_the_fix(digits):
    loopml("validate", cwd=digits)
    lone = loopml("train", "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
                  cwd=digits, env={"LOOPML_TRAIN__DISTRIBUTED__TIMEOUT_S": "3"}, check=False)  # fmt: skip
    assert lone.returncode == 1 and "no rendezvous: the 2 node(s) did not all join" in lone.stderr
    assert "within 3 s" in lone.stderr
    no_endpoint = loopml("train", "--nnodes", "2", cwd=digits, check=False)
    assert no_endpoint.returncode == 1 and "set train.distributed.rdzv_endpoint" in no_endpoint.stderr
    nccl = loopml("train", "--nproc-per-node", "2", cwd=digits, env={"LOOPML_TRAIN__DISTRIBUTED__BACKEND": "nccl"},
                  check=False)  # fmt: skip
    if nccl.returncode == 1:  # a GPU host may have two GPUs: then NCCL is a fine choice
        assert "nccl, which needs CUDA" in nccl.stderr or "NCCL runs one process per GPU" in nccl.stderr
    zero = loopml("train", "--nproc-per-node", "0", cwd=digits, check=False)
    assert zero.returncode == 1 and "train.distributed.nproc_per_node" in zero.stderr
    assert not (digits / "outputs" / "train.json").exists()  # nothing trained, nothing half-written


def test_launch_command_and_failure_lines():
    assert launch_command(DistributedConfig(), []) is None  # one process: train here
    standalone = launch_command(DistributedConfig(nproc_per_node=2, max_restarts=3), ["--json"])
    assert standalone[1:] == ["-m", "torch.distributed.run", "--nproc-per-node=2", "--max-restarts=3", "--standalone",
                              "-m", "loopml", "train", "--json"]  # fmt: skip
    nodes = launch_command(DistributedConfig(nnodes=2, rdzv_endpoint="10.0.0.1:29400", rdzv_id="job7"), [])
    assert "--rdzv-endpoint=10.0.0.1:29400" in nodes and "--rdzv-id=job7" in nodes and "--nnodes=2" in nodes
    summary = ("Failures:\n  <NO_OTHER_FAILURES>\nRoot Cause (first observed failure):\n[1]:\n  time      : x\n"
               "  host      : localhost\n  rank      : 1 (local_rank: 1)\n  exitcode  : -9 (pid: 4242)\n")  # fmt: skip
    line = explain_failure(summary, 1, DistributedConfig(nproc_per_node=2, max_restarts=1))
    assert line == "the distributed training failed after 1 restart(s): rank 1 (exit -9); its error is above"
