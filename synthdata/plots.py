"""Pictures a person looks at: a sample grid (one row per class) and bar / matrix charts, as PNG files.
The same numbers are also written as CSV tables that ``dvc plots show`` renders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def sample_grid(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, per_class: int, path: Path, scale: int | None = None
) -> None:
    """A PNG with one row per class and up to ``per_class`` images in each (black where a class has fewer)."""
    c, h, w = images.shape[1:]
    scale = scale or max(1, 64 // max(h, w))
    pad = 1
    grid = np.full((num_classes * (h + pad) + pad, per_class * (w + pad) + pad, c), 128, np.uint8)
    for k in range(num_classes):
        rows = images[labels == k][:per_class]
        for j, img in enumerate(rows):
            y, x = pad + k * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = img.permute(1, 2, 0).numpy()
    grid = grid.repeat(scale, 0).repeat(scale, 1)
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(path)


def pairs_grid(pairs: list[tuple[torch.Tensor, torch.Tensor]], path: Path, scale: int | None = None) -> None:
    """A PNG with one row per pair of uint8 images (C, H, W) of one size, side by side (left: the first)."""
    c, h, w = pairs[0][0].shape if pairs else (1, 8, 8)
    scale = scale or max(1, 64 // max(h, w))
    pad = 1
    grid = np.full((max(1, len(pairs)) * (h + pad) + pad, 2 * (w + pad) + 2 * pad, c), 128, np.uint8)
    for k, pair in enumerate(pairs):
        for j, img in enumerate(pair):
            y, x = pad + k * (h + pad), pad + j * (w + 2 * pad)
            grid[y : y + h, x : x + w] = img.permute(1, 2, 0).numpy()
    grid = grid.repeat(scale, 0).repeat(scale, 1)
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(path)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(
    names: list[str],
    values: list[float],
    path: Path,
    title: str,
    ylabel: str,
    errors: list[float] | None = None,
    reference: list[float] | None = None,
    reference_label: str = "",
) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 2), 3.2), dpi=100)
    x = np.arange(len(names))
    ax.bar(x, values, yerr=errors, capsize=3, color="#4c72b0", label=ylabel)
    if reference is not None:
        ax.scatter(x, reference, color="#c44e52", marker="_", s=200, zorder=3, label=reference_label)
        ax.legend(fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def confusion_chart(matrix: list[list[int]], names: list[str], path: Path, title: str) -> None:
    plt = _figure()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(0.45 * len(names) + 2, 0.45 * len(names) + 1.6), dpi=100)
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (real test)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def line_chart(table, x: str, path: Path, title: str) -> None:
    """Every numeric column of a pandas table against column ``x`` (training losses)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    for col in table.columns:
        if col != x:
            ax.plot(table[x], table[col], label=col, linewidth=1)
    ax.set_xlabel(x)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
