"""The GPU fast-path switches: resolved per device (off on the CPU), spectral norm kept fp32 under autocast,
losses in fp32, and the Trainer honouring bf16 / compile without changing CPU results."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from synthdata import generators
from synthdata.errors import SynthdataError
from synthdata.generators.losses import gaussian_kl, hinge_discriminator, hinge_generator
from synthdata.generators.nets import spectral_norm
from synthdata.params import load_params
from synthdata.runtime import GPU_AUTO, fast_path
from synthdata.trainer import Trainer
from tests.conftest import write_params

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_is_off_on_the_cpu_and_the_gpu_table_on_cuda(tmp_path):
    runtime = load_params(write_params(tmp_path)).runtime
    assert fast_path(runtime, CPU) == {"bf16": False, "channels_last": False, "compile": False}
    assert fast_path(runtime, CUDA) == GPU_AUTO
    on = load_params(write_params(tmp_path), {"runtime.channels_last": True, "runtime.compile": True}).runtime
    assert fast_path(on, CPU) == {"bf16": False, "channels_last": True, "compile": True}


def test_bad_switches_are_one_line(tmp_path):
    path = write_params(tmp_path)
    with pytest.raises(SynthdataError, match="runtime.bf16"):
        load_params(path, {"runtime.bf16": "fast"})
    with pytest.raises(SynthdataError, match="runtime.bf16: bf16 autocast is for CUDA") as err:
        fast_path(load_params(path, {"runtime.bf16": True}).runtime, CPU)
    assert "\n" not in str(err.value)


def test_spectral_norm_runs_its_power_iteration_outside_autocast(monkeypatch):
    seen = []
    forward = parametrizations._SpectralNorm.forward

    def spy(self, weight):
        seen.append(torch.is_autocast_enabled("cpu"))
        return forward(self, weight)

    monkeypatch.setattr(parametrizations._SpectralNorm, "forward", spy)
    ours, theirs = spectral_norm(nn.Linear(4, 3)), parametrizations.spectral_norm(nn.Linear(4, 3))
    ema = copy.deepcopy(ours)  # the EMA copy keeps the fp32 parametrization
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours(torch.randn(2, 4)), theirs(torch.randn(2, 4)), ema(torch.randn(2, 4))
    assert seen == [False, True, False]
    assert {k for k in ours.state_dict()} == {k for k in theirs.state_dict()}  # checkpoints keep their keys


def test_losses_are_fp32_from_bf16_logits():
    x = torch.randn(8, dtype=torch.bfloat16)
    assert hinge_discriminator(x, x).dtype == hinge_generator(x).dtype == torch.float32
    assert gaussian_kl(x.reshape(2, 4), x.reshape(2, 4)).dtype == torch.float32


@pytest.mark.parametrize("name", generators.generator_names())
def test_trainer_with_bf16_autocast_trains_finite_fp32_weights(name):
    """bf16 autocast through the whole step (CPU autocast here; the GPU check runs it on CUDA)."""
    cls = generators.get(name)
    torch.manual_seed(0)
    cfg = cls.Config(
        **{k: v for k, v in {"width": 4, "latent_dim": 6, "batch_size": 8}.items() if k in cls.Config.model_fields}
    )
    model = cls(cfg, (1, 8, 8), 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = torch.randint(0, 256, (24, 1, 8, 8), dtype=torch.uint8), torch.arange(24) % 3
    trainer = Trainer(model, model.make_optimizers(), images, labels, seed=0, name=name)
    trainer.bf16 = True
    trainer.fit(0, 3)
    after = model.state_dict()
    assert all(v.dtype == before[k].dtype for k, v in after.items())
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(after[k], before[k]) for k in after)
