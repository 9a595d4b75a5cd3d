"""Output locks: one writer per folder, readers shared, stale temporary folders removed, nothing left held."""

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synthdata import locks
from synthdata.errors import RepoBusy

HOLD = """
import sys, time
from synthdata import locks
mode, path = sys.argv[1], sys.argv[2]
with locks.hold(**{mode: [path]}):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(mode: str, path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, mode, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize(
    "first, second, held",
    [("writes", "writes", True), ("writes", "reads", True), ("reads", "writes", True), ("reads", "reads", False)],
)
def test_a_second_run_stops_with_one_line_naming_the_folder(tmp_path, first, second, held):
    out = tmp_path / "data" / "synthetic" / "cgan"
    proc = _holder(first, out)
    try:
        if held:
            with pytest.raises(RepoBusy) as exc:
                with locks.hold(**{second: [out]}):
                    pass
            msg = str(exc.value)
            assert str(out) in msg and "\n" not in msg and "run this again when it has finished" in msg
            if first == "writes":
                assert f"pid {proc.pid}" in msg  # who holds it
        else:
            with locks.hold(**{second: [out]}):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_no_lock(tmp_path):
    out = tmp_path / "models" / "cgan"
    proc = _holder("writes", out)
    proc.kill()
    proc.wait()
    with locks.hold(writes=[out]):
        fd = os.open(locks.lock_file(out), os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)


def test_other_folders_are_independent(tmp_path):
    proc = _holder("writes", tmp_path / "synthetic" / "cgan")
    try:
        with locks.hold(writes=[tmp_path / "synthetic" / "cvae"], reads=[tmp_path / "models" / "cvae"]):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_the_writer_removes_stale_temporary_siblings_only(tmp_path):
    out = tmp_path / "augmented" / "cgan"
    out.mkdir(parents=True)
    (out / "keep.png").write_bytes(b"x")
    stale = [tmp_path / "augmented" / ".cgan.tmp-123-abcd1234", tmp_path / "augmented" / ".cgan.old-9-00ff00ff"]
    for p in stale:
        (p / "sub").mkdir(parents=True)
    other = tmp_path / "augmented" / ".cvae.tmp-123-abcd1234"  # another generator's: not ours to remove
    other.mkdir()
    with locks.hold(reads=[out]):
        assert all(p.exists() for p in stale)  # a reader removes nothing
    with locks.hold(writes=[out]):
        assert not any(p.exists() for p in stale)
    assert other.is_dir() and (out / "keep.png").is_file()


def test_locks_are_released_on_error(tmp_path):
    out = tmp_path / "x"
    with pytest.raises(ValueError):
        with locks.hold(writes=[out]):
            raise ValueError("boom")
    t0 = time.perf_counter()
    with locks.hold(writes=[out]):
        pass
    assert time.perf_counter() - t0 < 1
