"""The contract every registered feature extractor must pass: uint8 images (N, C, H, W) in, float64 features
(N, dim) out, bit for bit on a repeated call and to float32 rounding in other batch sizes (evaluate.batch_size
is a parameter for that reason), with a name and the weights' sha256."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthdata import classifier, features, reference
from synthdata.errors import SynthdataError
from synthdata.params import load_params
from tests.conftest import write_params

NAMES = sorted(features.REGISTRY)


def _domain(tmp, monkeypatch):
    params = load_params(write_params(tmp))
    model = classifier.SmallCNN(1, 3, (8, 8), 8, 16)
    info = {"in_channels": 1, "num_classes": 3, "image_hw": [8, 8], "width": 8, "feature_dim": 16}
    (tmp / "data" / "reference").mkdir(parents=True)
    classifier.save(tmp / "data" / "reference" / features.DOMAIN_FILE, model, info)
    return params


def _inception(tmp, monkeypatch):
    """No Inception weights may be downloaded here: without a local copy the extractor must say so."""
    return load_params(write_params(tmp, evaluate={"feature_extractor": "inception"}))


EXAMPLES = {"domain": _domain, "inception": _inception}


def test_every_extractor_has_an_example():
    assert sorted(EXAMPLES) == NAMES, "add an example for the new feature extractor to EXAMPLES"
    assert reference  # the stage that trains the domain extractor exists


@pytest.mark.parametrize("name", NAMES)
def test_maps_uint8_images_to_float64_features(name, tmp_path, monkeypatch):
    params = EXAMPLES[name](tmp_path, monkeypatch)
    try:
        extractor = features.build(params, torch.device("cpu"))
    except SynthdataError as exc:  # only a missing local weights file may stop an extractor, in one line
        assert name == "inception" and "inception_weights" in str(exc) and "\n" not in str(exc)
        return
    images = torch.randint(0, 256, (37, 1, 8, 8), dtype=torch.uint8)
    f = extractor(images)
    assert f.dtype == np.float64 and f.shape == (37, extractor.dim) and np.isfinite(f).all()
    assert np.array_equal(f, extractor(images))  # the same call gives the same bits
    extractor.batch = 5  # another batch size rounds convolutions differently (float32): the same to 1e-5
    np.testing.assert_allclose(extractor(images), f, rtol=1e-5, atol=1e-6)
    assert extractor.name and len(extractor.sha256) == 64


def test_an_unknown_extractor_is_refused_naming_the_registered_ones(tmp_path):
    from tests.conftest import run_cli

    params = write_params(tmp_path, evaluate={"feature_extractor": "clip"})
    assert run_cli("prepare", "--params", str(params)).returncode == 0
    result = run_cli("reference", "--params", str(params))
    assert result.returncode == 2 and "unknown feature extractor 'clip'" in result.stderr
    assert all(n in result.stderr for n in NAMES) and "Traceback" not in result.stderr
