"""The memorization check on known cases: nearest neighbours equal scipy's, copies of the train split score 1,
noise 0, held-out real images about the percentile the threshold is set at."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from synthdata.memorization import PERCENTILE, flat, judge, nearest


def test_nearest_matches_scipy_over_any_blocking_and_keeps_the_first_of_ties():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (301, 3, 4, 4), dtype=np.uint8)
    ref[7] = ref[3]  # a tie: index 3 is the one kept
    query = np.concatenate([ref[[3, 100]], rng.integers(0, 256, (40, 3, 4, 4), dtype=np.uint8)])
    want = cdist(query.reshape(len(query), -1).astype(float), ref.reshape(len(ref), -1).astype(float))
    for qb, rb in ((1024, 8192), (7, 13), (1, 1)):
        d, i = nearest(flat(torch.from_numpy(query)), flat(torch.from_numpy(ref)), qb, rb)
        assert d[0] == 0.0 and i[0] == 3 and d[1] == 0.0 and i[1] == 100  # copies: exactly 0
        np.testing.assert_allclose(d, want.min(1), rtol=1e-12)
        np.testing.assert_array_equal(i, want.argmin(1))
    with pytest.raises(ValueError, match="empty"):
        nearest(query.reshape(len(query), -1), np.zeros((0, 48)))


def _real(n: int, rng) -> np.ndarray:  # smooth "images" of two kinds, so neighbours mean something
    base = rng.normal(size=(2, 64))
    return base[rng.integers(0, 2, n)] + 0.3 * rng.normal(size=(n, 64))


def test_copies_score_one_noise_zero_and_held_out_images_the_percentile():
    rng = np.random.default_rng(1)
    train, test = _real(2000, rng), _real(1000, rng)
    test_d = {s: nearest(test, train)[0] for s in ("features", "pixels")}
    copies = train[rng.integers(0, len(train), 500)]
    noise = rng.normal(scale=5.0, size=(500, 64))
    held_out = _real(1000, rng)
    for data, low, high in ((copies, 1.0, 1.0), (noise, 0.0, 0.0), (held_out, 0.0, 0.04)):
        d = {s: nearest(data, train)[0] for s in ("features", "pixels")}
        v = judge(d, test_d)
        assert low <= v.fraction() <= high
        assert v.fraction() == max(v.fraction(space="features"), v.fraction(space="pixels"))
    v = judge(test_d, test_d)  # held-out images score the percentile, by construction
    assert v.fraction() == pytest.approx(PERCENTILE / 100, abs=0.002)
    closest = np.argsort(judge({s: nearest(copies, train)[0] for s in test_d}, test_d).closeness)
    assert len(closest) == 500
