"""End-to-end, as a hostile user: two runs of one stage at once, a killed stage, a full disk, and every row of
a sampled dataset remade from its seed. The real CLI on the embedded digits with tiny settings."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import synthdata
from tests.conftest import REPO, run_cli, write_params

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Prepared digits, a tiny trained cGAN and one sampled dataset (per_class 3)."""
    tmp = tmp_path_factory.mktemp("hostile")
    params = write_params(tmp, generators=["cgan"], sample={"seed": 7, "per_class": 3, "batch_size": 64, "workers": 2})
    for stage in ("prepare", "train", "sample"):
        result = run_cli(stage, "--params", str(params))
        assert result.returncode == 0, result.stderr
    return tmp, params


def _params(base: Path, dest: Path, **changes) -> Path:
    raw = yaml.safe_load(base.read_text())
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        raw[section][key] = value
    dest.write_text(yaml.safe_dump(raw))
    return dest


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _outputs(tmp: Path) -> dict:
    return {k: _digest(tmp / "data" / k / "cgan") for k in ("synthetic", "augmented")}


def _start(params: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "synthdata", "sample", "--params", str(params)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


PRIMED = """
import sys
from synthdata import cli, sample  # the slow imports, before the go
sys.stdin.readline()
sys.exit(cli.main(sys.argv[1:]))
"""


def _primed(*args: str) -> subprocess.Popen:
    """A CLI process that has imported everything and starts when a line arrives on its stdin."""
    return subprocess.Popen(
        [sys.executable, "-c", PRIMED, *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_temp(folder: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until the run has its lock and has begun writing (its temporary folder exists)."""
    t0 = time.monotonic()
    while not list(folder.glob(".cgan.tmp-*")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.01)


def _stale(tmp: Path) -> list[Path]:
    return [p for k in ("synthetic", "augmented") for p in (tmp / "data" / k).glob(".cgan.*-*")]


def _one_line(result, code: int, needle: str) -> str:
    stderr = result.stderr if hasattr(result, "stderr") else result[1]
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], stderr
    return lines[0]


def test_two_samples_of_one_generator_at_once(trained, tmp_path):
    """The second run stops with one line (exit 75) and touches nothing; both outputs come from the first."""
    tmp, base = trained
    big = _params(base, tmp_path / "a.yaml", **{"sample.seed": 1000, "sample.per_class": 2000})
    other = _params(base, tmp_path / "b.yaml", **{"sample.seed": 5})
    second = _primed("sample", "--params", str(other))  # imports done, waiting for the word
    first = _start(big)
    _wait_for_temp(tmp / "data/synthetic", first)
    out, err = second.communicate("go\n", timeout=120)
    assert second.returncode == 75, err
    line = _one_line((out, err), 75, "/cgan is being used by another synthdata run")
    assert "data/augmented/cgan" in line or "data/synthetic/cgan" in line
    assert f"pid {first.pid}" in line
    assert first.wait(timeout=300) == 0, first.communicate()
    syn = pd.read_parquet(tmp / "data/synthetic/cgan/metadata.parquet")
    aug = pd.read_parquet(tmp / "data/augmented/cgan/metadata.parquet")
    assert syn["seed"].tolist() == list(range(1000, 1000 + 20_000))
    aug_syn = aug[aug["source"] == "synthetic"].reset_index(drop=True)
    cols = ["file_name", "seed", "pixel_sha256"]
    assert aug_syn[cols].values.tolist() == syn[cols].values.tolist()
    assert not _stale(tmp)
    # the two stages of different generators' folders are independent: a reader of cgan's model is not blocked
    assert run_cli("sample", "--params", str(base)).returncode == 0  # back to the module's dataset


def test_killed_sample_takes_its_workers_along_and_the_next_run_cleans_up(trained, tmp_path):
    tmp, base = trained
    before = _outputs(tmp)
    big = _params(base, tmp_path / "big.yaml", **{"sample.per_class": 50_000})
    proc = _start(big)
    _wait_for_temp(tmp / "data/synthetic", proc)
    children: list[int] = []
    t0 = time.monotonic()
    while len(children) < 2 and time.monotonic() - t0 < 30:
        children = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        time.sleep(0.05)
    assert len(children) >= 2, "the writer processes did not start"
    time.sleep(0.5)  # they are writing
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    alive = children
    while alive and time.monotonic() - t0 < 10:
        alive = [c for c in children if _alive(c)]
        time.sleep(0.05)
    assert not alive, f"orphaned writer processes {alive} outlived the killed stage"
    assert _outputs(tmp) == before  # the earlier dataset is byte-identical
    assert _stale(tmp), "the killed run should have left its temporary folders"

    again = run_cli("sample", "--params", str(base))
    assert again.returncode == 0, again.stderr
    assert not _stale(tmp)
    assert _outputs(tmp) == before  # same parameters, same bytes


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_generate_remakes_every_row_of_a_sampled_dataset(trained, tmp_path):
    """``generate([label_id], seed)``, one row per call, remakes every image of a 2,000-image dataset."""
    tmp, base = trained
    params = _params(
        base,
        tmp_path / "p.yaml",
        **{
            "sample.per_class": 200,
            "sample.batch_size": 333,
            "paths.synthetic": str(tmp_path / "syn"),
            "paths.augmented": str(tmp_path / "aug"),
        },
    )
    assert run_cli("sample", "--params", str(params)).returncode == 0
    data = synthdata.load_dataset(tmp_path / "syn/cgan")
    g = synthdata.load_generator(tmp / "data/models/cgan")
    torch.set_num_threads(2)
    meta = data.metadata
    differ = [
        i
        for i, (label, seed) in enumerate(zip(meta["label_id"], meta["seed"]))
        if not torch.equal(g.generate([int(label)], seed=int(seed))[0], data.images[i])
    ]
    assert differ == [], f"{len(differ)} of {len(meta)} rows are not remade bit for bit (first: {differ[:5]})"


@contextlib.contextmanager
def _small_disk(where: Path, megabytes: int, inodes: int | None = None):
    where.mkdir()
    options = f"size={megabytes}m" + (f",nr_inodes={inodes}" if inodes else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize(
    "megabytes, inodes, per_class, needle",
    [
        (8, None, 1000, "MB are free"),  # 10,000 PNGs of one 4 KiB block each do not fit in 8 MB
        (64, 2000, 100, "inodes"),  # the bytes fit, the files do not (the real images are copies on tmpfs)
    ],
    ids=["bytes", "inodes"],
)
def test_a_sample_that_cannot_fit_is_refused_up_front(trained, tmp_path, megabytes, inodes, per_class, needle):
    tmp, base = trained
    with _small_disk(tmp_path / "disk", megabytes, inodes) as disk:
        paths = {"paths.synthetic": str(disk / "syn"), "paths.augmented": str(disk / "aug")}
        small = _params(base, tmp_path / "s.yaml", **paths)
        assert run_cli("sample", "--params", str(small)).returncode == 0
        before = {k: _digest(disk / k / "cgan") for k in ("syn", "aug")}
        big = _params(base, tmp_path / "b.yaml", **paths, **{"sample.per_class": per_class})
        result = run_cli("sample", "--params", str(big))
        assert result.returncode == 2
        line = _one_line(result, 2, "sample cgan: needs")
        assert needle in line and "lower sample.per_class" in line
        assert {k: _digest(disk / k / "cgan") for k in ("syn", "aug")} == before
        assert not [p for k in ("syn", "aug") for p in (disk / k).glob(".*-*")]


def test_a_disk_that_fills_during_sampling_loses_nothing(trained, tmp_path):
    tmp, base = trained
    with _small_disk(tmp_path / "disk", 48) as disk:
        paths = {"paths.synthetic": str(disk / "syn"), "paths.augmented": str(disk / "aug")}
        assert run_cli("sample", "--params", str(_params(base, tmp_path / "s.yaml", **paths))).returncode == 0
        before = {k: _digest(disk / k / "cgan") for k in ("syn", "aug")}
        big = _params(base, tmp_path / "b.yaml", **paths, **{"sample.per_class": 800})
        proc = _start(big)
        _wait_for_temp(disk / "syn", proc)
        filler = disk / "filler"
        with open(filler, "wb") as f:  # another program takes the rest of the disk
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err
        line = _one_line((out, err), 2, "the disk is full")
        assert "free space and run again" in line
        filler.unlink()
        assert {k: _digest(disk / k / "cgan") for k in ("syn", "aug")} == before
        assert not [p for k in ("syn", "aug") for p in (disk / k).glob(".*-*")]
