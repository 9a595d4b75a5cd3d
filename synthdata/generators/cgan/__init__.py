"""Conditional DCGAN with a projection discriminator (Miyato & Koyama, 2018), spectral normalisation
(Miyato et al., 2018), the hinge loss, and an exponential moving average of the generator for sampling
(Karras et al., 2018; Yazici et al., 2019). For small training sets, ``diffaugment`` applies
differentiable augmentation to every image the discriminator sees (Zhao et al., 2020); ``mbstd_group``
gives the discriminator the minibatch standard deviation (Karras et al., 2018) so that a generator that
drops a mode within a class shows it.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from synthdata.generators.base import register
from synthdata.generators.cgan import diffaugment
from synthdata.generators.latent import LatentConfig, LatentGenerator
from synthdata.generators.losses import hinge_discriminator, hinge_generator
from synthdata.generators.nets import DownTrunk, UpGenerator, spectral_norm


class CGANConfig(LatentConfig):
    lr_g: float = Field(2e-4, gt=0, le=1)
    lr_d: float = Field(2e-4, gt=0, le=1)
    beta1: float = Field(0.0, ge=0, lt=1)
    beta2: float = Field(0.9, ge=0, lt=1)
    d_steps: int = Field(1, ge=1, le=10, description="discriminator updates per generator update")
    diffaugment: str = Field(
        "",
        description="DiffAugment policy for the discriminator's inputs, e.g. "
        "'translation,cutout' (low-data); '' for none",
    )

    mbstd_group: int = Field(
        0,
        ge=0,
        le=64,
        description="minibatch-stddev group size of the discriminator (a divisor of batch_size); 0 for none",
    )

    @field_validator("diffaugment")
    @classmethod
    def _policy(cls, v: str) -> str:
        return ",".join(diffaugment.parse(v))

    @model_validator(mode="after")
    def _groups(self) -> "CGANConfig":
        if self.mbstd_group and self.batch_size % self.mbstd_group:
            raise ValueError(f"mbstd_group ({self.mbstd_group}) must divide batch_size ({self.batch_size})")
        return self


def minibatch_std(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append one channel: the standard deviation of the features over each group of ``group`` samples
    (samples i, i + N/group, ...), averaged over features and positions, broadcast to every member."""
    n, c, h, w = x.shape
    g = min(group, n)
    if n % g:
        raise ValueError(f"a batch of {n} does not split into groups of {g}")
    y = x.float().reshape(g, n // g, c, h, w)
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))
    return torch.cat([x, y.to(x.dtype).reshape(1, n // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w)], 1)


class ProjectionDiscriminator(nn.Module):
    def __init__(
        self, in_channels: int, width: int, height: int, width_px: int, num_classes: int, mbstd_group: int = 0
    ):
        super().__init__()
        self.trunk = DownTrunk(in_channels, width, height, width_px, sn=True)
        c = self.trunk.out_channels
        self.mbstd_group = mbstd_group
        if mbstd_group:  # only then: checkpoints of discriminators without it keep their keys
            self.mbstd = nn.Sequential(spectral_norm(nn.Conv2d(c + 1, c, 3, 1, 1)), nn.LeakyReLU(0.2))
        self.linear = spectral_norm(nn.Linear(c, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, c))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        if self.mbstd_group:
            h = self.mbstd(minibatch_std(h, self.mbstd_group))
        h = h.sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)


@register
class CGAN(LatentGenerator):
    name = "cgan"
    Config = CGANConfig

    def __init__(self, config: CGANConfig, image_shape, num_classes: int):
        super().__init__(config, image_shape, num_classes)
        c, h, w = self.image_shape
        self.G = UpGenerator(config.latent_dim, num_classes, c, config.width, h, w)
        self.D = ProjectionDiscriminator(c, config.width, h, w, num_classes, config.mbstd_group)
        self.G_ema = self.make_ema(self.G)
        self.policy = diffaugment.parse(config.diffaugment)

    def synthesize(self, z, labels):
        return torch.tanh(self.G_ema(z, labels))

    def ema_pairs(self):
        return [(self.G_ema, self.G)]

    def networks(self):
        return {"G": self.G, "D": self.D}

    def make_optimizers(self):
        cfg = self.config
        return {
            "G": torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2)),
            "D": torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2)),
        }

    def discriminate(self, D, x, labels, rng):
        x = x.float()  # real and (autocast) fake images reach D in one dtype: one compiled graph, not two
        return D(diffaugment.augment(x, self.policy, rng) if self.policy else x, labels)

    def training_step(self, real, labels, rng, optimizers, nets=None):
        G, D = (nets or self.networks())["G"], (nets or self.networks())["D"]
        n, dim = real.shape[0], self.config.latent_dim
        for _ in range(self.config.d_steps):
            with torch.no_grad():
                z = torch.randn(n, dim, generator=rng, device=real.device)
                fake = torch.tanh(G(z, labels))
            d_real, d_fake = self.discriminate(D, real, labels, rng), self.discriminate(D, fake, labels, rng)
            loss_d = hinge_discriminator(d_real, d_fake)
            optimizers["D"].zero_grad(set_to_none=True)
            loss_d.backward()
            optimizers["D"].step()
        z = torch.randn(n, dim, generator=rng, device=real.device)
        with self.frozen(D):  # the G step needs gradients through D, not of D's weights
            loss_g = hinge_generator(self.discriminate(D, torch.tanh(G(z, labels)), labels, rng))
        optimizers["G"].zero_grad(set_to_none=True)
        loss_g.backward()
        optimizers["G"].step()
        return {
            "loss_d": loss_d.detach(),
            "loss_g": loss_g.detach(),
            "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(),
        }
