"""The labeled dataset format, one for prepared real, synthetic and augmented data alike.

    <root>/<class_name>/<id>.png   an ImageFolder tree; class names sort in label order
                                   (or, with sample.format: webdataset, <root>/train-000000.tar, ...:
                                   see synthdata.tars; file_name is then <tar>/<id>.png)
    <root>/metadata.parquet        one row per image (METADATA_SCHEMA), file_name relative to <root>
    <root>/classes.json            class names in label order
    <root>/README.md               the dataset card

It loads unchanged with ``torchvision.datasets.ImageFolder(root)``, ``pandas.read_parquet``, and
:func:`load_dataset`. The writer streams: PNGs are encoded and written by worker processes (one per core,
see :mod:`synthdata.pngio`) with a bounded number of batches in flight, and metadata goes out in Parquet
row groups, so memory does not grow with the number of images.
"""

from __future__ import annotations

import collections
import hashlib
import json
import multiprocessing
import os
import warnings
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torchvision.io import decode_png

from synthdata import pngio, tars
from synthdata.errors import SynthdataError
from synthdata.procs import die_with_parent

# torchvision 0.29 marks its libpng decoder deprecated in favour of TorchCodec; it still works.
warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision", category=DeprecationWarning
)

METADATA_SCHEMA = pa.schema(
    [
        ("file_name", pa.string()),  # relative to the dataset root: <class_name>/<id>.png
        ("label", pa.string()),  # class name
        ("label_id", pa.int64()),
        ("split", pa.string()),  # train / val / test
        ("source", pa.string()),  # real / synthetic
        ("generator", pa.string()),  # registry name of the generator; null for real images
        ("checkpoint_sha256", pa.string()),  # sha256 of the checkpoint file that made it; null for real
        ("seed", pa.int64()),  # latent seed: generator.generate([label_id], seed) remakes it
        ("origin", pa.string()),  # where a real image came from in its source
        ("pixel_sha256", pa.string()),  # sha256 of the raw uint8 pixels (C, H, W): duplicate/leak checks
    ]
)


SPLITS = ("train", "val", "test")  # the prepared real data: <paths.prepared>/<split>
ROW_GROUP = 100_000  # metadata rows per Parquet row group


def _pixel_hashes(images: np.ndarray) -> list[str]:
    return [hashlib.sha256(a.tobytes()).hexdigest() for a in images]


# A producer makes the images of rows [lo, hi) inside a writer process (say, a generator sampling them).
# It is set before the pool forks, so the workers inherit it (the model included) without pickling.
_PRODUCER: Callable[[int, int], np.ndarray] | None = None


def _init_worker(parent: int) -> None:
    die_with_parent(parent)
    torch.set_num_threads(1)  # one process per core; torch's own threads would only contend


def _write_batch(root: str, names: list[str], images: np.ndarray | tuple[int, int], level: int) -> list[str]:
    if isinstance(images, tuple):
        images = _PRODUCER(*images)
    pngio.write_pngs(root, names, images, level)
    return _pixel_hashes(images)


def _pool(workers: int) -> ProcessPoolExecutor:
    # fork: workers start in milliseconds, inherit the producer, and import nothing anew
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),))


class MetadataWriter:
    """``metadata.parquet`` written as tables arrive, in few large row groups (the Parquet footer holds
    metadata per row group, kept in memory until close)."""

    def __init__(self, root: Path):
        self._parquet = pq.ParquetWriter(Path(root) / "metadata.parquet", METADATA_SCHEMA, compression="zstd")
        self._rows: list[pa.Table] = []
        self._buffered = 0

    def write(self, table: pa.Table) -> None:
        self._rows.append(table)
        self._buffered += table.num_rows
        if self._buffered >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._parquet.write_table(pa.concat_tables(self._rows), row_group_size=ROW_GROUP)
        self._rows, self._buffered = [], 0

    def close(self, flush: bool = True) -> None:
        try:
            if flush:
                self._flush()
        finally:
            self._parquet.close()


def finish_dataset(root: Path, class_names: list[str], card: str) -> None:
    """The files beside the images and ``metadata.parquet``: ``classes.json`` and the dataset card."""
    (Path(root) / "classes.json").write_text(json.dumps(list(class_names), indent=2) + "\n")
    (Path(root) / "README.md").write_text(card)


