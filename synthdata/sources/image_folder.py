"""A user's folder with one sub-folder of PNG/JPEG images per class (torchvision ImageFolder layout)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from synthdata.errors import SynthdataError
from synthdata.sources.base import LabeledImages, fit_image, register, require_path, sortable_names

MAX_PIXELS = 4096 * 4096  # larger images are refused from their header, before any pixel is decoded
_GREY = {"1", "L", "LA", "La"}
_SIXTEEN_BIT = {"I", "I;16", "I;16B", "I;16L", "I;16N"}  # a 16-bit greyscale PNG opens in one of these


def to_uint8(img: Image.Image, path: Path) -> np.ndarray:
    """Pixels as uint8, grey (H, W) or RGB (H, W, 3). 16-bit grey is scaled to 8 bits (65535 -> 255), not
    clipped as Pillow's ``convert("L")`` does; alpha is dropped (as torchvision's ImageFolder loader does);
    16-bit colour PNGs already open as 8-bit (Pillow keeps the high byte)."""
    if img.mode in _SIXTEEN_BIT:
        a = np.asarray(img).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise SynthdataError(
                f"{path}: {img.mode} image with values outside 0..65535; save it as an 8- or 16-bit PNG"
            )
        return ((a * 255 + 32767) // 65535).astype(np.uint8)
    if img.mode in _GREY:
        return np.asarray(img.convert("L"))
    if img.mode == "F":
        raise SynthdataError(f"{path}: floating-point image (mode F); save it as an 8- or 16-bit PNG")
    return np.asarray(img.convert("RGB"))


def _read(path: Path, size, policy: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size check below says it
            img = Image.open(path)
        with img:
            if img.format not in ("PNG", "JPEG"):
                raise SynthdataError(f"{path}: {img.format} image; only PNG and JPEG are read")
            if img.width * img.height > MAX_PIXELS:
                raise SynthdataError(
                    f"{path}: image is {img.width}x{img.height}, above the limit of {MAX_PIXELS:,} "
                    "pixels; shrink it first (synthdata works at 8x8 to 64x64)"
                )
            img.load()
            a = to_uint8(img, path)
    except Image.DecompressionBombError:
        raise SynthdataError(f"{path}: image is above Pillow's decompression-bomb limit; shrink it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise SynthdataError(f"{path}: not a readable image ({type(exc).__name__}); remove or replace it") from None
    if size is None or a.shape[:2] == tuple(size):
        return a
    return np.asarray(fit_image(Image.fromarray(a), size, policy, str(path)))


@register("image-folder")
def load(params) -> LabeledImages:
    root = require_path(params, "dir", "a folder with one sub-folder per class")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise SynthdataError(f"{root}: no class sub-folders; put each class's images in its own folder")
    size = params.image_size
    arrays, labels, origins = [], [], []
    for label, d in enumerate(class_dirs):
        files = sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise SynthdataError(f"{d}: class folder is empty; add images or remove it")
        for f in files:
            a = _read(f, size, params.resize)
            if size is None and arrays and a.shape[:2] != arrays[0].shape[:2]:
                raise SynthdataError(
                    f"{f}: image is {a.shape[0]}x{a.shape[1]} but {origins[0]} is "
                    f"{arrays[0].shape[0]}x{arrays[0].shape[1]}; set data.image_size and data.resize"
                )
            arrays.append(a)
            labels.append(label)
            origins.append(str(f.relative_to(root)))
    rgb = any(a.ndim == 3 for a in arrays)
    images = np.stack([(np.repeat(a[..., None], 3, -1) if rgb and a.ndim == 2 else a) for a in arrays])
    return LabeledImages(
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        class_names=sortable_names([d.name for d in class_dirs]),
        origins=origins,
        name="image-folder",
        license="see the provider of the image folder",
        description=f"images from the folder {root.name}",
    )
