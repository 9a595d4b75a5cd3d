"""The contract every registered generator must pass (a new generator gets these tests for free)."""

import csv

import pytest
import torch

from synthdata import checkpoint, generators, prepare, train
from synthdata.params import load_params
from tests.conftest import make_npz, write_params

NAMES = generators.generator_names()


def small(cls, **sizes):
    """A config with these sizes where the family has them (every family has steps and batch_size)."""
    return cls.Config(**{k: v for k, v in sizes.items() if k in cls.Config.model_fields})


def tiny(name, shape=(1, 8, 8), classes=3):
    cls = generators.get(name)
    torch.manual_seed(0)
    return cls(small(cls, width=4, latent_dim=6), shape, classes)


@pytest.mark.parametrize("name", NAMES)
def test_networks_name_each_trained_module_and_its_optimizer(name):
    """What a distributed wrapper needs: every trained parameter in exactly one network, updated by the
    optimizer of the same name; EMA copies are in none."""
    model = tiny(name)
    nets, opts = model.networks(), model.make_optimizers()
    assert set(nets) == set(opts) and nets
    seen: set[int] = set()
    for key, net in nets.items():
        params = {id(p) for p in net.parameters()}
        assert params == {id(p) for group in opts[key].param_groups for p in group["params"]}, key
        assert not params & seen, f"{key} shares parameters with another network"
        seen |= params
    ema = {id(p) for copy, _ in model.ema_pairs() for p in copy.parameters()}
    assert seen == {id(p) for p in model.parameters()} - ema and not seen & ema


def test_a_generator_may_be_a_package():
    import importlib

    cgan = importlib.import_module(generators.get("cgan").__module__)
    assert cgan.__name__ == "synthdata.generators.cgan" and hasattr(cgan, "__path__")  # a package
    assert generators.get("cgan").Config.model_fields.keys() >= {"latent_dim", "width"}  # the family's, not base's
    assert not {"latent_dim", "width"} & generators.GeneratorConfig.model_fields.keys()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 12, 10), (1, 28, 28)])
def test_shapes_dtype_range(name, shape):
    out = tiny(name, shape).generate([0, 1, 2, 1], seed=3)
    assert out.shape == (4, *shape) and out.dtype == torch.uint8


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed_and_independent_of_batching(name):
    model = tiny(name)
    a = model.generate([0, 1, 2, 0, 1], seed=11)
    assert torch.equal(a, model.generate([0, 1, 2, 0, 1], seed=11))
    assert torch.equal(a[3:], model.generate([0, 1], seed=14))
    assert not torch.equal(a, model.generate([0, 1, 2, 0, 1], seed=12))


@pytest.mark.parametrize("name", NAMES)
def test_every_row_is_remade_by_a_single_row_call(name):
    """Convolutions round differently for a batch of one (about 1 row in 1,000 was a grey level off): each
    row of a large call must equal ``generate([label], seed)`` exactly, whatever the chunking and threads."""
    cls = generators.get(name)
    torch.manual_seed(0)
    model = cls(small(cls, width=32, latent_dim=32), (1, 8, 8), 10).eval()
    n = 1000
    labels, seeds = torch.arange(n) % 10, torch.arange(n, dtype=torch.int64) + 7
    whole = model.generate_from_seeds(labels, seeds)
    threads = torch.get_num_threads()
    try:
        for chunk, nthreads in ((7, 1), (333, 2)):
            torch.set_num_threads(nthreads)
            parts = [model.generate_from_seeds(labels[i : i + chunk], seeds[i : i + chunk]) for i in range(0, n, chunk)]
            assert torch.equal(torch.cat(parts), whole)
        single = [i for i in range(n) if not torch.equal(model.generate([int(labels[i])], int(seeds[i]))[0], whole[i])]
    finally:
        torch.set_num_threads(threads)
    assert single == []


@pytest.mark.parametrize("name", NAMES)
def test_label_conditioning_changes_the_image(name):
    model = tiny(name)
    seeds = torch.arange(8)
    by_label = [model.generate_from_seeds(torch.full((8,), k), seeds) for k in range(3)]
    assert not torch.equal(by_label[0], by_label[1]) and not torch.equal(by_label[1], by_label[2])


@pytest.mark.parametrize("name", NAMES)
def test_training_step_updates_and_save_load_round_trip(name, tmp_path):
    model = tiny(name)
    opts = model.make_optimizers()
    before = model.generate([0, 1, 2], seed=0)
    rng = torch.Generator().manual_seed(0)
    for step in range(3):
        losses = model.training_step(torch.rand(6, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 2] * 2), rng, opts)
        model.update_ema(step)
        assert all(torch.isfinite(torch.as_tensor(v)) for v in losses.values())
    after = model.generate([0, 1, 2], seed=0)
    assert not torch.equal(before, after)
    checkpoint.save(tmp_path, model, opts, 3, {"class_names": ["a", "b", "c"]})
    loaded = checkpoint.load_generator(tmp_path, expect=name)
    assert torch.equal(loaded.generate([0, 1, 2], seed=0), after)
    assert loaded.class_names == ["a", "b", "c"] and len(loaded.checkpoint_sha256) == 64


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("name", NAMES)
def test_resume_equals_uninterrupted_training(name, tmp_path):
    data = make_npz(tmp_path / "d.npz", n_per_class=10)
    base = write_params(tmp_path, data={"source": "npz", "path": str(data)}, generators=[name])
    prepare.run(load_params(base))
    whole = load_params(base, {"paths.models": str(tmp_path / "whole")})
    train.run(whole, name, progress=False)

    split = load_params(base, {"paths.models": str(tmp_path / "split")})

    def stop_at_4(step):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.run(split, name, progress=False, on_step=stop_at_4)
    partial = tmp_path / "split" / f"{name}.partial"
    # the last periodic checkpoint (every 3 steps) survives the interruption; nothing is published
    assert checkpoint.read(partial)[0]["step"] == 3 and not (tmp_path / "split" / name).exists()
    summary = train.run(split, name, progress=False)
    assert summary["resumed_from"] == 3

    a_info, a = checkpoint.read(tmp_path / "whole" / name)
    b_info, b = checkpoint.read(tmp_path / "split" / name)
    assert a_info["step"] == b_info["step"] == 6
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for opt in a["optimizers"]:
        for pid, st in a["optimizers"][opt]["state"].items():
            for k, v in st.items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["optimizers"][opt]["state"][pid][k]))
    read = lambda p: list(csv.DictReader(open(p / "losses.csv")))  # noqa: E731
    assert read(tmp_path / "whole" / name) == read(tmp_path / "split" / name)
    assert len(read(tmp_path / "whole" / name)) == 6


@pytest.mark.parametrize("name", NAMES)
def test_training_longer_resumes_a_finished_run(name, tmp_path):
    data = make_npz(tmp_path / "d.npz", n_per_class=10)
    base = write_params(tmp_path, data={"source": "npz", "path": str(data)}, generators=[name])
    prepare.run(load_params(base))
    short = load_params(base, {f"train.{name}.steps": 3})
    train.run(short, name, progress=False)
    longer = load_params(base, {f"train.{name}.steps": 5})
    assert train.run(longer, name, progress=False)["resumed_from"] == 3
    assert train.run(longer, name, progress=False, resume=False)["resumed_from"] == 0