class DatasetWriter:
    """Write a labeled dataset into an (empty, temporary) folder; call :meth:`close` to finish it.

    Images are encoded and written by one process per core. With a ``producer`` (CPU only: CUDA does
    not survive a fork) the workers also make the images, so sampling runs on every core too.
    """

    def __init__(
        self,
        root: Path,
        class_names: list[str],
        workers: int = 0,
        compression_level: int = 1,
        producer: Callable[[int, int], np.ndarray] | None = None,
    ):
        global _PRODUCER
        self.root = Path(root)
        self.class_names = list(class_names)
        self.level = compression_level
        for name in self.class_names:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.workers = workers or os.cpu_count() or 1
        _PRODUCER = producer
        self._pool = _pool(self.workers)
        self._pending: collections.deque[tuple[list[Future], pa.Table | None]] = collections.deque()
        self._metadata = MetadataWriter(self.root)
        self.counts = collections.Counter()

    def add(
        self,
        images: torch.Tensor | np.ndarray | tuple[int, int],
        label_ids: np.ndarray,
        ids: list[str],
        *,
        split: str,
        source: str,
        generator: str | None = None,
        checkpoint_sha256: str | None = None,
        seeds: np.ndarray | None = None,
        origins: list[str] | None = None,
    ) -> None:
        """Queue a batch: uint8 images (N, C, H, W), or the (lo, hi) rows the producer makes; class ids;
        unique file ids (no extension). Metadata rows are written in the order batches are added."""
        if isinstance(images, torch.Tensor):
            images = images.numpy()
        if not isinstance(images, tuple):
            images = np.ascontiguousarray(images)
        label_ids = np.asarray(label_ids, dtype=np.int64)
        n = len(label_ids)
        labels = [self.class_names[i] for i in label_ids]
        file_names = [f"{lab}/{i}.png" for lab, i in zip(labels, ids)]
        table = pa.table(
            {
                "file_name": file_names,
                "label": labels,
                "label_id": label_ids,
                "split": [split] * n,
                "source": [source] * n,
                "generator": [generator] * n,
                "checkpoint_sha256": [checkpoint_sha256] * n,
                "seed": seeds if seeds is not None else pa.nulls(n, pa.int64()),
                "origin": origins if origins is not None else pa.nulls(n, pa.string()),
            },
            schema=METADATA_SCHEMA.remove(METADATA_SCHEMA.get_field_index("pixel_sha256")),
        )
        self.counts.update(labels)
        step = -(-n // self.workers)
        futures = []
        for lo in range(0, n, step):
            part = (
                (images[0] + lo, images[0] + min(lo + step, n)) if isinstance(images, tuple) else images[lo : lo + step]
            )
            futures.append(
                self._pool.submit(_write_batch, str(self.root), file_names[lo : lo + step], part, self.level)
            )
        self._pending.append((futures, table))
        self._drain(keep=2)  # bounded memory: about two batches in flight

    def add_files(self, src_root: Path, metadata: pd.DataFrame) -> None:
        """Copy already-written images (hard links where possible) with their metadata rows."""
        names = metadata["file_name"].tolist()
        step = max(1, -(-len(names) // self.workers))
        futures = [
            self._pool.submit(pngio.link_files, str(src_root), str(self.root), names[lo : lo + step])
            for lo in range(0, len(names), step)
        ]
        self._pending.append((futures, pa.Table.from_pandas(metadata, schema=METADATA_SCHEMA, preserve_index=False)))
        self.counts.update(metadata["label"])
        self._drain(keep=2)

    def _drain(self, keep: int) -> None:
        while len(self._pending) > keep:
            futures, table = self._pending.popleft()
            hashes = [h for f in futures for h in (f.result() or [])]
            if "pixel_sha256" not in table.column_names:
                table = table.append_column("pixel_sha256", pa.array(hashes, pa.string()))
            self._metadata.write(table)

    def close(self, card: str) -> None:
        global _PRODUCER
        drained = False
        try:
            self._drain(keep=0)
            drained = True
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._metadata.close(flush=drained)
            _PRODUCER = None
        finish_dataset(self.root, self.class_names, card)


@dataclass
class LoadedDataset:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    class_names: list[str]
    metadata: pd.DataFrame


def read_metadata(root: str | os.PathLike) -> tuple[pd.DataFrame, list[str]]:
    root = Path(root)
    meta, classes = root / "metadata.parquet", root / "classes.json"
    if not meta.is_file() or not classes.is_file():
        raise SynthdataError(
            f"{root}: not a synthdata dataset (no metadata.parquet / classes.json); run the stage that makes it first"
        )
    return pd.read_parquet(meta), json.loads(classes.read_text())


def decode(root: Path, names: Iterable[str]) -> list[torch.Tensor]:
    """PNG files, or members of WebDataset tars (``<tar>/<key>.png``: each tar read once per call)."""
    from torchvision.io import read_file

    opened: dict[str, dict[str, bytes]] = {}
    out = []
    for n in names:
        inside = tars.split_name(n)
        if inside is None:
            out.append(decode_png(read_file(str(root / n))))
            continue
        tar, member = inside
        if tar not in opened:
            opened = {tar: tars.read_members(root / tar)}  # rows of one tar are contiguous: keep only the last
        data = opened[tar][member]
        out.append(decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8)))
    return out


def stored_files(metadata: pd.DataFrame) -> list[str]:
    """The files a dataset's rows live in, relative to its root: each PNG, or each tar once (in row order)."""
    return list(dict.fromkeys((tars.split_name(f) or (f,))[0] for f in metadata["file_name"]))


def load_dataset(root: str | os.PathLike, workers: int = 0) -> LoadedDataset:
    """Load a dataset as uint8 tensors (N, C, H, W) and int64 labels, in metadata order."""
    root = Path(root)
    df, class_names = read_metadata(root)
    names = df["file_name"].tolist()
    workers = workers or os.cpu_count() or 1
    step = max(1, -(-len(names) // (4 * workers)))
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda lo: decode(root, names[lo : lo + step]), range(0, len(names), step)))
    flat = [t for part in parts for t in part]
    images = torch.stack(flat) if flat else torch.empty(0, 1, 8, 8, dtype=torch.uint8)
    labels = torch.tensor(df["label_id"].to_numpy(dtype=np.int64))
    return LoadedDataset(images, labels, class_names, df)


def check_disjoint(named: dict[str, LoadedDataset]) -> None:
    """Stop if any two datasets share an image (by ``pixel_sha256``): a leak between splits."""
    seen = {k: set(v.metadata["pixel_sha256"]) for k, v in named.items()}
    keys = list(seen)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            common = seen[a] & seen[b]
            if common:
                raise SynthdataError(
                    f"leak: {len(common)} identical image(s) in both {a} and {b}; "
                    "run 'synthdata prepare' again (it drops duplicates)"
                )


LOADING = {
    "imagefolder": """```python
import pandas as pd, torchvision, synthdata, datasets
ds = torchvision.datasets.ImageFolder("<this folder>")    # PIL images, labels in classes.json order
hf = datasets.load_dataset("imagefolder", data_dir="<this folder>", split="train")  # + every metadata column
meta = pd.read_parquet("<this folder>/metadata.parquet")  # one row per image
data = synthdata.load_dataset("<this folder>")            # uint8 tensors (N, C, H, W) and labels
```""",
    "webdataset": """WebDataset tar shards: per image `<key>.png`, `<key>.cls` (class id), `<key>.json` (metadata).

```python
import glob, pandas as pd, webdataset as wds, datasets, synthdata
shards = sorted(glob.glob("<this folder>/*.tar"))
ds = wds.WebDataset(shards, shardshuffle=False).decode("l8").to_tuple("png", "cls")  # "rgb8" for colour
hf = datasets.load_dataset("webdataset", data_files={"train": shards}, split="train")
meta = pd.read_parquet("<this folder>/metadata.parquet")  # one row per image; file_name is <tar>/<key>.png
data = synthdata.load_dataset("<this folder>")            # uint8 tensors (N, C, H, W) and labels
```""",
}


def dataset_card(
    title: str,
    summary: str,
    counts: dict[str, int],
    class_names: list[str],
    provenance: list[str],
    license: str,
    form: str = "imagefolder",
) -> str:
    rows = "\n".join(f"| {c} | {counts.get(c, 0)} |" for c in class_names)
    prov = "\n".join(f"- {p}" for p in provenance)
    return f"""# {title}

{summary}

## Contents

| class | images |
| --- | --- |
{rows}
| **total** | **{sum(counts.values())}** |

## Provenance

{prov}

## License

{license}

## Loading

{LOADING[form]}

Columns of `metadata.parquet`: {", ".join(f"`{f.name}`" for f in METADATA_SCHEMA)}.
"""
