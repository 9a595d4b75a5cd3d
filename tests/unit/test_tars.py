"""WebDataset tar shards: names, members, byte-reproducibility, refusal of keys WebDataset would split."""

import io
import tarfile

import pyarrow as pa
import pytest

from synthdata import tars
from synthdata.dataset import METADATA_SCHEMA


def rows(names: list[str]) -> pa.Table:
    n = len(names)
    return pa.table(
        {
            "file_name": names,
            "label": ["a"] * n,
            "label_id": [0] * n,
            "split": ["train"] * n,
            "source": ["synthetic"] * n,
            "generator": ["cgan"] * n,
            "checkpoint_sha256": ["0" * 64] * n,
            "seed": list(range(n)),
            "origin": [None] * n,
            "pixel_sha256": ["f" * 64] * n,
        },
        schema=METADATA_SCHEMA,
    )


def test_names_and_their_split():
    assert tars.tar_name("train", 7) == "train-000007.tar"
    assert tars.tar_name("train-real", 0, "gzip") == "train-real-000000.tar.gz"
    assert tars.split_name("train-000007.tar/cgan-0000001.png") == ("train-000007.tar", "cgan-0000001.png")
    assert tars.split_name("train-000000.tar.gz/k.png") == ("train-000000.tar.gz", "k.png")
    assert tars.split_name("3/cgan-0000001.png") is None


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_pack_is_byte_reproducible_and_holds_png_cls_json_per_key(compression):
    table = rows(["train-000000.tar/cgan-0000000.png", "train-000000.tar/cgan-0000001.png"])
    data = tars.pack(table, [b"png0", b"png1"], compression)
    assert data == tars.pack(table, [b"png0", b"png1"], compression)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [f"cgan-000000{i}.{e}" for i in (0, 1) for e in ("png", "cls", "json")]
        assert {(m.mtime, m.uname, m.gname, m.mode) for m in members} == {(0, "", "", 0o644)}
        assert tar.extractfile("cgan-0000001.png").read() == b"png1"
        assert tar.extractfile("cgan-0000001.cls").read() == b"0"


def test_a_key_with_a_dot_is_refused():
    with pytest.raises(ValueError, match="keys may not contain dots"):
        tars.pack(rows(["train-000000.tar/cgan.v2-0000000.png"]), [b"x"])
