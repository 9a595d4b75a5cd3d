"""MNIST from its original IDX files (gzip or raw), in a folder or its ``MNIST/raw`` sub-folder.

The official 10,000-image test set is kept as the test split.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from synthdata.errors import SynthdataError
from synthdata.sources.base import LabeledImages, register, require_path

FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def _find(folder: Path, stem: str) -> Path:
    for base in (folder, folder / "MNIST" / "raw"):
        for candidate in (base / f"{stem}.gz", base / stem):
            if candidate.is_file():
                return candidate
    raise SynthdataError(f"{folder}: MNIST file {stem}(.gz) not found; set data.path to the folder holding it")


MAX_IDX_BYTES = 1 << 30  # MNIST's largest file is 47 MB; a gzip bomb stops here, not at the memory's end


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (magic 0x0000080N: unsigned bytes, N dimensions)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise SynthdataError(f"{path}: cannot read IDX file ({exc}); re-download it") from None
    if len(raw) > MAX_IDX_BYTES:
        raise SynthdataError(f"{path}: more than {MAX_IDX_BYTES:,} bytes (decompressed); not an MNIST IDX file")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SynthdataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise SynthdataError(f"{path}: truncated IDX file ({data.size} bytes for shape {tuple(dims)})")
    return data.reshape(dims)


@register("mnist")
def load(params) -> LabeledImages:
    folder = require_path(params, "dir", "the folder of its IDX files")
    parts = {key: read_idx(_find(folder, stem)) for key, stem in FILES.items()}
    images, labels, splits, origins = [], [], [], []
    for split in ("train", "test"):
        x, y = parts[(split, "images")], parts[(split, "labels")]
        if len(x) != len(y):
            raise SynthdataError(f"{folder}: {split} has {len(x)} images but {len(y)} labels")
        images.append(x)
        labels.append(y.astype(np.int64))
        splits += [split] * len(x)
        origins += [f"mnist-{split}:{i}" for i in range(len(x))]
    labels_all = np.concatenate(labels)
    if labels_all.max() > 9:
        raise SynthdataError(f"{folder}: MNIST labels must be 0..9, found {labels_all.max()}")
    return LabeledImages(
        images=np.concatenate(images),
        labels=labels_all,
        class_names=[str(i) for i in range(10)],
        origins=origins,
        name="mnist",
        license="CC BY-SA 3.0 (MNIST, LeCun, Cortes and Burges)",
        description="MNIST handwritten digits, 28x28 grayscale, 60,000 train and 10,000 test images",
        splits=np.asarray(splits),
    )
