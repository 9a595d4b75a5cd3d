"""Training on two CPU processes (torchrun, gloo, one thread each): gradients, agreement, resume, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from synthdata import checkpoint, generators, prepare
from synthdata.params import load_params
from tests.conftest import REPO, TINY_TRAIN, run_cli, write_params
from tests.e2e.ddp_probe import tiny

pytestmark = pytest.mark.e2e
NAMES = generators.generator_names()
TWO = {"device": "cpu", "threads": 2, "nproc": 2}


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    done = torchrun(str(REPO / "tests/e2e/ddp_probe.py"), str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", NAMES)
def test_ddp_gradients_are_the_mean_of_each_ranks_own(probe, name):
    """Through the DDP wrappers every network's gradient is the mean over ranks of the local ones (the frozen
    network of a pass contributes none), so two processes of half the batch step like one of the whole."""
    ranks = [torch.load(probe / f"{name}-grads-rank{r}.pt") for r in (0, 1)]
    local = ranks[0]["local"]  # every rank's own gradients, gathered
    for net, steps in ranks[0]["ddp"].items():
        assert steps, net
        for j, grads in enumerate(steps):
            mine, theirs = local[0][net][j], local[1][net][j]
            assert any(not torch.equal(m, t) for m, t in zip(mine, theirs))  # the ranks did see different data
            for i, g in enumerate(grads):
                torch.testing.assert_close(g, (mine[i] + theirs[i]) / 2, rtol=1e-5, atol=1e-7)
                assert torch.equal(g, ranks[1]["ddp"][net][j][i])


@pytest.mark.parametrize("name", NAMES)
def test_ddp_ranks_hold_identical_weights_after_training(probe, name):
    """After several steps on different slices, both ranks hold the same weights and EMA weights; only the
    batch-norm running statistics (per rank on the CPU, no SyncBatchNorm under gloo) may differ."""
    a, b = (torch.load(probe / f"{name}-rank{r}.pt") for r in (0, 1))
    assert a.keys() == b.keys()
    differ = {k for k in a if not torch.equal(a[k], b[k])}
    assert all(k.endswith(("running_mean", "running_var")) for k in differ), sorted(differ)[:5]
    initial = tiny(name).state_dict()
    assert [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], initial[k])]  # it did train


def _repo(tmp_path: Path, steps: int = 24, every: int = 8, **runtime) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cgan = {**TINY_TRAIN["cgan"], "steps": steps}
    train = {**TINY_TRAIN, "checkpoint_every": every, "log_every": 4, "cgan": cgan}
    params = write_params(tmp_path, runtime={**TWO, **runtime}, train=train, generators=["cgan"])
    prepare.run(load_params(params))
    return params


def _train(params: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("train", "--params", str(params), "--generator", "cgan", *extra, cwd=params.parent)


def test_two_process_run_killed_after_a_checkpoint_resumes_bit_identically(tmp_path):
    params = _repo(tmp_path / "a", steps=600, every=100)
    done = _train(params)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"device": "cpu x 2"' in done.stdout and done.stdout.count('"steps": 600') == 2  # rank 0, launcher
    model = tmp_path / "a/data/models/cgan"
    whole = (model / checkpoint.FILE).read_bytes()
    info, state = checkpoint.read(model)
    assert info["world_size"] == 2 and len(state["rng"]["torch_ranks"]) == 2

    params = _repo(tmp_path / "b", steps=600, every=100)
    partial = tmp_path / "b/data/models/cgan.partial"
    run = subprocess.Popen(
        [sys.executable, "-m", "synthdata", "train", "--params", str(params), "--generator", "cgan"],
        cwd=params.parent,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (partial / "checkpoint.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(run.pid, signal.SIGKILL)  # the launcher only: torchrun and both training processes die with it
    run.wait()
    deadline = time.monotonic() + 20
    while _processes_of(params) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_of(params)
    step = checkpoint.read(partial)[0]["step"]
    assert 100 <= step < 600 and not (tmp_path / "b/data/models/cgan").exists()

    resumed = _train(params)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {partial} at step {step}" in resumed.stdout
    assert (tmp_path / "b/data/models/cgan" / checkpoint.FILE).read_bytes() == whole


def _processes_of(params: Path) -> list[int]:
    """Live processes whose command line names a file of the folder of ``params`` (zombies excluded): the
    launcher names ``params``, torchrun and its workers the launcher's copy of it in ``data/models``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            alive = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            if proc.name.isdigit() and alive and str(params.parent).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except (OSError, IndexError):
            continue
    return found


def _error_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return lines[0]


def test_more_processes_than_cores_or_gpus_is_one_line(tmp_path):
    line = _error_line(_train(_repo(tmp_path, nproc=1024)))
    assert "runtime.nproc: 1024 processes asked for but this machine has" in line


def test_a_batch_that_does_not_divide_over_the_processes_is_one_line(tmp_path):
    params = _repo(tmp_path, nproc=2)
    text = params.read_text().replace("batch_size: 16", "batch_size: 15")
    params.write_text(text)
    line = _error_line(_train(params))
    assert "the global batch 15 does not divide over 2 processes" in line


def test_resuming_an_interrupted_run_at_another_world_size_is_one_line(tmp_path):
    params = _repo(tmp_path, steps=24, every=8)
    partial = tmp_path / "data/models/cgan.partial"
    assert _train(params).returncode == 0
    (tmp_path / "data/models/cgan").rename(partial)  # as if it had been killed after its last checkpoint
    one = params.read_text().replace("nproc: 2", "nproc: 1").replace("steps: 24", "steps: 32")
    params.write_text(one)
    line = _error_line(_train(params))
    assert f"{partial}: this interrupted run was trained by 2 process(es) and cannot resume on 1" in line
    assert (partial / checkpoint.FILE).is_file()  # nothing lost
    done = _train(params, "--no-resume")  # starting over at the new size works
    assert done.returncode == 0, done.stderr[-2000:]
    assert "world_size" not in checkpoint.read(tmp_path / "data/models/cgan")[0]


def test_a_two_process_generator_passes_the_gate_on_the_digits(tmp_path):
    """The cVAE trained by two processes (the default profile's steps and global batch) on the embedded
    digits, sampled and scored with the real pipeline, passes the default gate."""
    cvae = {"steps": 4000, "batch_size": 64, "latent_dim": 16, "width": 32, "lr": 0.001, "beta_kl": 0.5}
    params = write_params(
        tmp_path,
        generators=["cvae"],
        runtime=TWO,
        train={"seed": 0, "checkpoint_every": 1000, "log_every": 100, "cvae": {**cvae, "ema_start": 300}},
        sample={"per_class": 200},
        gate={"max_fid_ratio": 8.0, "min_acc_ratio": 0.9},
        evaluate={"kid_subsets": 5, "classifier": {}},  # the default classifier: the gate was set with its features
    )
    for stage in ("prepare", "reference", "train", "sample", "evaluate"):
        done = run_cli(stage, "--params", str(params), cwd=tmp_path)
        assert done.returncode == 0, f"{stage}: {done.stderr[-2000:]}"
    assert checkpoint.read(tmp_path / "data/models/cvae")[0]["world_size"] == 2
    gate = json.loads((tmp_path / "data/evaluation/cvae/gate.json").read_text())
    assert gate["passed"], gate["checks"]
