"""The contract every registered data source must pass. A new source adds one example here (the first test
fails until it does) and gets the rest for free."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthdata import sources
from synthdata.errors import SynthdataError
from synthdata.params import DataParams
from tests.conftest import idx_bytes, make_npz


def _mnist(tmp: Path) -> dict:
    from synthdata.sources.mnist import FILES

    rng = np.random.default_rng(0)
    for split, count in {"train": 30, "test": 10}.items():
        (tmp / f"{FILES[(split, 'images')]}.gz").write_bytes(
            gzip.compress(idx_bytes(rng.integers(0, 256, (count, 28, 28))), mtime=0)
        )
        (tmp / f"{FILES[(split, 'labels')]}.gz").write_bytes(gzip.compress(idx_bytes(np.arange(count) % 10), mtime=0))
    return {"path": str(tmp)}


def _folder(tmp: Path) -> dict:
    for c in ("ant", "bee", "cat"):
        (tmp / c).mkdir()
        for i in range(4):
            Image.fromarray(np.full((9, 11), 30 * i + len(c), np.uint8), "L").save(tmp / c / f"{i}.png")
    return {"path": str(tmp)}


EXAMPLES = {  # source name -> writes example input under a temporary folder, returns the data.* settings
    "sklearn-digits": lambda tmp: {},
    "npz": lambda tmp: {"path": str(make_npz(tmp / "x.npz"))},
    "image-folder": _folder,
    "mnist": _mnist,
}
NAMES = sorted(sources.REGISTRY)


def test_every_source_has_an_example():
    assert sorted(EXAMPLES) == NAMES, "add an example input for the new source to EXAMPLES"


@pytest.mark.parametrize("name", NAMES)
def test_loads_labeled_uint8_images_and_is_deterministic(name, tmp_path):
    params = DataParams(source=name, **EXAMPLES[name](tmp_path))
    a, b = sources.load(params), sources.load(params)
    n = len(a.labels)
    assert a.images.dtype == np.uint8 and a.images.ndim == 4 and len(a.images) == n > 0
    assert a.images.shape[3] in (1, 3) and all(8 <= s <= 64 for s in a.images.shape[1:3])
    assert a.labels.min() >= 0 and a.labels.max() < len(a.class_names)
    assert set(np.unique(a.labels)) == set(range(len(a.class_names)))  # no empty class survives
    assert len(a.origins) == n and a.name and a.license and a.description
    assert a.splits is None or set(np.unique(a.splits)) <= {"train", "test"}
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels) and a.origins == b.origins


@pytest.mark.parametrize("name", [n for n in NAMES if n != "sklearn-digits"])
def test_a_missing_path_is_one_clear_error(name, tmp_path):
    with pytest.raises(SynthdataError, match="not found|needs"):
        sources.load(DataParams(source=name, path=str(tmp_path / "nothing-here")))
