"""Shared fixtures: tiny parameter files with every path under a temporary folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# Real MNIST (IDX files) for the tests that need the real data: ../shared/datasets/mnist beside the repository,
# or SYNTHDATA_MNIST. CI sets SYNTHDATA_MNIST, and then a missing folder fails those tests instead of skipping.
MNIST = Path(os.environ.get("SYNTHDATA_MNIST") or REPO.parent / "shared" / "datasets" / "mnist")


def need_mnist() -> Path:
    """The real MNIST folder; skips the calling test, saying why, when it is absent and CI did not ask for it."""
    if MNIST.is_dir():
        return MNIST
    if os.environ.get("SYNTHDATA_MNIST"):
        pytest.fail(f"SYNTHDATA_MNIST={MNIST}: no such folder (the real MNIST IDX files are needed there)")
    pytest.skip(
        f"real MNIST not found at {MNIST} (set SYNTHDATA_MNIST to its IDX folder); "
        "the MNIST reader itself is tested on IDX files the tests write"
    )


TINY_TRAIN = {
    "seed": 0,
    "checkpoint_every": 3,
    "log_every": 1,
    "cgan": {"steps": 6, "batch_size": 16, "latent_dim": 8, "width": 8, "ema_start": 2},
    "cvae": {"steps": 6, "batch_size": 16, "latent_dim": 4, "width": 8, "ema_start": 2},
}

TINY_CLASSIFIER = {"width": 8, "feature_dim": 16, "steps": 30, "batch_size": 64, "eval_every": 10}


def tiny_params(tmp: Path, **sections) -> dict:
    params = {
        "generators": ["cgan", "cvae"],
        "paths": {
            k: str(tmp / "data" / k)
            for k in (
                "prepared",
                "models",
                "synthetic",
                "augmented",
                "reference",
                "evaluation",
                "published",
                "report",
                "filter",
            )
        },
        "runtime": {"device": "cpu", "threads": 1},
        "data": {"source": "sklearn-digits"},
        "prepare": {"seed": 0},
        "train": TINY_TRAIN,
        "sample": {"seed": 7, "per_class": 3, "batch_size": 8},
        "evaluate": {"kid_subsets": 5, "classifier": TINY_CLASSIFIER},
        "gate": {"max_fid_ratio": 1e6, "min_acc_ratio": 0.0},  # tiny generators are bad; gate tests set their own
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            params[key] = {**params[key], **value}
        else:
            params[key] = value
    return params


def write_params(tmp: Path, **sections) -> Path:
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(tmp, **sections), sort_keys=False))
    return path


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    return write_params(tmp_path)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess (exit code, stdout, stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "synthdata", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def idx_bytes(array: np.ndarray) -> bytes:
    """An uncompressed IDX file (the MNIST format) holding a uint8 array."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def make_npz(path: Path, n_per_class: int = 6, classes: int = 3, size: int = 8, **extra) -> Path:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(classes), n_per_class)
    x = (rng.random((len(y), size, size)) * 255).astype(np.uint8)
    np.savez(path, x=x, y=y, **extra)
    return path


# --- a throw-away copy of this repository as its own git + DVC project (e2e tests of dvc, release, flows) ---

GIT_ENV = {
    "GIT_AUTHOR_NAME": "synthdata tests",
    "GIT_AUTHOR_EMAIL": "tests@synthdata.invalid",
    "GIT_COMMITTER_NAME": "synthdata tests",
    "GIT_COMMITTER_EMAIL": "tests@synthdata.invalid",
}


def tool_env() -> dict:
    """The environment for dvc/git/python subprocesses: this interpreter's bin first (stage commands say
    ``python -m synthdata``), a git identity for release commits."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, **GIT_ENV, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"}


def run_tool(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", *argv] if argv[0] in ("dvc", "synthdata", "flows.pipeline") else list(argv)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=tool_env())


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def make_repo(dest: Path, **sections) -> Path:
    """Copy this repository's files (tracked and untracked, not ignored; no dvc.lock or release table) to
    ``dest``, write tiny parameters with the default relative paths, and make it a fresh git repo."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if rel in ("dvc.lock", "published.csv") or not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    tiny = tiny_params(dest, **sections)
    del tiny["paths"]  # keep the repository's relative data/ paths
    params = _merge(yaml.safe_load((REPO / "params.yaml").read_text()), tiny)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "init"]):
        subprocess.run(argv, cwd=dest, check=True, env=tool_env(), capture_output=True)
    return dest


def other_generator(root: Path) -> str:
    """The generator the built repository did not publish: setting ``publish.generator`` to it is the
    cheapest change that makes a new published dataset (only publish and report re-run)."""
    import json

    published = json.loads((root / "data/published/manifest.json").read_text())["generator"]
    return next(g for g in ("cgan", "cvae") if g != published)


AFTER_PUBLISH = {"publish", "report"}


def ran_stages(output: str) -> set[str]:
    """Stages that ``dvc repro`` ran, from its 'Running stage ...' lines."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="session")
def built_repo(tmp_path_factory) -> Path:
    """A repository copy after one full ``dvc repro`` on tiny settings (tests copy it before changing it)."""
    root = make_repo(tmp_path_factory.mktemp("built") / "repo")
    proc = run_tool("dvc", "repro", cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (root.parent / "first-repro.txt").write_text(proc.stdout)
    return root


@pytest.fixture
def repo(built_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the built repository."""
    dest = tmp_path / "repo"
    shutil.copytree(built_repo, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect test server (its ephemeral local API) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def committed(repo: Path, monkeypatch) -> Path:
    """The built copy with its dvc.lock committed, and this process's environment fit to run stages."""
    for key, value in tool_env().items():
        if key == "PATH" or key in GIT_ENV:
            monkeypatch.setenv(key, value)
    for argv in (["git", "add", "-A"], ["git", "commit", "-q", "-m", "built"]):
        subprocess.run(argv, cwd=repo, check=True, env=tool_env(), capture_output=True)
    return repo
