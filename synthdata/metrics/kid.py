"""Kernel Inception Distance (Bińkowski et al., 2018, "Demystifying MMD GANs"): the unbiased MMD^2
estimate with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets."""

from __future__ import annotations

import numpy as np


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between two sets (m, d) and (n, d) with the cubic polynomial kernel, float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_distance(
    x: np.ndarray, y: np.ndarray, subset_size: int = 1000, subsets: int = 100, seed: int = 0
) -> tuple[float, float, int]:
    """(mean, std, subset size) of MMD^2 over ``subsets`` random subsets drawn without replacement."""
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)])
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values)), size
