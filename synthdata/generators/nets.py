"""Building blocks shared by the generators: geometry, an upsampling generator, a downsampling trunk.

DCGAN-style (Radford et al., 2016): transposed 4x4/stride-2 convolutions upsample from a small base grid
whose size is chosen so that the output covers the image exactly (28x28 -> base 7x7, two doublings),
without padding to a power of two. Class conditioning uses conditional batch norm (Dumoulin et al., 2017;
de Vries et al., 2017), as in SNGAN/BigGAN generators.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrizations


class _SpectralNormFP32(parametrizations._SpectralNorm):
    """torch's spectral norm with its power iteration and sigma kept in fp32 under autocast (bf16 mv/vdot would
    drift the u, v estimates); outside autocast it is the same computation, bit for bit."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):
            return super().forward(weight)


def spectral_norm(module: nn.Module) -> nn.Module:
    """``torch.nn.utils.parametrizations.spectral_norm`` whose parametrization stays fp32 under autocast (same
    state-dict keys; the class swap is kept by deepcopy, so EMA copies have it too)."""
    module = parametrizations.spectral_norm(module)
    module.parametrizations.weight[0].__class__ = _SpectralNormFP32
    return module


def geometry(height: int, width: int) -> tuple[int, int, int]:
    """(doublings k, base height, base width): the base grid is >= 4 and base * 2**k covers the image."""
    k = max(1, int(math.floor(math.log2(min(height, width) / 4))))
    return k, math.ceil(height / 2**k), math.ceil(width / 2**k)


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose gain and bias are looked up per class (initialised to the identity)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class UpGenerator(nn.Module):
    """(z, class id) -> (N, out_channels, base*2**k, ...) pre-activation outputs."""

    def __init__(self, latent_dim: int, num_classes: int, out_channels: int, width: int, height: int, width_px: int):
        super().__init__()
        k, self.h0, self.w0 = geometry(height, width_px)
        chans = [width * 2 ** (k - i) for i in range(k + 1)]  # base ... finest hidden level
        self.c0 = chans[0]
        self.embed = nn.Embedding(num_classes, latent_dim)
        self.fc = nn.Linear(2 * latent_dim, self.c0 * self.h0 * self.w0)
        self.base_norm = ConditionalBatchNorm(self.c0, num_classes)
        self.base_conv = nn.Conv2d(self.c0, self.c0, 3, 1, 1)
        self.norms = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i in range(k):
            c_out = chans[i + 1] if i < k - 1 else out_channels
            self.norms.append(ConditionalBatchNorm(chans[i], num_classes))
            self.ups.append(nn.ConvTranspose2d(chans[i], c_out, 4, 2, 1))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], dim=1)).view(-1, self.c0, self.h0, self.w0)
        h = self.base_conv(torch.relu(self.base_norm(h, y)))
        for norm, up in zip(self.norms, self.ups):
            h = up(torch.relu(norm(h, y)))
        return h


class DownTrunk(nn.Module):
    """(N, C, H', W') images at the internal size -> (N, channels, base h, base w) features."""

    def __init__(self, in_channels: int, width: int, height: int, width_px: int, sn: bool):
        super().__init__()
        k, _, _ = geometry(height, width_px)
        wrap = spectral_norm if sn else (lambda m: m)
        layers: list[nn.Module] = [wrap(nn.Conv2d(in_channels, width, 3, 1, 1)), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(k):
            layers += [wrap(nn.Conv2d(c, 2 * c, 4, 2, 1)), nn.LeakyReLU(0.2)]
            c *= 2
        layers += [wrap(nn.Conv2d(c, c, 3, 1, 1)), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
