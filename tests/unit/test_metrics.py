"""FID, KID and PRDC against float64 references and constructed cases with known answers."""

import warnings

import numpy as np
import prdc as prdc_reference
import pytest
import scipy.linalg

from synthdata.metrics import FeatureStats, fid_from_features, frechet_distance, kernel_distance, prdc
from synthdata.metrics.fid import Moments, RankDeficientWarning
from synthdata.metrics.kid import mmd2_unbiased


def _scipy_fid(a: FeatureStats, b: FeatureStats) -> float:
    covmean = scipy.linalg.sqrtm(a.sigma @ b.sigma).real
    return float(((a.mu - b.mu) ** 2).sum() + np.trace(a.sigma) + np.trace(b.sigma) - 2 * np.trace(covmean))


def _random_cov(rng, d):
    m = rng.normal(size=(d, d))
    return m @ m.T / d + 0.01 * np.eye(d)


@pytest.mark.parametrize("d", [2, 16, 128])
def test_frechet_distance_matches_scipy_sqrtm_reference(d):
    rng = np.random.default_rng(d)
    for _ in range(3):
        a = FeatureStats(rng.normal(size=d), _random_cov(rng, d), 10 * d)
        b = FeatureStats(rng.normal(size=d), _random_cov(rng, d), 10 * d)
        ours, ref = frechet_distance(a, b), _scipy_fid(a, b)
        assert ours == pytest.approx(ref, rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    x = np.random.default_rng(0).normal(size=(400, 32))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    assert fid_from_features(x, x + 0.5) == pytest.approx(32 * 0.25, rel=1e-9)  # only the mean term changes


def test_fewer_samples_than_dimensions_warns_and_never_gives_nan():
    x = np.random.default_rng(1).normal(size=(10, 50))
    y = np.random.default_rng(2).normal(size=(12, 50))
    with pytest.warns(RankDeficientWarning) as record:
        value = fid_from_features(x, y)
    assert {str(w.message).split(":")[1].strip() for w in record} == {
        "10 samples in 50 feature dimensions",
        "12 samples in 50 feature dimensions",
    }
    assert np.isfinite(value) and value > 0


def test_frechet_distance_rejects_mismatched_dimensions():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = FeatureStats.of(np.zeros((5, 3)) + np.arange(5)[:, None]), FeatureStats.of(np.ones((5, 4)))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(a, b)


def test_moments_merged_from_shards_give_the_statistics_of_the_whole_set():
    rng = np.random.default_rng(3)
    x = rng.normal(5.0, 2.0, size=(1003, 6)) @ rng.normal(size=(6, 6))  # large mean: the naive sums would lose digits
    whole = FeatureStats.of(x)
    parts = [Moments.of(x[lo : lo + 97]) for lo in range(0, len(x), 97)]
    merged = Moments.of(np.zeros((0, 6)))
    for part in parts:
        merged = merged.merge(part)
    stats = merged.stats()
    assert stats.n == 1003
    np.testing.assert_allclose(stats.mu, whole.mu, rtol=1e-13)
    np.testing.assert_allclose(stats.sigma, whole.sigma, rtol=1e-11, atol=1e-11)
    assert frechet_distance(stats, whole) == pytest.approx(0.0, abs=1e-8)
    other = Moments.of(x[:500]).merge(Moments.of(x[500:]))  # another split: the same statistics
    np.testing.assert_allclose(other.stats().sigma, stats.sigma, rtol=1e-11, atol=1e-11)
    with pytest.raises(ValueError, match="at least 2"):
        Moments.of(x[:1]).stats()
    with pytest.raises(ValueError, match="dimensions differ"):
        merged.merge(Moments.of(x[:, :3]))


def test_kid_known_answer_on_constant_sets():
    d = 4
    x = np.zeros((20, d))  # k(x, x') = (0 + 1)^3 = 1
    y = np.ones((30, d))  # k(y, y') = (1 + 1)^3 = 8, k(x, y) = 1
    assert mmd2_unbiased(x, y) == pytest.approx(1 + 8 - 2 * 1)
    mean, std, size = kernel_distance(x, y, subset_size=10, subsets=7)
    assert (mean, std, size) == (pytest.approx(7.0), pytest.approx(0.0), 10)


def test_kid_is_near_zero_for_one_distribution_and_large_for_two():
    rng = np.random.default_rng(0)
    same = kernel_distance(rng.normal(size=(1000, 8)), rng.normal(size=(1000, 8)), 500, 20)[0]
    apart = kernel_distance(rng.normal(size=(1000, 8)), rng.normal(size=(1000, 8)) + 1.0, 500, 20)[0]
    assert abs(same) < 0.05 and apart > 1.0


def test_prdc_matches_the_reference_implementation():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(300, 12)), rng.normal(size=(250, 12)) * 1.2 + 0.3
    ours = prdc(real, fake, k=5, block=64)  # small blocks exercise the chunking
    ref = prdc_reference.compute_prdc(real, fake, nearest_k=5)
    assert ours == {k: pytest.approx(float(v), abs=1e-12) for k, v in ref.items()}


def test_prdc_known_answers():
    real = np.random.default_rng(4).normal(size=(200, 6))
    same = prdc(real, real.copy(), k=3)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = prdc(real, real + 100.0, k=3)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    # a fake set that collapses onto one real point: perfect precision, tiny recall and coverage
    collapsed = prdc(real, np.repeat(real[:1], 50, axis=0) + 1e-9, k=3)
    assert collapsed["precision"] == 1.0 and collapsed["coverage"] < 0.1 and collapsed["recall"] < 0.1
