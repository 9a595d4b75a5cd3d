"""Conditional VAE (Kingma & Welling, 2014; Sohn et al., 2015): a label-conditioned convolutional
encoder gives a reparameterised Gaussian posterior; a label-conditioned decoder gives Bernoulli pixel
logits. Loss: reconstruction (binary cross-entropy, summed over pixels) + beta * KL to N(0, I).
Sampling decodes z ~ N(0, I) with an EMA copy of the decoder and returns the mean image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from synthdata.generators.base import register
from synthdata.generators.latent import LatentConfig, LatentGenerator
from synthdata.generators.losses import gaussian_kl
from synthdata.generators.nets import DownTrunk, UpGenerator, geometry


class CVAEConfig(LatentConfig):
    lr: float = Field(1e-3, gt=0, le=1)
    beta_kl: float = Field(1.0, ge=0, description="weight of the KL term (beta-VAE)")


class Autoencoder(nn.Module):
    """The trained networks as one module whose forward is the training pass (what DDP wraps): the
    label-conditioned encoder and posterior, the reparameterised draw, and the decoder's pixel logits."""

    def __init__(self, encoder: nn.Module, to_posterior: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.to_posterior, self.decoder = encoder, to_posterior, decoder

    def forward(self, real, onehot, labels, rng):
        cond = onehot.expand(-1, -1, real.shape[2], real.shape[3])
        h = self.encoder(torch.cat([real, cond], dim=1)).flatten(1)
        mu, logvar = self.to_posterior(h).chunk(2, dim=1)
        logvar = logvar.clamp(-10.0, 10.0)
        eps = torch.randn(mu.shape, generator=rng, device=mu.device)
        return self.decoder(mu + eps * torch.exp(0.5 * logvar), labels), mu, logvar


@register
class CVAE(LatentGenerator):
    name = "cvae"
    Config = CVAEConfig

    def __init__(self, config: CVAEConfig, image_shape, num_classes: int):
        super().__init__(config, image_shape, num_classes)
        c, h, w = self.image_shape
        _, h0, w0 = geometry(h, w)
        self.encoder = DownTrunk(c + num_classes, config.width, h, w, sn=False)
        self.to_posterior = nn.Linear(self.encoder.out_channels * h0 * w0, 2 * config.latent_dim)
        self.decoder = UpGenerator(config.latent_dim, num_classes, c, config.width, h, w)
        self.decoder_ema = self.make_ema(self.decoder)

    def synthesize(self, z, labels):
        return torch.sigmoid(self.decoder_ema(z, labels)) * 2.0 - 1.0

    def ema_pairs(self):
        return [(self.decoder_ema, self.decoder)]

    def networks(self):
        # made on each call and never an attribute, so the checkpoint keys stay encoder.*, decoder.*, ...
        return {"vae": Autoencoder(self.encoder, self.to_posterior, self.decoder)}

    def make_optimizers(self):
        params = [p for n, p in self.named_parameters() if not n.startswith("decoder_ema.")]
        return {"vae": torch.optim.Adam(params, lr=self.config.lr)}

    def training_step(self, real, labels, rng, optimizers, nets=None):
        onehot = F.one_hot(labels, self.num_classes).to(real.dtype)[:, :, None, None]
        logits, mu, logvar = (nets or self.networks())["vae"](real, onehot, labels, rng)
        target = (real + 1.0) * 0.5
        recon = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(dim=(1, 2, 3)).mean()
        kl = gaussian_kl(mu, logvar)
        loss = recon + self.config.beta_kl * kl
        optimizers["vae"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["vae"].step()
        return {"loss": loss.detach(), "recon": recon.detach(), "kl": kl.detach()}
