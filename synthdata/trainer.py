"""A small generator trainer: seeded batches, the generator's own ``training_step``, a non-finite-loss stop,
the EMA update, then hooks. Hooks do everything else a run needs — the loss table, periodic checkpoints,
progress, and (later) evaluation on the real val split — so that a distributed or selecting trainer adds a
hook instead of editing the loop. The loop is a pure function of (model, data, seed): a run resumed at step
``s`` with the RNG and optimizer states of step ``s`` continues bit for bit.

Distributed (``world`` of several ranks, see :mod:`synthdata.distributed`): each step's global batch is the
same as on one process and rank ``r`` trains on its ``r``-th contiguous slice, with its own noise stream; the
networks are called through their DDP wrappers; hooks see the mean of the losses over ranks, so every rank
logs, checks and stops alike."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from synthdata.distributed import World, per_rank_batch, wrap
from synthdata.errors import SynthdataError
from synthdata.generators import Generator
from synthdata.runtime import BatchSampler
from synthdata.seeding import derive


class Hook:
    """Called by :class:`Trainer` after every step (``losses`` hold floats) and once at the end."""

    def after_step(self, trainer: "Trainer", step: int, losses: dict[str, float]) -> None:
        pass

    def at_end(self, trainer: "Trainer") -> None:
        pass


@dataclass
class Trainer:
    model: Generator
    optimizers: dict[str, torch.optim.Optimizer]
    images: torch.Tensor  # uint8 (N, C, H, W), on the training device
    labels: torch.Tensor
    seed: int
    name: str
    hooks: list[Hook] = field(default_factory=list)
    channels_last: bool = False
    run_dir: str = "the run folder"  # where the last checkpoint lives (for the non-finite-loss message)

    world: World = field(default_factory=World)
    bf16: bool = False  # autocast the step in bf16 (losses, spectral norm kept fp32 by the generators)
    compile: bool = False  # torch.compile the trained networks' forwards (around their DDP wrappers)

    def fit(self, start: int, steps: int, progress: Callable | None = None) -> None:
        """Steps ``start + 1 .. steps`` (1-based, as logged and checkpointed)."""
        device, world = self.images.device, self.world
        batches = BatchSampler(len(self.labels), self.model.config.batch_size, self.seed)
        part = per_rank_batch(batches.batch, world.size, f"train.{self.name}.batch_size")
        nets = wrap(self.model.networks(), world)
        if self.compile:
            nets = {k: torch.compile(net) for k, net in nets.items()}
        self.model.train()
        for step in (progress or (lambda r: r))(range(start, steps)):
            idx = batches(step)[world.rank * part : (world.rank + 1) * part].to(device)
            real = self.model.real_batch(self.images[idx])
            if self.channels_last:
                real = real.contiguous(memory_format=torch.channels_last)
            stream = (self.seed, self.name, step) + (("rank", world.rank) if world.distributed else ())
            rng = torch.Generator(device=device).manual_seed(derive(*stream))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
                losses = self.model.training_step(real, self.labels[idx], rng, self.optimizers, nets)
            done = step + 1
            losses = world.mean({k: float(v) for k, v in losses.items()})
            self._check_finite(losses, done)
            self.model.update_ema(step)
            for hook in self.hooks:
                hook.after_step(self, done, losses)
        for hook in self.hooks:
            hook.at_end(self)

    def _check_finite(self, losses: dict[str, float], step: int) -> None:
        """Stop at the first step whose loss is inf or nan: no hook sees it, so nothing after it is kept."""
        for key, value in losses.items():
            if not math.isfinite(value):
                raise SynthdataError(
                    f"train {self.name}: {key} is {value} at step {step}; training stopped and nothing after the "
                    f"last checkpoint in {self.run_dir} is kept. Lower the learning rate(s) in train.{self.name}, "
                    "or check the data"
                )


class LossTable(Hook):
    """Rows of ``losses.csv``: every ``every`` steps and the last one."""

    def __init__(self, rows: list[dict], every: int, last: int):
        self.rows, self.every, self.last = rows, every, last

    def after_step(self, trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        if step % self.every == 0 or step == self.last:
            self.rows.append({"step": step, **{k: f"{v:.6g}" for k, v in losses.items()}})


class Every(Hook):
    """Calls ``fn(step)`` every ``every`` steps before ``last`` (periodic checkpoints: the final one is the
    caller's)."""

    def __init__(self, every: int, last: int, fn: Callable[[int], None]):
        self.every, self.last, self.fn = every, last, fn

    def after_step(self, trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        if step % self.every == 0 and step < self.last:
            self.fn(step)


class OnStep(Hook):
    """Calls ``fn(step)`` after every step (tests, flows)."""

    def __init__(self, fn: Callable[[int], None]):
        self.fn = fn

    def after_step(self, trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        self.fn(step)
