"""Fréchet distance between Gaussians fitted to two feature sets (Heusel et al., 2017, "GANs trained by
a two time-scale update rule converge to a local Nash equilibrium").

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)

The trace of the matrix square root is computed from eigenvalues in float64: with S1 = L L^T (Cholesky;
the symmetric square root from ``eigh`` when S1 is singular), the eigenvalues of the symmetric PSD matrix
L^T S2 L are those of S1 S2. A Cholesky and one ``eigvalsh`` replace ``scipy.linalg.sqrtm`` (a Schur
decomposition of a non-symmetric product that returns complex noise); the result is real and non-negative
by construction, never NaN, even for singular covariances.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


class RankDeficientWarning(UserWarning):
    """Fewer samples than feature dimensions: the covariance is singular and FID is biased upward."""


@dataclass(frozen=True)
class FeatureStats:
    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64
    n: int

    @classmethod
    def of(cls, features: np.ndarray, what: str = "features") -> "FeatureStats":
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"{what}: need at least 2 feature vectors, got shape {x.shape}")
        n, d = x.shape
        if n <= d:
            warnings.warn(
                f"{what}: {n} samples in {d} feature dimensions: the covariance is singular and FID "
                "is biased upward; compare only with FIDs of the same sample count",
                RankDeficientWarning,
                stacklevel=2,
            )
        mu = x.mean(axis=0)
        xc = x - mu
        return cls(mu, (xc.T @ xc) / (n - 1), n)


@dataclass(frozen=True)
class Moments:
    """Count, mean and centred scatter (sum of outer products about the mean) of a set of feature vectors: what
    a shard sends back instead of its features. Two sets merge exactly (Chan, Golub and LeVeque's pairwise
    update: the scatters add, plus the outer product of the difference of the means), so the statistics of a
    whole dataset come from its shards', merged in shard order: the same bytes whatever ran them."""

    n: int
    mean: np.ndarray  # (D,) float64
    scatter: np.ndarray  # (D, D) float64

    @classmethod
    def of(cls, features: np.ndarray) -> "Moments":
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features: need a (N, D) array, got shape {x.shape}")
        mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        xc = x - mean
        return cls(len(x), mean, xc.T @ xc)

    def merge(self, other: "Moments") -> "Moments":
        if self.mean.shape != other.mean.shape:
            raise ValueError(f"feature dimensions differ: {self.mean.shape} vs {other.mean.shape}")
        n = self.n + other.n
        if not self.n or not other.n:
            return self if other.n == 0 else other
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        scatter = self.scatter + other.scatter + np.outer(delta, delta) * (self.n * other.n / n)
        return Moments(n, mean, scatter)

    def stats(self, what: str = "features") -> FeatureStats:
        if self.n < 2:
            raise ValueError(f"{what}: need at least 2 feature vectors, got {self.n}")
        return FeatureStats(self.mean, self.scatter / (self.n - 1), self.n)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """Squared Fréchet distance between N(a.mu, a.sigma) and N(b.mu, b.sigma), in float64."""
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature dimensions differ: {a.mu.shape} vs {b.mu.shape}")
    try:  # S1 = L L^T: L^T S2 L has the eigenvalues of S1 S2, and Cholesky is ~10x cheaper than eigh
        root = np.linalg.cholesky(a.sigma)
        middle = root.T @ b.sigma @ root
    except np.linalg.LinAlgError:  # singular S1 (fewer samples than dimensions): the PSD square root
        root = _psd_sqrt(a.sigma)
        middle = root @ b.sigma @ root
    eig = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = a.mu - b.mu
    value = float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * tr_covmean)
    return max(value, 0.0)  # rounding can leave -1e-12 for identical sets


def fid_from_features(x: np.ndarray, y: np.ndarray) -> float:
    return frechet_distance(FeatureStats.of(x, "first set"), FeatureStats.of(y, "second set"))
