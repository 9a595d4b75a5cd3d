"""The WebDataset form of a dataset: tar shards that the ``webdataset`` package, Hugging Face
``datasets.load_dataset("webdataset", ...)`` and any tar reader take as they are.

    <root>/train-000000.tar   (or .tar.gz) one sample per image: <key>.png, <key>.cls (the class id as text),
                              <key>.json (the image's metadata row); keys are file stems without dots
    <root>/metadata.parquet   the same rows for pandas; ``file_name`` is ``<tar>/<key>.png``
    <root>/classes.json, README.md

A folder of a few large files instead of one small file per image: what DVC, object stores and data loaders
handle well (treeverse/dvc #7607). Tars are written byte-reproducibly (fixed order, mtime 0, no owner names).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Iterable

import pyarrow as pa

SUFFIXES = {"none": ".tar", "gzip": ".tar.gz"}  # sample.tar_compression -> shard suffix


def tar_name(prefix: str, k: int, compression: str = "none") -> str:
    return f"{prefix}-{k:06d}{SUFFIXES[compression]}"


def split_name(file_name: str) -> tuple[str, str] | None:
    """(tar file, member) of a ``<tar>/<member>`` file name; None for a plain file."""
    for suffix in SUFFIXES.values():
        tar, sep, member = file_name.partition(suffix + "/")
        if sep:
            return tar + suffix, member
    return None


def is_shard(path: Path) -> bool:
    return any(path.name.endswith(s) for s in SUFFIXES.values())


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def pack(table: pa.Table, pngs: Iterable[bytes], compression: str = "none") -> bytes:
    """The tar of one sample per metadata row (``file_name`` ``<tar>/<key>.png``) and its PNG bytes; gzipped
    with ``compression="gzip"`` (level 1, no timestamp: tar headers and padding are ~3 kB per image, which
    dominates small images; gzip takes a 28x28 shard to about the size of its PNGs)."""
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
    data = buffer.getvalue()
    return gzip.compress(data, compresslevel=1, mtime=0) if compression == "gzip" else data


def read_members(path: str | Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:*") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
