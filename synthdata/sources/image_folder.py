"""A user's folder with one sub-folder of PNG/JPEG images per class (torchvision ImageFolder layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from synthdata.errors import SynthdataError
from synthdata.sources.base import LabeledImages, fit_image, register, require_path, sortable_names


def _read(path: Path, size, policy: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            if img.format not in ("PNG", "JPEG"):
                raise SynthdataError(f"{path}: {img.format} image; only PNG and JPEG are read")
            img.load()
            img = img.convert("L") if img.mode in ("1", "L", "I", "I;16", "F", "LA") else img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise SynthdataError(f"{path}: not a readable image ({type(exc).__name__}); remove or replace it") from None
    img = fit_image(img, size, policy, str(path))
    return np.asarray(img)


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
                    f"{arrays[0].shape[0]}x{arrays[0].shape[1]}; set data.image_size and data.resize")
            arrays.append(a)
            labels.append(label)
            origins.append(str(f.relative_to(root)))
    rgb = any(a.ndim == 3 for a in arrays)
    images = np.stack([(np.repeat(a[..., None], 3, -1) if rgb and a.ndim == 2 else a) for a in arrays])
    return LabeledImages(
        images=images, labels=np.asarray(labels, dtype=np.int64),
        class_names=sortable_names([d.name for d in class_dirs]), origins=origins, name="image-folder",
        license="see the provider of the image folder", description=f"images from the folder {root.name}",
    )
