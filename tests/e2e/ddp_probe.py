"""Run under ``torchrun --nproc-per-node=2``: checks what DDP training must do for every registered generator and
writes what the test compares (``<out>/<name>-rank<r>.pt``, ``<out>/<name>-grads-rank<r>.pt``).

1. One training step through the DDP wrappers gives every network the mean over ranks of the gradients each rank
   computes on its own slice without DDP (recorded at each optimizer's ``step``, which is not taken).
2. After a few real steps of :class:`~synthdata.trainer.Trainer`, each rank's state (weights, EMA weights) is
   saved, so the test can check that the ranks agree.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

from synthdata import distributed, generators
from synthdata.trainer import Trainer

CLASSES, N = 3, 48


class Recorder:
    """Stands in for an optimizer: keeps the gradients it would have applied, changes nothing."""

    def __init__(self, params):
        self.params, self.grads = list(params), []

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.grads.append([p.grad.detach().clone() for p in self.params])


def recorded_grads(model, nets, real, labels, seed: int) -> dict[str, list[list[torch.Tensor]]]:
    recorders = {k: Recorder(net.parameters()) for k, net in model.networks().items()}
    model.training_step(real, labels, torch.Generator().manual_seed(seed), recorders, nets)
    return {k: r.grads for k, r in recorders.items()}


def tiny(name: str) -> generators.Generator:
    cls = generators.get(name)
    sizes = {"width": 4, "latent_dim": 6, "steps": 8, "batch_size": 16, "ema_start": 2}
    torch.manual_seed(0)
    cfg = cls.Config(**{k: v for k, v in sizes.items() if k in cls.Config.model_fields})
    return cls(cfg, (1, 8, 8), CLASSES)


def main(out: Path) -> None:
    world, _ = distributed.start(torch.device("cpu"), threads=2)
    g = torch.Generator().manual_seed(1234)  # the same data on every rank; each trains on its own slice
    images = torch.randint(0, 256, (N, 1, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.arange(N) % CLASSES
    for name in generators.generator_names():
        model = tiny(name)
        part = slice(8 * world.rank, 8 * (world.rank + 1))
        real, lab = model.real_batch(images[part]), labels[part]
        local, ddp = copy.deepcopy(model), copy.deepcopy(model)
        mine = recorded_grads(local, local.networks(), real, lab, seed=world.rank)
        synced = recorded_grads(ddp, distributed.wrap(ddp.networks(), world), real, lab, seed=world.rank)
        torch.save({"local": world.gather(mine), "ddp": synced}, out / f"{name}-grads-rank{world.rank}.pt")

        optimizers = model.make_optimizers()
        Trainer(model, optimizers, images, labels, seed=0, name=name, world=world).fit(0, model.config.steps)
        torch.save(model.state_dict(), out / f"{name}-rank{world.rank}.pt")
    distributed.stop(world)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
