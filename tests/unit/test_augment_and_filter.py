"""DiffAugment transforms, the discriminator's minibatch standard deviation, and the classifier-filtered
sampling loop, on small tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthdata.errors import SynthdataError
from synthdata.filtering import filtered_class
from synthdata.generators.cgan import CGAN, CGANConfig, diffaugment, minibatch_std


def _images(n: int = 6, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_policies_are_seeded_differentiable_and_fill_with_background():
    x = _images().requires_grad_(True)
    policy = diffaugment.parse("color, translation,cutout")
    a = diffaugment.augment(x, policy, torch.Generator().manual_seed(5))
    b = diffaugment.augment(x, policy, torch.Generator().manual_seed(5))
    c = diffaugment.augment(x, policy, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    cut = diffaugment.cutout(torch.ones(4, 1, 16, 16), torch.Generator().manual_seed(0))
    blanked = (cut == -1).sum(dim=(1, 2, 3))
    assert ((blanked > 0) & (blanked <= 64)).all() and set(cut.unique().tolist()) <= {-1.0, 1.0}
    moved = diffaugment.translation(torch.ones(64, 1, 16, 16), torch.Generator().manual_seed(0))
    assert set(moved.unique().tolist()) <= {-1.0, 1.0} and (moved == -1).any()  # shifted in: black


def test_translation_moves_content_without_changing_it():
    x = torch.full((1, 1, 16, 16), -1.0)
    x[0, 0, 8, 8] = 1.0
    for seed in range(10):
        y = diffaugment.translation(x, torch.Generator().manual_seed(seed))
        ((r, c),) = torch.nonzero(y[0, 0] == 1).tolist()
        assert abs(r - 8) <= 2 and abs(c - 8) <= 2 and (y == 1).sum() == 1


def test_unknown_policy_is_refused_by_the_config():
    with pytest.raises(ValueError, match="unknown DiffAugment policy 'flip'"):
        CGANConfig(diffaugment="translation,flip")
    assert CGANConfig(diffaugment=" cutout , translation").diffaugment == "cutout,translation"


def test_diffaugment_changes_the_discriminator_inputs_only_when_set():
    torch.manual_seed(0)
    plain = CGAN(CGANConfig(width=4, latent_dim=4), (1, 8, 8), 3)
    torch.manual_seed(0)
    aug = CGAN(CGANConfig(width=4, latent_dim=4, diffaugment="translation,cutout"), (1, 8, 8), 3)
    plain.eval(), aug.eval()  # spectral norm's power iteration would move between calls in train mode
    x, y = _images(4, 8), torch.tensor([0, 1, 2, 0])
    rng = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(plain.discriminate(plain.D, x, y, rng()), plain.D(x, y))
    assert not torch.equal(aug.discriminate(aug.D, x, y, rng()), aug.D(x, y))


def test_minibatch_std_sees_a_collapsed_group_and_only_that_group():
    x = _images(8, 4)
    x[1::2] = x[1]  # group of samples 1, 3, 5, 7 (groups of 4: i, i + 2, ...): four copies of one image
    out = minibatch_std(x, 4)
    assert out.shape == (8, 2, 4, 4) and torch.equal(out[:, :1], x)
    std = out[:, 1, 0, 0]
    assert (out[:, 1] == std.view(8, 1, 1)).all()  # one value per sample, broadcast over positions
    assert torch.allclose(std[1::2], torch.full((4,), 1e-4)) and (std[0::2] > 0.3).all()
    assert torch.allclose(std[0::2], std[0].expand(4))
    with pytest.raises(ValueError, match="groups of 3"):
        minibatch_std(x, 3)


def test_minibatch_std_is_checked_by_the_config_and_changes_the_discriminator():
    with pytest.raises(ValueError, match="mbstd_group \\(3\\) must divide batch_size \\(64\\)"):
        CGANConfig(batch_size=64, mbstd_group=3)
    torch.manual_seed(0)
    plain = CGAN(CGANConfig(width=4, latent_dim=4), (1, 8, 8), 3)
    torch.manual_seed(0)
    grouped = CGAN(CGANConfig(width=4, latent_dim=4, batch_size=4, mbstd_group=4), (1, 8, 8), 3)
    assert "mbstd.0.parametrizations.weight.original" in grouped.D.state_dict()
    assert not any(k.startswith("mbstd") for k in plain.D.state_dict())  # old checkpoints keep their keys
    grouped.eval()
    x, y = _images(4, 8), torch.tensor([0, 1, 2, 0])
    varied = grouped.D(x, y)
    collapsed = grouped.D(x[:1].expand(4, -1, -1, -1), y[:1].expand(4))
    assert not torch.allclose(varied[:1], collapsed[:1])  # the same image scores differently in a collapsed batch


class _Oracle:
    """A filter classifier that accepts a candidate when its seed is divisible by 3 (the image carries its seed)."""

    def accepts(self, images: torch.Tensor, label: int) -> np.ndarray:
        return (images[:, 0, 0, 0].numpy().astype(np.int64) % 3) == 0


def _generate(labels: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    return (seeds % 251).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()


def _filtered(*args) -> tuple[np.ndarray, np.ndarray, int]:
    parts = list(filtered_class(*args))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), parts[-1][2]


def test_filtered_class_keeps_the_first_accepted_seeds_whatever_the_batch():
    results = [_filtered(_generate, _Oracle(), 0, 5, 30, batch, 10, "0") for batch in (1, 4, 64)]
    for images, seeds, drawn in results:
        assert seeds.tolist() == [30, 33, 36, 39, 42] and drawn == 13
        assert images[:, 0, 0, 0].tolist() == [30, 33, 36, 39, 42]


def test_filtered_class_streams_in_batches():
    parts = list(filtered_class(_generate, _Oracle(), 0, 5, 30, 4, 10, "0"))
    assert max(len(p[1]) for p in parts) <= 2 and len(parts) >= 3  # a batch of 4 holds at most 2 multiples of 3


def test_filtered_class_gives_up_after_max_draws_with_the_fix():
    with pytest.raises(SynthdataError, match=r"class 'seven': only 0 of 2 candidates .*filter.max_draws 2"):
        _filtered(_generate, _Oracle(), 0, 1, 1, 16, 2, "seven")
