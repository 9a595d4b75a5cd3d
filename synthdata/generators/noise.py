"""Counter-based Gaussian noise: every value is a hash of (seed, stream, position), so any family can remake
image *j* from its recorded seed alone — a GAN's latent vector, a diffusion sampler's starting image and the
noise it adds at step *t* (``stream=t + 1``) — on every device and in every batch split."""

from __future__ import annotations

import math
from typing import Sequence

import torch

_MASK = 0xFFFFFFFF


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche hash with multipliers < 2**31 (all arithmetic stays below 2**63)."""
    x = x & _MASK
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & _MASK
    x = ((x ^ (x >> 15)) * 0x68E31DA5) & _MASK
    return x ^ (x >> 16)


def noise(shape: Sequence[int], seeds: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """Standard-normal float32 noise of shape (N, *shape); row i depends only on ``(seeds[i], stream)``.

    Stream 0 is the latent noise of the GAN/VAE families; other streams (non-negative ints) are independent
    of it and of each other. A vectorised integer hash of (key, counter) gives uniforms, Box-Muller normals.
    """
    if stream < 0:
        raise ValueError(f"noise stream must be a non-negative int, got {stream}")
    dim = math.prod(int(s) for s in shape)
    seeds = torch.as_tensor(seeds).to(torch.int64).reshape(-1, 1)
    key = _mix(_mix(seeds & _MASK) ^ _mix((seeds >> 32) ^ 0x5BD1E995))
    if stream:
        key = _mix(key ^ _mix(torch.tensor(stream, dtype=torch.int64) * 0x27D4EB2F + 0x165667B1))
    counter = torch.arange(2 * dim, dtype=torch.int64, device=seeds.device).reshape(1, -1)
    bits = _mix(_mix(key + counter * 0x9E3779B) ^ key)
    u = (bits.to(torch.float64) + 0.5) / 2.0**32
    u1, u2 = u[:, :dim], u[:, dim:]
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.to(torch.float32).reshape(-1, *[int(s) for s in shape])


def latent_noise(seeds: torch.Tensor, dim: int) -> torch.Tensor:
    """(N, dim) latent vectors: :func:`noise` on stream 0."""
    return noise((dim,), seeds, 0)
