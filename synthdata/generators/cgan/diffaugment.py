"""Differentiable augmentation for data-efficient GAN training (DiffAugment; Zhao et al., NeurIPS 2020).

The same random transforms are applied to real and generated images *before the discriminator* in both
the discriminator and the generator updates, so the discriminator cannot memorise a small training set
while the generator still learns the un-augmented distribution (the transforms are differentiable and
the generator's gradients flow through them). Policies are comma-separated names, e.g.
``"translation,cutout"``; the random draws come from the training step's seeded generator, so a run is
reproducible and resumes bit for bit.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(n: int, rng: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, 1, 1, 1, generator=rng, device=rng.device).to(like.dtype)


def brightness(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    return x + (_uniform(x.shape[0], rng, x) - 0.5)


def saturation(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    if x.shape[1] == 1:  # grey images have no saturation; draw anyway so the random stream is the same
        _uniform(x.shape[0], rng, x)
        return x
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(x.shape[0], rng, x) * 2) + mean


def contrast(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x.shape[0], rng, x) + 0.5) + mean


def translation(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size, filling with the background (-1: black)."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), generator=rng, device=rng.device).to(x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), generator=rng, device=rng.device).to(x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy).clamp(-1, h)  # -1 and h index the padding
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx).clamp(-1, w)
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows + 1, cols + 1].permute(0, 3, 1, 2).contiguous()


def cutout(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Blank one square of ``ratio`` of the image size per image, centred anywhere, to the background."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h, (n, 1, 1), generator=rng, device=rng.device).to(x.device) - ch // 2
    left = torch.randint(0, w, (n, 1, 1), generator=rng, device=rng.device).to(x.device) - cw // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x.masked_fill(inside.unsqueeze(1), -1.0)


POLICIES: dict[str, list[Transform]] = {
    "color": [brightness, saturation, contrast],
    "translation": [translation],
    "cutout": [cutout],
}


def parse(policy: str) -> list[str]:
    """Validated policy names of a comma-separated string ('' means none)."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    return names


def augment(x: torch.Tensor, policy: list[str], rng: torch.Generator) -> torch.Tensor:
    for name in policy:
        for fn in POLICIES[name]:
            x = fn(x, rng)
    return x
