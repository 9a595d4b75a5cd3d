"""Checkpoint selection on the real val split: which training step's sampling (EMA) networks become the
generator that ``sample`` uses.

Every ``train.select_every`` steps (and at the last one) the sampling networks make a fixed set of images (the
labels of a seeded subsample of the real train split, latent seeds from the counter-based noise, so every point
of the curve sees the same noise) and the domain feature extractor of the ``reference`` stage compares them
with the real **val** split: FID over its floor (the FID of the same number of real train images, same
labels, against val), overall and for the worst class; and, when ``train.select_metric`` is ``val_tstr_error``,
the error on val of a small classifier trained on those images alone (``evaluate.classifier`` for
``train.select_tstr_steps`` steps: train on synthetic, test on real val). The val split is the only held-out
data it reads; the test split is never opened (a test trains with it removed).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from synthdata import classifier, features
from synthdata.dataset import load_dataset
from synthdata.metrics.fid import FeatureStats, frechet_distance
from synthdata.params import Params
from synthdata.seeding import derive

CRITERIA = ("val_fid_ratio", "val_class_fid_ratio_max", "val_tstr_error")


def _stats(x: np.ndarray, what: str) -> FeatureStats | None:
    return FeatureStats.of(x, what) if len(x) >= 2 else None


class ValScorer:
    """Scores a generator's sampling networks on the real val split (lower is better for every criterion)."""

    def __init__(self, params: Params, name: str, device: torch.device):
        prepared = Path(params.paths.prepared)
        with torch.random.fork_rng(devices=[]):  # building the network draws initial weights: not from training's
            self.extractor = features.REGISTRY["domain"](params, device)  # cheap, and needs no download
        train, val = load_dataset(prepared / "train"), load_dataset(prepared / "val")
        seed = derive(params.train.seed, name, "select")
        rng = np.random.default_rng(seed)
        n = min(params.train.select_images, len(train.labels))
        rows = np.sort(rng.choice(len(train.labels), n, replace=False))
        self.labels = train.labels[torch.from_numpy(rows)]
        self.seeds = torch.arange(n, dtype=torch.int64) + (seed % 2**40)  # one fixed set of noise for every step
        y_val = val.labels.numpy()
        self.classes = len(train.class_names)
        self.val_images, self.val_labels, self.device = val.images, val.labels, device
        self.tstr = params.train.select_metric == "val_tstr_error"
        cfg = params.evaluate.classifier
        self.tstr_cfg = cfg.model_copy(update={"steps": params.train.select_tstr_steps})
        self.tstr_seed = derive(seed, "tstr")
        with warnings.catch_warnings():  # few val images per class: biased but comparable from step to step
            warnings.simplefilter("ignore")
            f_val, f_train = self.extractor(val.images), self.extractor(train.images[torch.from_numpy(rows)])
            self.val = FeatureStats.of(f_val, "real val")
            self.val_class = [_stats(f_val[y_val == k], "real val") for k in range(self.classes)]
            self.floor = frechet_distance(FeatureStats.of(f_train, "real train"), self.val)
            y = self.labels.numpy()
            self.class_floor = [
                frechet_distance(s, v) if (s := _stats(f_train[y == k], "real train")) and v else float("nan")
                for k, v in enumerate(self.val_class)
            ]

    def __call__(self, model) -> dict[str, float]:
        with torch.no_grad():
            images = model.generate_from_seeds(self.labels, self.seeds)
        f = self.extractor(images)
        y = self.labels.numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fid = frechet_distance(FeatureStats.of(f, "synthetic"), self.val)
            ratios = []
            for k, v in enumerate(self.val_class):
                s = _stats(f[y == k], "synthetic")
                if s is not None and v is not None and self.class_floor[k] > 0:
                    ratios.append(frechet_distance(s, v) / self.class_floor[k])
        scores = {
            "val_fid": fid,
            "val_fid_ratio": fid / self.floor if self.floor > 0 else float("inf"),
            "val_class_fid_ratio_max": max(ratios) if ratios else float("nan"),
        }
        if self.tstr:
            net, _ = classifier.fit(
                images, self.labels, None, None, self.classes, self.tstr_cfg, self.tstr_seed, self.device
            )
            scores["val_tstr_error"] = 1.0 - classifier.accuracy(net, self.val_images, self.val_labels)
        return scores
