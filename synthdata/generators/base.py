"""One interface for every conditional generator, and the registry that names them.

Every generator answers ``generate(labels, seed) -> uint8 images``: sampling, scoring and publishing
depend on nothing else. Adding a generator is one new module (or package) in this package that subclasses
:class:`Generator` (or a family base such as :class:`~synthdata.generators.latent.LatentGenerator`) and
decorates it with :func:`register`.

The base keeps what every family shares: label conditioning, the EMA copy, the config and checkpoint round
trip, ``networks()`` (each trained module under its optimizer's name, so a distributed wrapper can wrap each
one), and reproducible sampling: image ``i`` depends only on ``seeds[i]`` (through the counter-based
:func:`~synthdata.generators.noise.noise`), and the sampling networks always run on batches of exactly
``GENERATE_BATCH`` rows, so every synthetic image is remade bit for bit from the ``seed`` recorded beside it
however a call is batched (on the same device and library versions).
"""

from __future__ import annotations

import abc
import contextlib
import copy
from typing import ClassVar, Iterator, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from synthdata.errors import SynthdataError

REGISTRY: dict[str, type["Generator"]] = {}
GENERATE_BATCH = 64  # rows per forward pass of the sampling networks, in every call (see generate_from_seeds)


def register(cls: type["Generator"]) -> type["Generator"]:
    if cls.name in REGISTRY:
        raise RuntimeError(f"generator {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type["Generator"]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise SynthdataError(f"unknown generator {name!r}; choose one of: {', '.join(sorted(REGISTRY))}") from None


class GeneratorConfig(BaseModel):
    """Options every generator has; a generator's own Config subclasses this."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    steps: int = Field(2000, gt=0, description="optimisation steps")
    batch_size: int = Field(64, gt=0, le=4096)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0, description="0 disables the EMA copy")
    ema_start: int = Field(0, ge=0, description="step from which the EMA copy starts averaging")


class Generator(nn.Module, abc.ABC):
    """A conditional generator: networks, their objective and an EMA copy for sampling.

    Subclasses set ``name`` and ``Config``, build their networks in ``__init__``, and implement
    :meth:`sample_batch` (labels and seeds to images in [-1, 1]), :meth:`make_optimizers`, :meth:`networks`
    and :meth:`training_step`; :meth:`real_batch` may bring real images to the networks' size.
    """

    name: ClassVar[str]
    Config: ClassVar[type[GeneratorConfig]] = GeneratorConfig

    def __init__(self, config: GeneratorConfig, image_shape: Sequence[int], num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise SynthdataError(f"a conditional generator needs at least 2 classes, got {num_classes}")
        self.config = config
        self.image_shape = tuple(int(s) for s in image_shape)  # (C, H, W)
        self.num_classes = int(num_classes)

    # --- what a generator implements -----------------------------------------------------------
    @abc.abstractmethod
    def sample_batch(self, labels: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] from the sampling (EMA) networks; row i depends only on
        ``(labels[i], seeds[i])``: draw its noise with :func:`~synthdata.generators.noise.noise` from ``seeds``,
        which stay on the CPU (so the noise is the same whichever device runs the networks)."""

    @abc.abstractmethod
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers; their states are checkpointed under these names."""

    @abc.abstractmethod
    def networks(self) -> dict[str, nn.Module]:
        """Each trained module under the name of the optimizer that updates it (EMA copies excluded)."""

    def real_batch(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 real images (N, C, H, W) to what :meth:`training_step` takes: floats in [-1, 1]."""
        return images.float().div_(127.5).sub_(1.0)

    @abc.abstractmethod
    def training_step(
        self,
        real: torch.Tensor,
        labels: torch.Tensor,
        rng: torch.Generator,
        optimizers: dict[str, torch.optim.Optimizer],
        nets: dict[str, nn.Module] | None = None,
    ) -> dict[str, float]:
        """One optimisation step on a batch of real images made by :meth:`real_batch`. Call the trained
        networks through ``nets`` (default :meth:`networks`): distributed training passes them wrapped, and a
        network used but not trained in a pass runs inside :meth:`frozen`."""

    @staticmethod
    @contextlib.contextmanager
    def frozen(net: nn.Module) -> Iterator[nn.Module]:
        """``net`` used but not trained: no gradients for its weights and, when it is wrapped for distributed
        training, no gradient synchronisation (DDP's ``no_sync``; its weights get no gradients to reduce)."""
        module = getattr(net, "module", net)
        module.requires_grad_(False)
        try:
            with net.no_sync() if hasattr(net, "no_sync") else contextlib.nullcontext():
                yield net
        finally:
            module.requires_grad_(True)

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(ema copy, trained module) pairs that :meth:`update_ema` averages."""
        return []

    # --- shared machinery --------------------------------------------------------------------
    @staticmethod
    def make_ema(module: nn.Module) -> nn.Module:
        ema = copy.deepcopy(module).eval()
        ema.requires_grad_(False)
        return ema

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        decay = self.config.ema_decay if step >= self.config.ema_start else 0.0
        for ema, module in self.ema_pairs():
            for p_ema, p in zip(ema.parameters(), module.parameters()):
                p_ema.lerp_(p.detach(), 1.0 - decay)
            for b_ema, b in zip(ema.buffers(), module.buffers()):
                b_ema.copy_(b)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def generate(self, labels: torch.Tensor | Sequence[int], seed: int) -> torch.Tensor:
        """uint8 images (N, C, H, W) for the given class ids; sample j uses seed ``seed + j``."""
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise SynthdataError(f"labels must be class ids in 0..{self.num_classes - 1}")
        seeds = torch.arange(labels.numel(), dtype=torch.int64) + int(seed)
        return self.generate_from_seeds(labels, seeds)

    @torch.no_grad()
    def generate_from_seeds(self, labels: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W); image i from seed ``seeds[i]``, the same bits however the call
        is batched: the networks always run on exactly :data:`GENERATE_BATCH` rows (the last batch padded),
        since convolution kernels round differently for other batch sizes (batch 1 above all)."""
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        seeds = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1)
        parts = []
        for lo in range(0, labels.numel(), GENERATE_BATCH):
            lab, sd = labels[lo : lo + GENERATE_BATCH], seeds[lo : lo + GENERATE_BATCH]
            k = lab.numel()
            if k < GENERATE_BATCH:  # pad with copies of the first row; their images are dropped
                lab = torch.cat([lab, lab[:1].expand(GENERATE_BATCH - k)])
                sd = torch.cat([sd, sd[:1].expand(GENERATE_BATCH - k)])
            parts.append(self._generate_batch(lab, sd)[:k])
        if not parts:
            return torch.empty((0, *self.image_shape), dtype=torch.uint8)
        return torch.cat(parts)

    def _generate_batch(self, labels: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        was_training = self.training
        self.eval()
        x = self.sample_batch(labels.to(self.device), seeds)  # seeds stay on the CPU: noise is drawn there
        self.train(was_training)
        x = x.float()
        if not bool(torch.isfinite(x).all()):
            raise SynthdataError(
                f"{self.name}: the generator made non-finite pixels (its weights hold inf or nan); train it again"
            )
        return ((x + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8).cpu()


def generator_names() -> list[str]:
    return sorted(REGISTRY)
