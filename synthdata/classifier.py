"""The small CNN behind the downstream check and the domain feature extractor.

One architecture and one training budget (steps x batch size) for every training set, so accuracies of
classifiers trained on real, synthetic and augmented data compare like for like. Model selection uses
the real validation split only: the weights kept are those of the evaluation with the best validation
accuracy, and training stops early after ``patience`` evaluations without improvement. The test split is
never seen here; callers score the returned model on it.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from synthdata import checkpoint
from synthdata.errors import SynthdataError
from synthdata.params import ClassifierParams
from synthdata.runtime import BatchSampler
from synthdata.seeding import derive


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Two conv stages with pooling, a ``feature_dim`` embedding (the FID features), a linear head."""

    def __init__(self, in_channels: int, num_classes: int, image_hw: tuple[int, int], width: int, feature_dim: int):
        super().__init__()
        pools = 1 if min(image_hw) < 16 else 2
        layers = _block(in_channels, width) + _block(width, width) + [nn.MaxPool2d(2)]
        layers += _block(width, 2 * width) + _block(2 * width, 2 * width)
        layers += [nn.MaxPool2d(2)] * (pools - 1) + [nn.AdaptiveAvgPool2d(2), nn.Flatten()]
        self.trunk = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Linear(8 * width, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(feature_dim, num_classes)

    @staticmethod
    def normalize(images: torch.Tensor) -> torch.Tensor:
        return images.float() / 127.5 - 1.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def random_affine(x: torch.Tensor, shift: float, rotate: float, rng: torch.Generator) -> torch.Tensor:
    """Per-sample random translation (up to ``shift`` pixels) and rotation (up to ``rotate`` degrees)."""
    n, _, h, w = x.shape
    u = torch.rand(n, 3, generator=rng) * 2 - 1
    angle = u[:, 0] * math.radians(rotate)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, u[:, 1] * 2 * shift / w], 1), torch.stack([sin, cos, u[:, 2] * 2 * shift / h], 1)], 1
    ).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def save(path: Path, model: SmallCNN, info: dict) -> str:
    """Weights as tensors plus the architecture as JSON (``info``), in the one checkpoint format; returns the
    file's sha256."""
    return checkpoint.write_tensors(
        path,
        {"format": checkpoint.CLASSIFIER_FORMAT, **info},
        {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}},
    )


def load(path: Path, what: str, remedy: str) -> tuple[SmallCNN, dict]:
    """A classifier written by :func:`save`, in eval mode on the CPU, and its info."""
    info, state = checkpoint.read_tensors(path, checkpoint.CLASSIFIER_FORMAT, what, remedy)
    try:
        model = SmallCNN(
            info["in_channels"], info["num_classes"], tuple(info["image_hw"]), info["width"], info["feature_dim"]
        )
        model.load_state_dict(state["model"])
    except Exception as exc:
        raise SynthdataError(
            f"{path}: not a readable {what} ({str(exc).splitlines()[0][:120]}); {remedy} again"
        ) from None
    return model.eval(), info


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch: int = 1024, features: bool = False) -> torch.Tensor:
    """Logits (or embeddings) for uint8 images, in eval mode, batch by batch; returned on the CPU."""
    device = next(model.parameters()).device
    model.eval()
    out = [
        (model.features if features else model)(SmallCNN.normalize(images[lo : lo + batch].to(device))).float().cpu()
        for lo in range(0, len(images), batch)
    ]
    return torch.cat(out) if out else torch.empty(0)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predict(model, images).argmax(1) == labels).double().mean())


class MixedBatchSampler:
    """Batches with a fixed share of indices below ``n_first`` (the real images of a real+synthetic set,
    stored first) and the rest from the others, each part an epoch-wise permutation of its own."""

    def __init__(self, n_first: int, n_rest: int, batch_size: int, first_fraction: float, seed: int):
        k = min(n_first, batch_size - 1, max(1, round(batch_size * first_fraction)))
        self.offset = n_first
        self.first = BatchSampler(n_first, k, derive(seed, "first"))
        self.rest = BatchSampler(n_rest, batch_size - k, derive(seed, "rest"))

    def __call__(self, step: int) -> torch.Tensor:
        return torch.cat([self.first(step), self.rest(step) + self.offset])


