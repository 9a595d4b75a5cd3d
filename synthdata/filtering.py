"""Classifier-filtered sampling: the filter classifier (a classifier trained on the real train split only, by the
``filter`` stage) and the filter that keeps a candidate of class *k* only if the filter classifier predicts *k* (with
probability >= ``filter.min_confidence``).

Candidates of class *k* use latent seeds ``sample.seed + k * 2**32 + j`` for j = 0, 1, 2, ...; the kept
images are the first ``count_k`` candidates the filter classifier accepts, and each one's seed is in the ``seed``
column, so every kept image is still remade bit for bit by ``generate([k], seed)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from synthdata import classifier
from synthdata.errors import SynthdataError
from synthdata.fsutil import sha256_file
from synthdata.params import Params

FILE = "classifier.pt"
INFO = "classifier.json"
CLASS_STRIDE = 2**32  # latent seeds of class k's candidates start at sample.seed + k * CLASS_STRIDE


class FilterClassifier:
    """The trained filter classifier, checked against the data the generator was trained on."""

    def __init__(self, params: Params, class_names: list[str], device: torch.device):
        folder = Path(params.paths.filter)
        info = json.loads((folder / INFO).read_text()) if (folder / INFO).is_file() else {"enabled": False}
        if not info.get("enabled"):
            raise SynthdataError(
                f"{folder}: no filter classifier trained; filter.enabled is true, so run "
                "'synthdata filter' (or 'dvc repro') first"
            )
        train_sha = sha256_file(Path(params.paths.prepared) / "train" / "metadata.parquet")
        if info["class_names"] != class_names or info["train_sha256"] != train_sha:
            raise SynthdataError(
                f"{folder}: the filter classifier was trained on other data than "
                f"{params.paths.prepared}/train; run 'synthdata filter' again"
            )
        self.model, _ = classifier.load(folder / FILE, "filter classifier", "run 'synthdata filter'")
        self.info = info
        self.model.to(device)
        self.min_confidence = params.filter.min_confidence

    def accepts(self, images: torch.Tensor, label: int) -> np.ndarray:
        """Boolean mask: the filter classifier predicts ``label`` (with at least ``min_confidence``) for each
        uint8 image."""
        probs = classifier.predict(self.model, images).softmax(1)
        ok = probs.argmax(1) == label
        if self.min_confidence > 0:
            ok &= probs[:, label] >= self.min_confidence
        return ok.numpy()


def filtered_class(
    generate,
    clf: FilterClassifier,
    label: int,
    count: int,
    first_seed: int,
    batch: int,
    max_draws: int,
    class_name: str,
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Yield (images, seeds, drawn so far) of the first ``count`` accepted candidates of one class, batch by
    batch (memory does not grow with ``count``); the last ``drawn`` is how many candidates it took.

    ``generate(labels, seeds)`` returns uint8 images. Candidates go in seed order, so the result does not
    depend on ``batch``.
    """
    drawn, kept = 0, 0
    while kept < count:
        if drawn >= max_draws * count:
            raise SynthdataError(
                f"filter: class {class_name!r}: only {kept} of {drawn} candidates accepted by the filter classifier "
                f"(needed {count}; filter.max_draws {max_draws}); train the generator longer, lower "
                "filter.min_confidence or raise filter.max_draws"
            )
        n = min(batch, max_draws * count - drawn)
        seeds = first_seed + drawn + np.arange(n, dtype=np.int64)
        images = generate(torch.full((n,), label, dtype=torch.long), torch.from_numpy(seeds))
        ok = np.flatnonzero(clf.accepts(images, label))[: count - kept]
        kept += len(ok)
        # candidates after the last kept one do not count
        drawn += int(ok[-1]) + 1 if kept == count else n
        if len(ok):
            yield images[ok].numpy(), seeds[ok], drawn
