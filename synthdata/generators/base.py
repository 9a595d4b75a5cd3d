"""One interface for every conditional generator, and the registry that names them.

Every generator answers ``generate(labels, seed) -> uint8 images``: sampling, scoring and publishing
depend on nothing else. Adding a generator is one new module in this package that subclasses
:class:`Generator` and decorates it with :func:`register`.

Latent noise is counter-based (a hash of ``(seed, element)``), so sample ``j`` of a call with seed ``s``
is the same image as sample ``0`` of a call with seed ``s + j``, on every device. The sampling networks
always run on batches of exactly ``GENERATE_BATCH`` latents, so every synthetic image is remade bit for bit
from the ``seed`` recorded beside it however a call is batched (on the same device and library versions).
"""

from __future__ import annotations

import abc
import copy
import math
from typing import ClassVar, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from synthdata.errors import SynthdataError
from synthdata.generators.nets import geometry

REGISTRY: dict[str, type["Generator"]] = {}
GENERATE_BATCH = 64  # latents per forward pass of the sampling networks, in every call (see generate_from_seeds)


def register(cls: type["Generator"]) -> type["Generator"]:
    if cls.name in REGISTRY:
        raise RuntimeError(f"generator {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type["Generator"]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise SynthdataError(
            f"unknown generator {name!r}; choose one of: {', '.join(sorted(REGISTRY))}"
        ) from None


class GeneratorConfig(BaseModel):
    """Options every generator has; a generator's own Config subclasses this."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    steps: int = Field(2000, gt=0, description="optimisation steps")
    batch_size: int = Field(64, gt=0, le=4096)
    latent_dim: int = Field(64, gt=0, le=1024)
    width: int = Field(32, gt=0, le=1024, description="channels at the finest resolution")
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0, description="0 disables the EMA copy")
    ema_start: int = Field(0, ge=0, description="step from which the EMA copy starts averaging")


def latent_noise(seeds: torch.Tensor, dim: int) -> torch.Tensor:
    """Standard-normal noise of shape (N, dim); row i depends only on ``seeds[i]`` (int64).

    A vectorised integer hash of (seed, counter) gives uniforms, Box-Muller gives normals. All arithmetic
    stays below 2**63, so the result is identical on every device and in every batch split.
    """
    mask = 0xFFFFFFFF

    def mix(x: torch.Tensor) -> torch.Tensor:  # a 32-bit avalanche hash with multipliers < 2**31
        x = x & mask
        x = ((x ^ (x >> 16)) * 0x7FEB352D) & mask
        x = ((x ^ (x >> 15)) * 0x68E31DA5) & mask
        return x ^ (x >> 16)

    seeds = seeds.to(torch.int64).reshape(-1, 1)
    key = mix(mix(seeds & mask) ^ mix((seeds >> 32) ^ 0x5BD1E995))
    counter = torch.arange(2 * dim, dtype=torch.int64, device=seeds.device).reshape(1, -1)
    bits = mix(mix(key + counter * 0x9E3779B) ^ key)
    u = (bits.to(torch.float64) + 0.5) / 2.0**32
    u1, u2 = u[:, :dim], u[:, dim:]
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.to(torch.float32)


class Generator(nn.Module, abc.ABC):
    """A conditional generator: networks, their objective and an EMA copy for sampling.

    Subclasses set ``name`` and ``Config``, build their networks in ``__init__``, and implement
    :meth:`synthesize` (latents and labels to images in [-1, 1] at the internal resolution),
    :meth:`make_optimizers` and :meth:`training_step`.
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
        k, h0, w0 = geometry(*self.image_shape[1:])
        self.internal_size = (h0 * 2**k, w0 * 2**k)  # the networks' size; images are padded to it

    # --- what a generator implements -----------------------------------------------------------
    @abc.abstractmethod
    def synthesize(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] at the internal size, from the sampling (EMA) networks; no grad needed."""

    @abc.abstractmethod
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers; their states are checkpointed under these names."""

    @abc.abstractmethod
    def training_step(
        self, real: torch.Tensor, labels: torch.Tensor, rng: torch.Generator,
        optimizers: dict[str, torch.optim.Optimizer],
    ) -> dict[str, float]:
        """One optimisation step on a batch of real images in [-1, 1] at the internal resolution."""

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

    def pad(self, images: torch.Tensor) -> torch.Tensor:
        """Real images (N, C, H, W) in [-1, 1] to the internal size, padded with black."""
        _, h, w = self.image_shape
        rh, rw = self.internal_size
        top, left = (rh - h) // 2, (rw - w) // 2
        return nn.functional.pad(images, (left, rw - w - left, top, rh - h - top), value=-1.0)

    def crop(self, images: torch.Tensor) -> torch.Tensor:
        _, h, w = self.image_shape
        top, left = (self.internal_size[0] - h) // 2, (self.internal_size[1] - w) // 2
        return images[:, :, top : top + h, left : left + w]

    @torch.no_grad()
    def generate(self, labels: torch.Tensor | Sequence[int], seed: int) -> torch.Tensor:
        """uint8 images (N, C, H, W) for the given class ids; sample j uses latent seed ``seed + j``."""
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise SynthdataError(f"labels must be class ids in 0..{self.num_classes - 1}")
        seeds = torch.arange(labels.numel(), dtype=torch.int64) + int(seed)
        return self.generate_from_seeds(labels, seeds)

    @torch.no_grad()
    def generate_from_seeds(self, labels: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W); image i from latent seed ``seeds[i]``, the same bits however the call
        is batched: the networks always run on exactly :data:`GENERATE_BATCH` latents (the last batch padded),
        since convolution kernels round differently for other batch sizes (batch 1 above all)."""
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        seeds = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1)
        parts = []
        for lo in range(0, labels.numel(), GENERATE_BATCH):
            lab, sd = labels[lo:lo + GENERATE_BATCH], seeds[lo:lo + GENERATE_BATCH]
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
        device = self.device
        z = latent_noise(seeds, self.config.latent_dim).to(device)
        x = self.synthesize(z, labels.to(device))
        self.train(was_training)
        x = self.crop(x.float())
        if not bool(torch.isfinite(x).all()):
            raise SynthdataError(f"{self.name}: the generator made non-finite pixels (its weights hold inf or nan); "
                                 "train it again")
        return ((x + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8).cpu()


def generator_names() -> list[str]:
    return sorted(REGISTRY)