def fit(
    images: torch.Tensor,
    labels: torch.Tensor,
    val_images: torch.Tensor | None,
    val_labels: torch.Tensor | None,
    num_classes: int,
    cfg: ClassifierParams,
    seed: int,
    device: torch.device,
    mix: tuple[int, float] | None = None,
) -> tuple[SmallCNN, dict]:
    """Train a SmallCNN on uint8 ``images``; returns the weights with the best real-val accuracy, or, with
    no val split (``val_images=None``), the weights after the whole budget (no early stopping).
    ``mix=(n_first, fraction)``: every batch draws ``fraction`` of its images from the first ``n_first``
    (real images ahead of synthetic ones) instead of in proportion to the counts."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive(seed, "init"))
        model = SmallCNN(images.shape[1], num_classes, tuple(images.shape[2:]), cfg.width, cfg.feature_dim)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    if mix is None:
        sampler = BatchSampler(len(images), cfg.batch_size, derive(seed, "batches"))
    else:
        sampler = MixedBatchSampler(mix[0], len(images) - mix[0], cfg.batch_size, mix[1], derive(seed, "batches"))
    rng = torch.Generator().manual_seed(derive(seed, "augment"))
    best = (-1.0, 0, None)  # (val accuracy, step, weights)
    stale = 0
    for step in range(cfg.steps):
        model.train()
        idx = sampler(step)
        x = SmallCNN.normalize(images[idx]).to(device)
        if cfg.shift or cfg.rotate:
            x = random_affine(x, cfg.shift, cfg.rotate, rng)
        loss = F.cross_entropy(model(x), labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if val_images is None:
            continue
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            val = accuracy(model, val_images, val_labels)
            if val > best[0]:
                best, stale = (val, step + 1, copy.deepcopy(model.state_dict())), 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
    model.eval()
    if val_images is None:
        return model, {"val_accuracy": None, "best_step": cfg.steps, "steps_run": cfg.steps}
    model.load_state_dict(best[2])
    return model, {"val_accuracy": best[0], "best_step": best[1], "steps_run": step + 1}


def trials(
    images: torch.Tensor,
    labels: torch.Tensor,
    val,
    test,
    num_classes: int,
    cfg: ClassifierParams,
    seed: int,
    seeds: int,
    device: torch.device,
    mix: tuple[int, float] | None = None,
) -> list[dict]:
    """Train ``seeds`` classifiers on (images, labels), select on ``val``, score on ``test`` (datasets with
    ``images`` and ``labels``). Seed i is the same for every training set, so only the data differs.
    ``mix``: as in :func:`fit`."""
    out = []
    for i in range(seeds):
        model, info = fit(
            images, labels, val.images, val.labels, num_classes, cfg, derive(seed, "classifier", i), device, mix
        )
        pred = predict(model, test.images).argmax(1)
        confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        confusion.index_put_((test.labels, pred), torch.ones_like(pred), accumulate=True)
        out.append(
            {
                **info,
                "test_accuracy": float((pred == test.labels).double().mean()),
                "confusion": confusion.tolist(),
                "model": model,
            }
        )
    return out


def summarize(runs: list[dict]) -> dict:
    """Mean and std of test accuracy, per-class recall (mean over seeds), and seed 0's confusion matrix."""
    acc = torch.tensor([r["test_accuracy"] for r in runs], dtype=torch.float64)
    conf = torch.tensor([r["confusion"] for r in runs], dtype=torch.float64)
    recall = (conf.diagonal(dim1=1, dim2=2) / conf.sum(2).clamp(min=1)).mean(0)
    return {
        "mean": float(acc.mean()),
        "std": float(acc.std(unbiased=False)),
        "per_seed": acc.tolist(),
        "per_class": recall.tolist(),
        "confusion": runs[0]["confusion"],
        "val_accuracy": [r["val_accuracy"] for r in runs],
        "best_step": [r["best_step"] for r in runs],
    }
