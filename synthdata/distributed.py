"""Training on 1..N processes with PyTorch's distributed package, launched by ``torchrun``.

``runtime.nproc`` (``auto``: one process per visible GPU, one without a GPU) decides how many processes train
one generator. With more than one, the ``train`` stage re-launches itself through ``torch.distributed.run
--standalone`` on this machine; several machines run ``torchrun --nnodes ... --rdzv-endpoint ... -m synthdata
train`` themselves (docs/scaling.md). Each process finds its rank in the environment torchrun sets.

What a GAN needs from DDP (the lessons of stylegan2-ada and StudioGAN): every trained network is wrapped on its
own and never syncs buffers in the forward (``broadcast_buffers=False``: spectral-norm and batch-norm buffers
change in place inside the forward, and broadcasting them trips autograd, pytorch #22095/#65907); a network used
but not trained in a pass runs under ``no_sync()`` (:meth:`~synthdata.generators.Generator.frozen`); no
``find_unused_parameters``; batch norm becomes ``SyncBatchNorm`` only under nccl (it has no CPU implementation),
so on the CPU each rank keeps its own running statistics and rank 0's are saved. The global batch is the
parameter; each rank takes its contiguous slice of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from synthdata.errors import SynthdataError
from synthdata.procs import die_with_parent

LAUNCHED_BY_STAGE = "SYNTHDATA_LAUNCHER_PID"  # set by the stage that re-launched itself (it holds the locks)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (collective: every rank calls it)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(out, obj)
        return out

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of each value (same keys on every rank): every rank logs and checks the same."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        if self.backend == "nccl":
            t = t.cuda()
        torch.distributed.all_reduce(t)
        return {k: float(v) / self.size for k, v in zip(keys, t.tolist())}


def launched() -> bool:
    """Whether this process is one of several started by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launched_by_stage() -> bool:
    return launched() and LAUNCHED_BY_STAGE in os.environ


def resolve_nproc(runtime, device: torch.device) -> int:
    """How many processes ``runtime.nproc`` asks for on this machine; one line when it cannot have them."""
    if launched():
        return int(os.environ["WORLD_SIZE"])
    cuda = device.type == "cuda"
    have = torch.cuda.device_count() if cuda else (os.cpu_count() or 1)
    if runtime.nproc == "auto":
        return have if cuda else 1
    if runtime.nproc > have:
        what = f"{have} visible GPU(s)" if cuda else f"{have} CPU core(s)"
        raise SynthdataError(
            f"runtime.nproc: {runtime.nproc} processes asked for but this machine has {what}; "
            f"use a number up to {have}, or 'auto'"
        )
    return runtime.nproc


def per_rank_batch(batch: int, world: int, where: str) -> int:
    if batch % world:
        raise SynthdataError(
            f"{where}: the global batch {batch} does not divide over {world} processes; "
            f"make it a multiple of {world} or change runtime.nproc"
        )
    return batch // world


def start(device: torch.device, threads: int = 0) -> tuple[World, torch.device]:
    """Join the process group when torchrun started this process (nccl on CUDA, gloo on the CPU); the
    world and this rank's device. The ``threads`` CPU threads (0: every core) are shared among the ranks."""
    if not launched():
        return World(), device
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    torch.set_num_threads(max(1, (threads or os.cpu_count() or 1) // local_size))
    rank, size, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if launched_by_stage():  # torchrun starts its workers in their own session: tie them to it
        die_with_parent(os.getppid())
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend)
    return World(rank, size, local, backend), device


def stop(world: World) -> None:
    if world.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap(networks: dict[str, nn.Module], world: World) -> dict[str, nn.Module]:
    """Each trained network in its own DDP wrapper (the networks themselves when not distributed)."""
    if not world.distributed:
        return networks
    wrapped = {}
    for name, net in networks.items():
        if world.backend == "nccl":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)  # replaces the batch norms inside, in place
        ids = [world.local_rank] if world.backend == "nccl" else None
        # buffers synced once at init, never in the forward (torch 2.14's name for broadcast_buffers=False)
        wrapped[name] = nn.parallel.DistributedDataParallel(net, device_ids=ids, forward_sync_buffers=False)
    return wrapped


def launch(nproc: int, argv: list[str], threads: int) -> None:
    """Run ``python -m synthdata <argv>`` as ``nproc`` processes of one machine under torchrun, and wait.

    The caller holds the stage's locks; the processes know it from :data:`LAUNCHED_BY_STAGE`."""
    env = dict(os.environ, **{LAUNCHED_BY_STAGE: str(os.getpid())})
    env["OMP_NUM_THREADS"] = str(max(1, threads // nproc))  # torchrun would set 1
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    parent = os.getpid()
    # torchrun dies with this process and its workers with torchrun, however this one ends (kill -9 included)
    code = subprocess.call([*cmd, "-m", "synthdata", *argv], env=env, preexec_fn=lambda: die_with_parent(parent))
    if code:
        raise SynthdataError(
            f"{argv[0]}: one of the {nproc} training processes failed (exit {code}; its message is above); "
            "the last checkpoint is kept: run the same command to resume"
        )
