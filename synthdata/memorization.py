"""Does a generator copy its training images? For every synthetic image, the distance to its nearest real
*train* image, in the domain features and in pixels, against the distances from the real *test* images to the
train split (images the generator never saw): in each space, a synthetic image closer to a train image than the
1st percentile of the test-to-train distances is counted as memorized, and the memorized fraction is the larger
of the two spaces'. A generator that returns its training images scores 1, one that returns noise 0; real
held-out images score about 0.01 by construction.

Distances are Euclidean, computed in float64 as |q|^2 + |r|^2 - 2 q.r blockwise (for uint8 pixels every term
is an exact integer, so a copy is at distance 0 exactly), the nearest index the first of equal ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SPACES = ("features", "pixels")
PERCENTILE = 1.0


def flat(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, C, H, W) as float64 rows (N, C*H*W)."""
    return images.reshape(len(images), -1).to(torch.float64)


@torch.no_grad()
def nearest(query, reference, query_block: int = 1024, reference_block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``query``, the Euclidean distance to its nearest row of ``reference`` and that row's index
    (float64 and int64 arrays). Both are (N, D) arrays or tensors of any real dtype."""
    r = torch.as_tensor(np.asarray(reference) if not torch.is_tensor(reference) else reference)
    if len(r) == 0:
        raise ValueError("nearest: the reference set is empty")
    q = torch.as_tensor(np.asarray(query) if not torch.is_tensor(query) else query).reshape(len(query), -1)
    r = r.reshape(len(r), -1)
    best = torch.full((len(q),), float("inf"), dtype=torch.float64)
    index = torch.zeros(len(q), dtype=torch.int64)
    for rlo in range(0, len(r), reference_block):
        rb = r[rlo : rlo + reference_block].to(torch.float64)
        rr = (rb * rb).sum(1)
        for qlo in range(0, len(q), query_block):
            qb = q[qlo : qlo + query_block].to(torch.float64)
            d2 = (qb * qb).sum(1, keepdim=True) + rr[None, :] - 2.0 * (qb @ rb.T)
            value, at = d2.min(1)
            better = value < best[qlo : qlo + len(qb)]  # strict: the first of equal distances is kept
            best[qlo : qlo + len(qb)] = torch.where(better, value, best[qlo : qlo + len(qb)])
            index[qlo : qlo + len(qb)] = torch.where(better, at + rlo, index[qlo : qlo + len(qb)])
    return best.clamp_min(0.0).sqrt().numpy(), index.numpy()


@dataclass(frozen=True)
class Verdict:
    """The memorization check of one synthetic set."""

    thresholds: dict[str, float]  # per space: the PERCENTILE-th percentile of the test-to-train distances
    flagged: np.ndarray  # (N,) bool: closer than the threshold in some space
    flagged_by: dict[str, np.ndarray]  # per space
    closeness: np.ndarray  # (N,) min over spaces of distance / threshold (smallest = most memorized)

    def fraction(self, rows: np.ndarray | None = None, space: str | None = None) -> float:
        """The share of memorized rows in ``space``, or (``None``) the larger of the spaces' shares."""
        if space is None:
            return max(self.fraction(rows, s) for s in self.flagged_by)
        f = self.flagged_by[space] if rows is None else self.flagged_by[space][rows]
        return float(f.mean()) if len(f) else float("nan")


def judge(synthetic: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> Verdict:
    """``synthetic[space]`` and ``test[space]``: each row's distance to its nearest real train image."""
    thresholds = {s: float(np.percentile(test[s], PERCENTILE)) for s in SPACES}
    by = {s: synthetic[s] < thresholds[s] for s in SPACES}
    ratio = np.stack([synthetic[s] / max(thresholds[s], 1e-12) for s in SPACES]).min(0)
    return Verdict(thresholds, np.logical_or.reduce([by[s] for s in SPACES]), by, ratio)
