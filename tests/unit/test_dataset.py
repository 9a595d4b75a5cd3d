import json

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from synthdata.dataset import METADATA_SCHEMA, DatasetWriter, load_dataset
from synthdata.errors import SynthdataError


def _write(root, n=20, channels=1):
    images = torch.randint(0, 256, (n, channels, 9, 11), dtype=torch.uint8)
    labels = np.arange(n) % 3
    w = DatasetWriter(root, ["a", "b", "c"], workers=2)
    w.add(
        images[:12],
        labels[:12],
        [f"s-{i:03d}" for i in range(12)],
        split="train",
        source="synthetic",
        generator="cgan",
        checkpoint_sha256="ab" * 32,
        seeds=np.arange(12),
    )
    w.add(
        images[12:],
        labels[12:],
        [f"s-{i:03d}" for i in range(12, n)],
        split="train",
        source="synthetic",
        generator="cgan",
        checkpoint_sha256="ab" * 32,
        seeds=np.arange(12, n),
    )
    w.close("# card\n")
    return images, labels


@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_with_synthdata_imagefolder_and_pandas(tmp_path, channels):
    images, labels = _write(tmp_path, channels=channels)
    data = load_dataset(tmp_path)
    assert data.images.dtype == torch.uint8 and torch.equal(data.images, images)
    assert data.labels.tolist() == labels.tolist()
    meta = pd.read_parquet(tmp_path / "metadata.parquet")
    assert [f.name for f in METADATA_SCHEMA] == list(meta.columns)
    assert meta["seed"].tolist() == list(range(20)) and (meta["source"] == "synthetic").all()
    assert json.loads((tmp_path / "classes.json").read_text()) == ["a", "b", "c"]
    folder = torchvision.datasets.ImageFolder(str(tmp_path))
    assert folder.classes == ["a", "b", "c"] and len(folder) == 20
    by_name = {p.split("/")[-1]: t for p, t in folder.samples}
    assert all(by_name[f.split("/")[-1]] == lid for f, lid in zip(meta["file_name"], meta["label_id"]))


def test_pixel_hash_identifies_content(tmp_path):
    _write(tmp_path)
    meta = pd.read_parquet(tmp_path / "metadata.parquet")
    assert meta["pixel_sha256"].str.len().eq(64).all() and meta["pixel_sha256"].is_unique


def test_not_a_dataset(tmp_path):
    with pytest.raises(SynthdataError, match="not a synthdata dataset"):
        load_dataset(tmp_path)
