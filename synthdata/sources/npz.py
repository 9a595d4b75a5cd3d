"""A NumPy ``.npz`` file with ``x`` (N, H, W[, C]) uint8 images, ``y`` (N,) integer labels and, optionally,
``class_names`` (K,) strings."""

from __future__ import annotations

import zipfile

import numpy as np

from synthdata.errors import SynthdataError
from synthdata.sources.base import LabeledImages, register, require_path, sortable_names

MAX_ARRAY_BYTES = 4 << 30  # refused from the array headers, before anything is loaded


def _check_sizes(path) -> None:
    """Read each member's .npy header (shape, dtype) and refuse an array too large to load."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(member)
                nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                if nbytes > MAX_ARRAY_BYTES:
                    raise SynthdataError(
                        f"{path}: array {info.filename.removesuffix('.npy')!r} {tuple(shape)} "
                        f"would take {nbytes / 2**30:,.1f} GiB; the limit is "
                        f"{MAX_ARRAY_BYTES / 2**30:.0f} GiB"
                    )
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise SynthdataError(f"{path}: not a readable .npz file ({exc})") from None


@register("npz")
def load(params) -> LabeledImages:
    path = require_path(params, "file", "the path of a .npz file")
    _check_sizes(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise SynthdataError(f"{path}: not a readable .npz file ({exc})") from None
    missing = {"x", "y"} - set(arrays)
    if missing:
        raise SynthdataError(f"{path}: missing array(s) {sorted(missing)}; expected 'x' images and 'y' labels")
    x, y = arrays["x"], arrays["y"]
    if x.dtype != np.uint8:
        raise SynthdataError(f"{path}: 'x' must be uint8, got {x.dtype}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(x):
        raise SynthdataError(f"{path}: 'y' must be {len(x)} integer labels, got {y.dtype} {y.shape}")
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"]]
    else:
        names = [str(i) for i in range(int(y.max()) + 1 if len(y) else 0)]
    if len(y) and (y.min() < 0 or y.max() >= len(names)):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise SynthdataError(f"{path}: label {bad} is out of range 0..{len(names) - 1}")
    return LabeledImages(
        images=x,
        labels=y.astype(np.int64),
        class_names=sortable_names(names),
        origins=[f"{path.name}:{i}" for i in range(len(x))],
        name="npz",
        license=str(arrays.get("license", "see the provider of the .npz file")),
        description=f"arrays from {path.name}",
    )
