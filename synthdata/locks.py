"""Locks on output folders, so that two runs of a stage never interleave their outputs.

A stage holds an exclusive lock on every folder it writes and a shared lock on every folder it reads,
for its whole run. A second run that needs a folder someone else holds stops at once with one line
(:class:`~synthdata.errors.RepoBusy`, exit code 75: worth retrying) and touches nothing; runs over other
folders (another generator, say) go on side by side. The locks are ``flock`` locks on hidden files beside
the folders (``data/synthetic/.cgan.lock``): the kernel drops them when their process ends, however it
ends, so a killed run never leaves a stale lock behind. ``.dvcignore`` and ``.gitignore`` list them.

Holding the exclusive lock also means no live run owns the folder's temporary siblings (``.NAME.tmp-*``,
``.NAME.old-*``, see :mod:`synthdata.fsutil`): they are left over from an interrupted run, and are removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
from pathlib import Path
from typing import Iterable, Iterator

from synthdata.errors import RepoBusy

STALE = ("tmp", "old")  # the tags fsutil gives temporary siblings


def lock_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return f" ({text})" if text else ""


def _acquire(path: Path, exclusive: bool) -> int:
    file = lock_file(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        doing = "being used" if exclusive else "being written"
        raise RepoBusy(
            f"{path} is {doing} by another synthdata run{holder}; run this again when it has finished"
        ) from None
    if exclusive:  # say who holds it, for the message of a run that finds it held
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {' '.join(Path(a).name for a in sys.argv[:4])}".encode(), 0)
    return fd


def remove_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings an interrupted run left beside ``path``; call with its lock held."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = [p for tag in STALE for p in path.parent.glob(f".{path.name}.{tag}-*")]
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def hold(writes: Iterable[str | os.PathLike] = (), reads: Iterable[str | os.PathLike] = ()) -> Iterator[None]:
    """Lock ``writes`` exclusively and ``reads`` shared (in one sorted order), removing the stale temporary
    siblings of ``writes``; release everything on exit."""
    wanted = {Path(p): True for p in writes}
    for p in reads:
        wanted.setdefault(Path(p), False)
    fds: list[int] = []
    try:
        for path in sorted(wanted):
            fds.append(_acquire(path, wanted[path]))
        for path, exclusive in wanted.items():
            if exclusive:
                remove_stale(path)
        yield
    finally:
        for fd in fds:
            os.close(fd)  # closing the last descriptor releases the flock
