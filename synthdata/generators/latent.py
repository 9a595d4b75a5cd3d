"""The latent-variable family (the GAN and the VAE): a latent vector per image from noise stream 0, DCGAN
geometry (a base grid doubled ``k`` times to cover the image; images are padded to that internal size for
the networks and cropped back), and ``latent_dim`` / ``width`` in the config."""

from __future__ import annotations

import abc

import torch
from pydantic import Field
from torch import nn

from synthdata.generators.base import Generator, GeneratorConfig
from synthdata.generators.nets import geometry
from synthdata.generators.noise import latent_noise


class LatentConfig(GeneratorConfig):
    latent_dim: int = Field(64, gt=0, le=1024)
    width: int = Field(32, gt=0, le=1024, description="channels at the finest resolution")


class LatentGenerator(Generator):
    """A generator that decodes a latent vector and a label: subclasses implement :meth:`synthesize`."""

    Config = LatentConfig

    def __init__(self, config: LatentConfig, image_shape, num_classes: int):
        super().__init__(config, image_shape, num_classes)
        k, h0, w0 = geometry(*self.image_shape[1:])
        self.internal_size = (h0 * 2**k, w0 * 2**k)  # the networks' size; images are padded to it

    @abc.abstractmethod
    def synthesize(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] at the internal size, from the sampling (EMA) networks; no grad needed."""

    def sample_batch(self, labels: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        z = latent_noise(seeds, self.config.latent_dim).to(self.device)
        return self.crop(self.synthesize(z, labels))

    def real_batch(self, images: torch.Tensor) -> torch.Tensor:
        return self.pad(super().real_batch(images))

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
