"""The real data every scoring stage reads, and the downstream protocol they must share.

``load_splits`` loads the prepared train/val/test splits and checks them (no image in two splits, every class
in every split); ``protocol`` is what the real-only baseline depends on, so ``evaluate`` refuses a baseline
made under another.
"""

from __future__ import annotations

from pathlib import Path

from synthdata.dataset import SPLITS, check_disjoint, load_dataset
from synthdata.errors import SynthdataError
from synthdata.params import Params


def load_splits(params: Params) -> dict:
    splits = {s: load_dataset(Path(params.paths.prepared) / s) for s in SPLITS}
    check_disjoint(splits)
    for s, d in splits.items():
        missing = [c for k, c in enumerate(d.class_names) if not (d.labels == k).any()]
        if missing:
            raise SynthdataError(
                f"{params.paths.prepared}/{s}: class {missing[0]!r} has no images; "
                "add images or change prepare fractions"
            )
    return splits


def protocol(params: Params) -> dict:
    """What the baseline depends on; evaluate refuses a baseline made under another protocol."""
    return {
        "seed": params.evaluate.seed,
        "seeds": params.evaluate.seeds,
        "classifier": params.evaluate.classifier.model_dump(mode="json"),
    }
