"""Precision, recall, density and coverage with k-nearest-neighbour balls in feature space
(Kynkäänniemi et al., 2019, "Improved precision and recall metric"; Naeem et al., 2020, "Reliable
fidelity and diversity metrics for generative models"). Distances are computed in row blocks, so memory
stays O(block x n) rather than O(n^2)."""

from __future__ import annotations

import numpy as np
import torch


def _kth_neighbour_radius(x: torch.Tensor, k: int, block: int) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    out = []
    for lo in range(0, len(x), block):
        d = torch.cdist(x[lo : lo + block], x)
        out.append(d.kthvalue(k + 1, dim=1).values)  # +1: the row itself is at distance 0
    return torch.cat(out)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5, block: int = 2048) -> dict[str, float]:
    """The four metrics of ``fake`` against ``real``; each lies in [0, 1] except density (mean ~1 when
    the sets match)."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} samples per set, got {len(real)} and {len(fake)}")
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    r_radius = _kth_neighbour_radius(r, k, block)
    f_radius = _kth_neighbour_radius(f, k, block)
    inside_real = torch.zeros(len(f), dtype=torch.float64)  # per fake: how many real balls hold it
    covered = torch.zeros(len(r), dtype=torch.bool)  # per real: nearest fake inside its ball
    recalled = torch.zeros(len(r), dtype=torch.bool)  # per real: inside some fake ball
    for lo in range(0, len(r), block):
        d = torch.cdist(r[lo : lo + block], f)  # (block of real, fake)
        inside = d <= r_radius[lo : lo + block, None]
        inside_real += inside.sum(dim=0)
        covered[lo : lo + block] = d.min(dim=1).values <= r_radius[lo : lo + block]
        recalled[lo : lo + block] = (d <= f_radius[None, :]).any(dim=1)
    return {
        "precision": float((inside_real > 0).double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(inside_real.sum() / (k * len(f))),
        "coverage": float(covered.double().mean()),
    }
