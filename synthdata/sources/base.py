"""What every data source returns, the source registry, and the checks every source shares."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from synthdata.errors import SynthdataError

REGISTRY: dict[str, Callable[..., "LabeledImages"]] = {}

_CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,99}$")


def register(name: str):
    def deco(fn: Callable[..., "LabeledImages"]):
        REGISTRY[name] = fn
        return fn

    return deco


@dataclass
class LabeledImages:
    """A labeled image set in memory: uint8 (N, H, W, C) images, int64 labels, class names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    origins: list[str]  # where each image came from (index in the source, or a relative file path)
    name: str  # the source, for the dataset card
    license: str
    description: str
    splits: np.ndarray | None = None  # a split the source defines itself ('train'/'test'), else None
    extra: dict = field(default_factory=dict)


def require_path(params, kind: str, what: str) -> Path:
    """``data.path`` for sources that read one: present, and an existing folder ('dir') or file ('file')."""
    if not params.path:
        raise SynthdataError(f"data.path: the {params.source} source needs {what}")
    path = Path(params.path)
    if not (path.is_dir() if kind == "dir" else path.is_file()):
        raise SynthdataError(f"{path}: {'folder' if kind == 'dir' else 'file'} not found (data.path)")
    return path


def check_class_names(names: list[str], where: str) -> None:
    """Class names become folder names: only safe names, never '..' or a path separator."""
    for n in names:
        if not _CLASS_NAME.match(n) or n in {".", ".."}:
            raise SynthdataError(
                f"{where}: class name {n!r} cannot be a folder name; use letters, digits, space, '_', '.', "
                "'+' or '-', starting with a letter or digit"
            )
    if len(set(names)) != len(names):
        raise SynthdataError(f"{where}: class names must be unique")


def sortable_names(names: list[str]) -> list[str]:
    """Names that sort in label order: kept if they already do, otherwise prefixed by a padded index."""
    if names == sorted(names):
        return names
    width = len(str(len(names) - 1))
    return [f"{i:0{width}d}_{n}" for i, n in enumerate(names)]


def fit_image(img: Image.Image, size: tuple[int, int] | None, policy: str, where: str) -> Image.Image:
    """Bring one image to ``size`` (height, width) by the declared policy."""
    if size is None or (img.height, img.width) == tuple(size):
        return img
    h, w = size
    if policy == "resize":
        return img.resize((w, h), Image.Resampling.BICUBIC)
    if policy == "center-crop":
        canvas = Image.new(img.mode, (w, h))
        canvas.paste(img, ((w - img.width) // 2, (h - img.height) // 2))
        return canvas
    raise SynthdataError(
        f"{where}: image is {img.height}x{img.width}, not {h}x{w}; set data.resize to 'resize' or "
        "'center-crop' in params.yaml"
    )


def finalize(data: LabeledImages, params) -> LabeledImages:
    """Shared checks and conversions after a source has loaded: sizes, channels, classes."""
    where = params.path or data.name
    x = data.images
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.dtype != np.uint8 or x.shape[-1] not in (1, 3):
        raise SynthdataError(f"{where}: images must be uint8 (N, H, W) or (N, H, W, 1|3), got {x.dtype} {x.shape}")
    if params.image_size is not None and tuple(x.shape[1:3]) != tuple(params.image_size):
        mode = "L" if x.shape[-1] == 1 else "RGB"
        x = np.stack(
            [
                np.asarray(
                    fit_image(
                        Image.fromarray(a.squeeze(-1) if mode == "L" else a, mode),
                        params.image_size,
                        params.resize,
                        where,
                    )
                )
                for a in x
            ]
        )
        x = x[..., None] if x.ndim == 3 else x
    h, w = x.shape[1:3]
    if not (8 <= h <= 64 and 8 <= w <= 64):
        raise SynthdataError(f"{where}: images are {h}x{w}; synthdata supports 8x8 to 64x64 (set data.image_size)")
    if params.channels == 3 and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    elif params.channels == 1 and x.shape[-1] == 3:
        x = np.asarray([np.asarray(Image.fromarray(a).convert("L")) for a in x])[..., None]
    k = len(data.class_names)
    if k < 2:
        raise SynthdataError(f"{where}: found {k} class; a conditional generator needs at least 2 classes")
    check_class_names(data.class_names, where)
    counts = np.bincount(data.labels, minlength=k)
    if (counts == 0).any():
        empty = data.class_names[int(np.flatnonzero(counts == 0)[0])]
        raise SynthdataError(f"{where}: class {empty!r} has no images; add images or remove the class")
    data.images = np.ascontiguousarray(x)
    data.labels = data.labels.astype(np.int64)
    return data
