import json

import pytest
import torch

from synthdata import checkpoint, generators
from synthdata.errors import SynthdataError
from synthdata.generators import latent_noise, noise


def test_latent_noise_is_standard_normal_and_per_seed():
    z = latent_noise(torch.arange(20000, dtype=torch.int64), 16)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(torch.corrcoef(z.T).fill_diagonal_(0)).max() < 0.05
    seeds = torch.tensor([5, 2**40 + 3, 0])
    assert torch.equal(latent_noise(seeds, 8)[1], latent_noise(seeds[1:2], 8)[0])
    assert not torch.equal(latent_noise(torch.tensor([1]), 8), latent_noise(torch.tensor([2]), 8))


def test_noise_streams_are_independent_and_remade_from_the_seed_alone():
    seeds = torch.tensor([3, 4, 2**33 + 1])
    assert torch.equal(noise((8,), seeds, 0), latent_noise(seeds, 8))  # stream 0 is the latent noise
    image = noise((1, 4, 4), seeds, 5)
    assert image.shape == (3, 1, 4, 4) and torch.equal(image[2], noise((1, 4, 4), seeds[2:], 5)[0])
    streams = torch.stack([noise((64,), torch.arange(500), s) for s in range(4)])  # (stream, seed, value)
    corr = torch.corrcoef(streams.permute(0, 2, 1).reshape(4, -1))
    assert abs(corr.fill_diagonal_(0)).max() < 0.02
    assert abs(streams.mean()) < 0.02 and abs(streams.std() - 1) < 0.02
    with pytest.raises(ValueError, match="non-negative"):
        noise((2,), seeds, -1)


def _saved(tmp_path, name="cgan"):
    cls = generators.get(name)
    model = cls(cls.Config(width=4, latent_dim=4), (1, 8, 8), 3)
    checkpoint.save(tmp_path, model, model.make_optimizers(), 0, {"class_names": ["a", "b", "c"]})
    return model


def test_truncated_checkpoint_is_refused(tmp_path):
    _saved(tmp_path)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(SynthdataError, match="truncated or corrupt"):
        checkpoint.load_generator(tmp_path)


def test_checkpoint_from_another_generator_is_refused(tmp_path):
    _saved(tmp_path, "cvae")
    with pytest.raises(SynthdataError, match="from generator 'cvae', not 'cgan'"):
        checkpoint.load_generator(tmp_path, expect="cgan")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(SynthdataError, match="checkpoint not found"):
        checkpoint.load_generator(tmp_path / "none")


def test_one_format_for_generators_and_classifiers_and_the_tag_is_checked(tmp_path):
    from synthdata import classifier

    _saved(tmp_path)
    net = classifier.SmallCNN(1, 3, (8, 8), 4, 8)
    arch = {"in_channels": 1, "num_classes": 3, "image_hw": [8, 8], "width": 4, "feature_dim": 8}
    classifier.save(tmp_path / "clf.pt", net, arch)
    for path in (tmp_path / "checkpoint.pt", tmp_path / "clf.pt"):
        state = torch.load(path, weights_only=True)
        assert isinstance(state["info"], str) and all(isinstance(v, torch.Tensor) for v in state["model"].values())
    loaded, info = classifier.load(tmp_path / "clf.pt", "test classifier", "save it")
    assert info["format"] == checkpoint.CLASSIFIER_FORMAT and all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values())
    )
    with pytest.raises(SynthdataError, match="unknown checkpoint format 'synthdata-classifier/1'"):
        checkpoint.load_generator(tmp_path / "clf.pt")  # a classifier is not a generator, and says so
    with pytest.raises(SynthdataError, match="unknown checkpoint format 'synthdata-checkpoint/1'.*test classifier"):
        classifier.load(tmp_path / "checkpoint.pt", "test classifier", "save it")


def test_json_sidecar_describes_the_tensors(tmp_path):
    _saved(tmp_path)
    info = json.loads((tmp_path / "checkpoint.json").read_text())
    assert info["generator"] == "cgan" and info["config"]["width"] == 4 and len(info["sha256"]) == 64
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(state) == {"info", "model", "optimizers", "rng"}


def test_a_non_finite_loss_stops_training_and_keeps_the_finished_model(tmp_path, monkeypatch):
    import math

    import pytest

    from synthdata import train
    from synthdata.errors import SynthdataError
    from synthdata.generators.cvae import CVAE
    from synthdata.params import load_params
    from tests.conftest import write_params

    params = load_params(write_params(tmp_path, generators=["cvae"]))
    from synthdata import prepare

    prepare.run(params)
    train.run(params, "cvae", progress=False)  # 6 steps, finished
    out = tmp_path / "data/models/cvae"
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    step_of = CVAE.training_step

    def poisoned(self, real, labels, rng, optimizers, nets=None):
        losses = step_of(self, real, labels, rng, optimizers, nets)
        poisoned.calls += 1
        return {**losses, "kl": losses["kl"] * math.inf} if poisoned.calls == 2 else losses

    poisoned.calls = 0
    monkeypatch.setattr(CVAE, "training_step", poisoned)
    from tests.conftest import TINY_TRAIN

    longer = load_params(
        write_params(tmp_path, generators=["cvae"], train={"cvae": {**TINY_TRAIN["cvae"], "steps": 12}})
    )
    with pytest.raises(SynthdataError) as exc:
        train.run(longer, "cvae", progress=False)  # resumes at step 6: its second step is step 8
    msg = str(exc.value)
    assert "train cvae: kl is inf at step 8" in msg and "\n" not in msg
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the finished model is untouched
