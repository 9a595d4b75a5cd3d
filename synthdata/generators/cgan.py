"""Conditional DCGAN with a projection discriminator (Miyato & Koyama, 2018), spectral normalisation
(Miyato et al., 2018), the hinge loss, and an exponential moving average of the generator for sampling
(Karras et al., 2018; Yazici et al., 2019). For small training sets, ``diffaugment`` applies
differentiable augmentation to every image the discriminator sees (Zhao et al., 2020).
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from synthdata.generators import diffaugment
from synthdata.generators.base import Generator, GeneratorConfig, register
from synthdata.generators.losses import hinge_discriminator, hinge_generator
from synthdata.generators.nets import DownTrunk, UpGenerator


class CGANConfig(GeneratorConfig):
    lr_g: float = Field(2e-4, gt=0, le=1)
    lr_d: float = Field(2e-4, gt=0, le=1)
    beta1: float = Field(0.0, ge=0, lt=1)
    beta2: float = Field(0.9, ge=0, lt=1)
    d_steps: int = Field(1, ge=1, le=10, description="discriminator updates per generator update")
    diffaugment: str = Field("", description="DiffAugment policy for the discriminator's inputs, e.g. "
                             "'translation,cutout' (low-data); '' for none")

    @field_validator("diffaugment")
    @classmethod
    def _policy(cls, v: str) -> str:
        return ",".join(diffaugment.parse(v))


class ProjectionDiscriminator(nn.Module):
    def __init__(self, in_channels: int, width: int, height: int, width_px: int, num_classes: int):
        super().__init__()
        self.trunk = DownTrunk(in_channels, width, height, width_px, sn=True)
        c = self.trunk.out_channels
        self.linear = spectral_norm(nn.Linear(c, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, c))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x).sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)


@register
class CGAN(Generator):
    name = "cgan"
    Config = CGANConfig

    def __init__(self, config: CGANConfig, image_shape, num_classes: int):
        super().__init__(config, image_shape, num_classes)
        c, h, w = self.image_shape
        self.G = UpGenerator(config.latent_dim, num_classes, c, config.width, h, w)
        self.D = ProjectionDiscriminator(c, config.width, h, w, num_classes)
        self.G_ema = self.make_ema(self.G)
        self.policy = diffaugment.parse(config.diffaugment)

    def synthesize(self, z, labels):
        return torch.tanh(self.G_ema(z, labels))

    def ema_pairs(self):
        return [(self.G_ema, self.G)]

    def make_optimizers(self):
        cfg = self.config
        return {
            "G": torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2)),
            "D": torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2)),
        }

    def discriminate(self, x, labels, rng):
        return self.D(diffaugment.augment(x, self.policy, rng) if self.policy else x, labels)

    def training_step(self, real, labels, rng, optimizers):
        n, dim = real.shape[0], self.config.latent_dim
        for _ in range(self.config.d_steps):
            with torch.no_grad():
                z = torch.randn(n, dim, generator=rng, device=real.device)
                fake = torch.tanh(self.G(z, labels))
            d_real, d_fake = self.discriminate(real, labels, rng), self.discriminate(fake, labels, rng)
            loss_d = hinge_discriminator(d_real, d_fake)
            optimizers["D"].zero_grad(set_to_none=True)
            loss_d.backward()
            optimizers["D"].step()
        z = torch.randn(n, dim, generator=rng, device=real.device)
        self.D.requires_grad_(False)  # the G step needs gradients through D, not of D's weights
        try:
            loss_g = hinge_generator(self.discriminate(torch.tanh(self.G(z, labels)), labels, rng))
        finally:
            self.D.requires_grad_(True)
        optimizers["G"].zero_grad(set_to_none=True)
        loss_g.backward()
        optimizers["G"].step()
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
                "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()}
