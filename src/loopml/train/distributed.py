"""Data-parallel training (DDP) under torchrun: the launch, the process group, and who owns what.

`loopml train` with `train.distributed` asking for more than one process starts
`torch.distributed.run` itself (standalone on one node, or a c10d rendezvous for several), with
`loopml train` as every worker. Started by an external `torchrun` or `srun torchrun`, it reads the
usual environment (RANK, LOCAL_RANK, WORLD_SIZE, TORCHELASTIC_RESTART_COUNT) instead.

Rank 0 owns the MLflow run (the other ranks open none, so a training is one run, never one per rank),
the checkpoint (written behind a barrier, atomically: no rank ever loads half a file) and the
package. Every rank shards each epoch's permutation, as DistributedSampler with `set_epoch` does:
the shuffling generator is seeded alike everywhere and advances every epoch.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from loopml.errors import ConfigError

if TYPE_CHECKING:
    from loopml.config import DistributedConfig

LAUNCH_ENV = "WORLD_SIZE"  # set by torchrun (and by srun through torchrun) in every worker


@dataclass(frozen=True)
class World:
    """This process's place in the training: rank, local rank, how many, which restart."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    restart: int = 0  # TORCHELASTIC_RESTART_COUNT: > 0 after an elastic restart (resume from the checkpoint)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- collectives (no-ops when alone) ------------------------------------------------------
    def decide(self, flag: bool) -> bool:
        """Rank 0's decision, on every rank; the others wait for it, so it is also a barrier."""
        if not self.distributed:
            return flag
        import torch
        import torch.distributed as dist

        box = torch.tensor([int(flag)])
        dist.broadcast(box, src=0)
        return bool(box.item())

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def sum_(self, tensor) -> None:
        """Sum `tensor` over every rank, in place."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor)


def world_from_env(environ: dict[str, str] | None = None) -> World:
    env = os.environ if environ is None else environ
    try:
        return World(rank=int(env.get("RANK", 0)), local_rank=int(env.get("LOCAL_RANK", 0)),
                     size=int(env.get("WORLD_SIZE", 1)),
                     restart=int(env.get("TORCHELASTIC_RESTART_COUNT", 0)))  # fmt: skip
    except ValueError:
        raise ConfigError("RANK, LOCAL_RANK, WORLD_SIZE and TORCHELASTIC_RESTART_COUNT must be integers (torchrun "
                          "sets them); unset them to train in one process") from None  # fmt: skip


def launch_command(cfg: DistributedConfig, train_args: list[str]) -> list[str] | None:
    """The torchrun command that runs `loopml train TRAIN_ARGS` in every worker, or None to train in
    this process (one process asked for, or already a torchrun worker)."""
    if LAUNCH_ENV in os.environ:
        return None
    nproc = processes_per_node(cfg)
    if nproc == 1 and cfg.nnodes == 1:
        return None
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
               f"--max-restarts={cfg.max_restarts}"]  # fmt: skip
    if cfg.nnodes == 1 and cfg.rdzv_endpoint is None:
        command.append("--standalone")
    else:
        if cfg.rdzv_endpoint is None:
            raise ConfigError(f"train.distributed.nnodes is {cfg.nnodes}: every node needs the same rendezvous; "
                              "set train.distributed.rdzv_endpoint (or --rdzv-endpoint) to HOST:PORT of the first "
                              "node")  # fmt: skip
        command += [f"--nnodes={cfg.nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={cfg.rdzv_endpoint}",
                    f"--rdzv-id={cfg.rdzv_id}", f"--rdzv-conf=join_timeout={int(cfg.timeout_s)}"]  # fmt: skip
    return [*command, "-m", "loopml", "train", *train_args]


def run_launch(command: list[str], cwd, cfg: DistributedConfig) -> str | None:
    """Run torchrun, its output passed through as it comes; None on success, else what went wrong."""
    import collections
    import subprocess

    tail: collections.deque[str] = collections.deque(maxlen=400)
    with subprocess.Popen(command, cwd=cwd, stderr=subprocess.PIPE, text=True, errors="replace") as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line)
        code = proc.wait()
    return None if code == 0 else explain_failure("".join(tail), code, cfg)


def explain_failure(output: str, code: int, cfg: DistributedConfig) -> str:
    """One line on why torchrun failed, from its output: the rendezvous, or the failing rank."""
    import re

    if "RendezvousTimeoutError" in output or "RendezvousConnectionError" in output:
        return (f"no rendezvous: the {cfg.nnodes} node(s) did not all join {cfg.rdzv_endpoint} within "
                f"{cfg.timeout_s:g} s (train.distributed.timeout_s); start `loopml train` on every node with the same "
                "--rdzv-endpoint and --nnodes, and check that the first node's port is reachable")  # fmt: skip
    failed = re.findall(r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)", output)
    restarts = f" after {cfg.max_restarts} restart(s)" if cfg.max_restarts else ""
    if failed:
        ranks = ", ".join(f"rank {rank} (exit {exit_code})" for rank, exit_code in dict(failed).items())
        return f"the distributed training failed{restarts}: {ranks}; its error is above"
    return f"the distributed training failed{restarts} (torchrun exit {code}); the error is above"


def processes_per_node(cfg: DistributedConfig) -> int:
    """`nproc_per_node`, checked against the GPUs when the training runs on them."""
    wanted = cfg.nproc_per_node
    gpus = _gpu_count() if wanted == "gpu" or cfg.backend == "nccl" else 0
    if wanted == "gpu":
        if gpus == 0:
            raise ConfigError('train.distributed.nproc_per_node is "gpu" but no CUDA device is visible; set a number '
                              "of processes (gloo on CPU), or train where GPUs are")  # fmt: skip
        return gpus
    if cfg.backend == "nccl":
        if gpus == 0:
            raise ConfigError("train.distributed.backend is nccl, which needs CUDA, and no CUDA device is visible; "
                              "use backend: gloo (or auto) to train on CPU")  # fmt: skip
        if wanted > gpus:
            raise ConfigError(f"train.distributed.nproc_per_node is {wanted} but this node has {gpus} GPU(s); NCCL "
                              f"runs one process per GPU: use at most {gpus}, or \"gpu\"")  # fmt: skip
    return int(wanted)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def setup(cfg: DistributedConfig, device) -> World:
    """Join the process group when torchrun started this process; alone otherwise."""
    world = world_from_env()
    if not world.distributed:
        return world
    import torch
    import torch.distributed as dist

    backend = cfg.backend if cfg.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError(f"rank {world.rank}: train.distributed.backend is nccl but training runs on {device}; "
                          "use gloo (or auto) on CPU")  # fmt: skip
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        timeout = timedelta(seconds=cfg.timeout_s)
        dist.init_process_group(backend, store=_attempt_store(world, timeout), rank=world.rank, world_size=world.size,
                                timeout=timeout)  # fmt: skip
    return world


def _attempt_store(world: World, timeout: timedelta):
    """The rendezvous store, under a prefix of its own for each elastic restart.

    After a restart, torch 2.13's workers read the agent's store unprefixed and found the dead
    attempt's gloo addresses: rank 0 dialled a port nobody listened on any more and hung (measured
    here, killing rank 1 of 2 under --max-restarts 1). A prefix per attempt keeps rounds apart."""
    import torch.distributed as dist

    try:
        host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    except (KeyError, ValueError):
        raise ConfigError(f"rank {world.rank}: MASTER_ADDR and MASTER_PORT are not set; start the workers with "
                          "torchrun (or let `loopml train` start it)") from None  # fmt: skip
    hosted_by_agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    base = dist.TCPStore(host, port, world.size, is_master=world.rank == 0 and not hosted_by_agent, timeout=timeout)
    return dist.PrefixStore(f"loopml/attempt_{world.restart}", base)


def device_for(world: World, device):
    """On CUDA each rank drives its own GPU (LOCAL_RANK); on CPU they share the host."""
    import torch

    if world.distributed and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def teardown(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
