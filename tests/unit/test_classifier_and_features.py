"""The downstream classifier, the feature extractors and the leakage guards, on tiny data."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits

from synthdata import classifier, features
from synthdata.dataset import check_disjoint
from synthdata.errors import SynthdataError
from synthdata.params import ClassifierParams, load_params
from tests.conftest import write_params

CPU = torch.device("cpu")


def _digits():
    d = load_digits()
    x = torch.from_numpy(np.round(d.images * 255 / 16).astype(np.uint8))[:, None]
    y = torch.from_numpy(d.target).long()
    split = lambda lo, hi: SimpleNamespace(images=x[lo:hi], labels=y[lo:hi])  # noqa: E731
    return split(0, 1000), split(1000, 1300), split(1300, 1797)


def test_real_labels_beat_shuffled_labels_on_the_real_test_split():
    train, val, test = _digits()
    cfg = ClassifierParams(width=8, feature_dim=16, steps=150, eval_every=50)
    real = classifier.summarize(classifier.trials(train.images, train.labels, val, test, 10, cfg, 0, 2, CPU))
    shuffled = train.labels[torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(0))]
    noise = classifier.summarize(classifier.trials(train.images, shuffled, val, test, 10, cfg, 0, 2, CPU))
    assert real["mean"] > 0.85 and noise["mean"] < 0.35
    assert len(real["per_seed"]) == 2 and np.sum(real["confusion"]) == len(test.labels)


def test_fit_is_deterministic_and_keeps_the_best_val_weights():
    train, val, _ = _digits()
    cfg = ClassifierParams(width=8, feature_dim=16, steps=60, eval_every=20, shift=1.0, rotate=10.0)
    a, info_a = classifier.fit(train.images, train.labels, val.images, val.labels, 10, cfg, 5, CPU)
    b, info_b = classifier.fit(train.images, train.labels, val.images, val.labels, 10, cfg, 5, CPU)
    assert info_a == info_b
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert classifier.accuracy(a, val.images, val.labels) == pytest.approx(info_a["val_accuracy"])


def test_mixed_batches_hold_the_asked_share_of_first_indices_and_cover_them_each_epoch():
    sampler = classifier.MixedBatchSampler(30, 500, 16, 0.25, seed=3)
    batches = [sampler(step) for step in range(30 // 4)]  # one epoch of the first 30 (4 per batch)
    assert all(len(b) == 16 and int((b < 30).sum()) == 4 and int(b.max()) < 530 for b in batches)
    first = torch.cat([b[b < 30] for b in batches]).tolist()
    assert len(set(first)) == len(first) == 28  # 7 batches of 4 real indices, none repeated within an epoch
    again = classifier.MixedBatchSampler(30, 500, 16, 0.25, seed=3)
    assert all(torch.equal(b, again(step)) for step, b in enumerate(batches))


def test_real_share_per_batch_lets_few_real_images_outweigh_many_noisy_ones():
    train, val, test = _digits()
    real = SimpleNamespace(images=train.images[:150], labels=train.labels[:150])
    g = torch.Generator().manual_seed(0)
    noisy = torch.randint(0, 10, (850,), generator=g)  # "synthetic" images with random labels
    images, labels = train.images[:1000], torch.cat([real.labels, noisy])
    cfg = ClassifierParams(width=8, feature_dim=16, steps=150, eval_every=50)
    plain = classifier.summarize(classifier.trials(images, labels, val, test, 10, cfg, 0, 1, CPU))
    mixed = classifier.summarize(classifier.trials(images, labels, val, test, 10, cfg, 0, 1, CPU, mix=(150, 0.5)))
    assert mixed["mean"] > plain["mean"] + 0.1


def test_random_affine_without_shift_or_rotation_is_the_identity():
    x = torch.rand(4, 1, 8, 8)
    out = classifier.random_affine(x, 0.0, 0.0, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-5)


def _ds(hashes):
    return SimpleNamespace(metadata=pd.DataFrame({"pixel_sha256": hashes}))


def test_leak_between_splits_is_refused():
    check_disjoint({"train": _ds(["a", "b"]), "val": _ds(["c"]), "test": _ds(["d"])})
    with pytest.raises(SynthdataError, match="leak: 1 identical image.*train and test"):
        check_disjoint({"train": _ds(["a", "b"]), "val": _ds(["c"]), "test": _ds(["b"])})


def _inception_weights(path, monkeypatch):
    """A randomly initialised Inception-v3 FID network saved as a plain state dict (the test's weights file)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with monkeypatch.context() as m:
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), path)


def test_inception_extractor_loads_a_local_weights_file(tmp_path, monkeypatch):
    weights = tmp_path / "weights-inception.pth"
    _inception_weights(weights, monkeypatch)
    params = load_params(
        write_params(tmp_path), {"evaluate.feature_extractor": "inception", "evaluate.inception_weights": str(weights)}
    )
    with pytest.warns(UserWarning, match="not the standard FID weights"):
        ex = features.build(params, CPU)
    images = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    f = ex(images)
    assert f.shape == (3, 2048) and f.dtype == np.float64 and np.isfinite(f).all()
    assert ex.name == "inception-v3-pool3" and len(ex.sha256) == 64
    assert np.allclose(ex(images[:1]), f[:1], atol=1e-5)  # batch-independent


@pytest.mark.parametrize(
    "setting,message",
    [(None, "set it to a local copy"), ("missing.pth", "does not exist"), ("bad.pth", "not an Inception-v3")],
)
def test_inception_extractor_bad_weights_are_one_line_errors(tmp_path, setting, message):
    (tmp_path / "bad.pth").write_bytes(b"not a torch file")
    over = {
        "evaluate.feature_extractor": "inception",
        "evaluate.inception_weights": str(tmp_path / setting) if setting else None,
    }
    params = load_params(write_params(tmp_path), over)
    with pytest.raises(SynthdataError, match=message):
        features.build(params, CPU)


def test_worst_class_over_median_ignores_undefined_classes():
    from synthdata.metrics.standard import _worst_over_median

    assert _worst_over_median([1.0, 2.0, 10.0]) == pytest.approx(5.0)
    assert _worst_over_median([2.0, float("nan"), 4.0, float("inf")]) == pytest.approx(4.0 / 3.0)
    assert _worst_over_median([float("nan")]) is None
    assert _worst_over_median([0.0, 0.0, 1.0]) is None  # median 0: undefined, not infinite
