"""Atomic writes: outputs are built in a temporary sibling and renamed into place.

An interrupted or failed stage therefore never leaves a half-written output, and never destroys the
previous one before the new one is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it replaces ``final`` whole, on failure it vanishes."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(final, "tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, final)


def replace_dir(src: Path, final: Path) -> None:
    """Move folder ``src`` to ``final``, replacing what was there (the old copy is removed last)."""
    old = None
    if final.exists() or final.is_symlink():
        old = _sibling(final, "old")
        os.replace(final, old)
    os.replace(src, final)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write ``data`` under a temporary sibling name, then rename it to ``path``: never half-written.
    ``durable=False`` skips the fsync (a dataset's many small files, whose folder is replaced whole later)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def link_or_copy(src: str, dst: str) -> None:
    """Hard-link ``src`` to ``dst``, or copy it where links fail."""
    try:
        os.link(src, dst)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(src, dst)


def link_tree(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy folder ``src`` to ``dst`` as hard links where the file system allows (else as copies).

    Safe for outputs that are only ever replaced whole (``atomic_dir``): a later run writes new files
    rather than changing these in place. Replace a file of ``dst`` by unlinking it first, never by
    writing into it, or the source changes too."""
    shutil.copytree(src, dst, copy_function=link_or_copy)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def existing_ancestor(folder: str | os.PathLike) -> Path:
    """``folder`` or its nearest existing parent: where a folder not made yet will live."""
    folder = Path(folder).absolute()
    return next(p for p in (folder, *folder.parents) if p.exists())


def _blocks(nbytes: int, block: int) -> int:
    return -(-nbytes // block) * block


def check_free_space(
    folder: str | os.PathLike, files: int, bytes_per_file: int, extra_bytes: int, what: str, fix: str
) -> None:
    """Refuse up front when ``files`` files of ``bytes_per_file`` bytes (each rounded up to the file system's
    block) plus ``extra_bytes`` do not fit in the free space or free inodes of ``folder``'s file system."""
    from synthdata.errors import SynthdataError

    folder = Path(folder)
    st = os.statvfs(existing_ancestor(folder))
    block = st.f_frsize or 4096
    need = files * _blocks(bytes_per_file, block) + _blocks(extra_bytes, block)
    need += need // 50 + 16 * block  # directories and file-system overhead: 2% and a few blocks
    free = st.f_bavail * block
    if need > free:
        raise SynthdataError(
            f"{what}: needs about {need / 1e6:,.1f} MB in {folder} ({files:,} files), but only "
            f"{free / 1e6:,.1f} MB are free there; free space or {fix}"
        )
    if st.f_files and files > st.f_favail:  # f_files == 0: the file system has no inode limit
        raise SynthdataError(
            f"{what}: needs {files:,} files in {folder}, but only {st.f_favail:,} more fit on "
            f"its file system (inodes); free some or {fix}"
        )


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error is the disk (or quota) running out: errno, or the text of libraries that drop it."""
    import errno

    return isinstance(exc, OSError) and (
        exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc)
    )
