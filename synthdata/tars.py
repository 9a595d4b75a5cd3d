"""The WebDataset form of a dataset: tar shards that the ``webdataset`` package, Hugging Face
``datasets.load_dataset("webdataset", ...)`` and any tar reader take as they are.

    <root>/train-000000.tar   one sample per image: <key>.png, <key>.cls (the class id as text),
                              <key>.json (the image's metadata row); keys are file stems without dots
    <root>/metadata.parquet   the same rows for pandas; ``file_name`` is ``<tar>/<key>.png``
    <root>/classes.json, README.md

A folder of a few large files instead of one small file per image: what DVC, object stores and data loaders
handle well (treeverse/dvc #7607). Tars are written byte-reproducibly (fixed order, mtime 0, no owner names).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Iterable

import pyarrow as pa

TAR_SUFFIX = ".tar"


def tar_name(prefix: str, k: int) -> str:
    return f"{prefix}-{k:06d}{TAR_SUFFIX}"


def split_name(file_name: str) -> tuple[str, str] | None:
    """(tar file, member) of a ``<tar>/<member>`` file name; None for a plain file."""
    tar, sep, member = file_name.partition(TAR_SUFFIX + "/")
    return (tar + TAR_SUFFIX, member) if sep else None


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def pack(table: pa.Table, pngs: Iterable[bytes]) -> bytes:
    """The tar of one sample per metadata row (``file_name`` ``<tar>/<key>.png``) and its PNG bytes."""
    buffer = io.BytesIO()
    rows = table.to_pylist()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for row, png in zip(rows, pngs):
            key = row["file_name"].rsplit("/", 1)[1].removesuffix(".png")
            if "." in key:
                raise ValueError(f"WebDataset keys may not contain dots: {key!r}")
            meta = {k: v for k, v in row.items() if k != "file_name"}
            _add(tar, f"{key}.png", png)
            _add(tar, f"{key}.cls", str(row["label_id"]).encode())
            _add(tar, f"{key}.json", json.dumps(meta, sort_keys=True).encode())
    return buffer.getvalue()


def read_members(path: str | Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
