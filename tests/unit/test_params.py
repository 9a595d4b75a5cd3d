import pytest

from synthdata.errors import SynthdataError
from synthdata.params import load_params
from tests.conftest import write_params


def test_defaults_file_is_valid():
    p = load_params("params.yaml")
    assert p.data.source == "sklearn-digits"
    assert set(p.generators) == {"cgan", "cvae"}
    assert p.generator_config("cgan").steps > 0


def test_mnist_profiles_are_valid():
    full, low = load_params("params-mnist.yaml"), load_params("params-mnist-600.yaml")
    for p in (full, low):
        assert p.data.source == "mnist" and set(p.generators) == {"cgan", "cvae"}
        assert p.filter.enabled and p.sample.per_class == (6000 if p is full else 2000)
    assert full.prepare.train_per_class is None and low.prepare.train_per_class == 60
    assert low.generator_config("cgan").diffaugment  # the low-data cGAN needs DiffAugment
    assert full.evaluate.augment_real_fraction == 0.9 and low.evaluate.augment_real_fraction == 0.5


@pytest.mark.parametrize("section, value, needle", [
    ({"sample": {"per_clas": 3}}, None, "unknown key 'sample.per_clas'"),
    ({"sample": {"per_class": 0}}, None, "sample.per_class"),
    ({"sample": {"per_class": -5}}, None, "sample.per_class"),
    ({"sample": {"per_class": "many"}}, None, "sample.per_class"),
    ({"sample": {"counts": {"3": 0}}}, None, "sample.counts"),
    ({"train": {"cgan": {"steps": 0}}}, None, "train.cgan.steps"),
    ({"train": {"cgan": {"lr_gg": 1}}}, None, "unknown key 'train.cgan.lr_gg'"),
    ({"train": {"dcgan": {}}}, None, "unknown key 'train.dcgan'"),
    ({"data": {"source": "cifar"}}, None, "unknown source 'cifar'"),
    ({"data": {"image_size": 128}}, None, "data.image_size"),
    ({"generators": ["cgan", "diffusion"]}, None, "unknown generator 'diffusion'"),
    ({"train": {"cgan": {"diffaugment": "translation,flip"}}}, None, "unknown DiffAugment policy 'flip'"),
    ({"filter": {"min_confidence": 1.0}}, None, "filter.min_confidence"),
    ({"filter": {"max_draws": 0}}, None, "filter.max_draws"),
    ({"filter": {"enable": True}}, None, "unknown key 'filter.enable'"),
    ({"evaluate": {"augment_real_fraction": 1.0}}, None, "evaluate.augment_real_fraction"),
    ({"evaluate": {"augment_real_fraction": 0}}, None, "evaluate.augment_real_fraction"),
])
def test_bad_parameter_is_one_line_naming_key_and_file(tmp_path, section, value, needle):
    path = write_params(tmp_path, **section)
    with pytest.raises(SynthdataError) as exc:
        load_params(path)
    msg = str(exc.value)
    assert needle in msg and str(path) in msg and "\n" not in msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SynthdataError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "p.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(SynthdataError, match="not valid YAML"):
        load_params(bad)


def test_overrides_are_validated(tmp_path):
    path = write_params(tmp_path)
    assert load_params(path, {"sample.per_class": 11}).sample.per_class == 11
    with pytest.raises(SynthdataError, match="sample.per_class"):
        load_params(path, {"sample.per_class": -1})


def test_publish_generator_must_be_listed(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("generators: [cgan]\npublish:\n  generator: cvae\n")
    with pytest.raises(SynthdataError) as err:
        load_params(path)
    msg = str(err.value)
    assert "publish.generator 'cvae' is not in generators ['cgan']" in msg and "\n" not in msg


def test_publish_name_must_be_a_tag_name(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("publish:\n  name: 'my data/set'\n")
    with pytest.raises(SynthdataError, match="publish.name"):
        load_params(path)
