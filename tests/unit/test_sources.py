import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthdata import sources
from synthdata.errors import SynthdataError
from synthdata.params import DataParams
from tests.conftest import make_npz

MNIST = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mnist"


def load(**kw):
    return sources.load(DataParams(**kw))


def test_sklearn_digits_embedded():
    d = load()
    assert d.images.shape == (1797, 8, 8, 1) and d.images.dtype == np.uint8
    assert d.images.max() == 255 and np.bincount(d.labels).min() > 170
    assert d.class_names == [str(i) for i in range(10)]


def _folder(root: Path, classes=("cat", "dog"), n=3, size=(10, 12), mode="L") -> Path:
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = np.full((*size, 3) if mode == "RGB" else size, 40 * i, np.uint8)
            Image.fromarray(arr, mode).save(root / c / f"{i}.png")
    return root


def test_image_folder_reads_classes_in_sorted_order(tmp_path):
    d = load(source="image-folder", path=str(_folder(tmp_path / "f")))
    assert d.class_names == ["cat", "dog"] and d.images.shape == (6, 10, 12, 1)
    assert d.origins[0] == "cat/0.png"


def test_image_folder_mixed_sizes_needs_a_policy(tmp_path):
    root = _folder(tmp_path / "f")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "dog" / "big.png")
    with pytest.raises(SynthdataError, match="big.png.*data.image_size"):
        load(source="image-folder", path=str(root))
    for policy in ("resize", "center-crop"):
        d = load(source="image-folder", path=str(root), image_size=[12, 12], resize=policy)
        assert d.images.shape == (7, 12, 12, 1)


def test_image_folder_rgb_and_grey_mix_becomes_rgb(tmp_path):
    root = _folder(tmp_path / "f")
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / "cat" / "rgb.png")
    assert load(source="image-folder", path=str(root)).images.shape[-1] == 3


@pytest.mark.parametrize("breakage, needle", [
    (lambda r: (r / "cat" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage"), "bad.png: not a readable image"),
    (lambda r: (r / "dog" / "notes.txt").write_text("hello"), "notes.txt: not a readable image"),
    (lambda r: shutil.rmtree(r / "dog") or (r / "dog").mkdir(), "dog: class folder is empty"),
    (lambda r: shutil.rmtree(r / "dog"), "at least 2 classes"),
])
def test_image_folder_bad_input(tmp_path, breakage, needle):
    root = _folder(tmp_path / "f")
    breakage(root)
    with pytest.raises(SynthdataError, match=needle):
        load(source="image-folder", path=str(root))


def test_missing_paths():
    for source in ("image-folder", "mnist", "npz"):
        with pytest.raises(SynthdataError, match="not found"):
            load(source=source, path="no/such/place")


def test_npz_labels_out_of_range_and_empty_class(tmp_path):
    good = make_npz(tmp_path / "a.npz")
    assert load(source="npz", path=str(good)).images.shape == (18, 8, 8, 1)
    np.savez(tmp_path / "neg.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, -1, 1]))
    with pytest.raises(SynthdataError, match="label -1 is out of range"):
        load(source="npz", path=str(tmp_path / "neg.npz"))
    np.savez(tmp_path / "big.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 5, 1]),
             class_names=np.array(["a", "b", "c"]))
    with pytest.raises(SynthdataError, match="label 5 is out of range 0..2"):
        load(source="npz", path=str(tmp_path / "big.npz"))
    np.savez(tmp_path / "gap.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 2, 2, 0]))
    with pytest.raises(SynthdataError, match="class '1' has no images"):
        load(source="npz", path=str(tmp_path / "gap.npz"))


def test_class_names_cannot_escape_the_output_folder(tmp_path):
    path = make_npz(tmp_path / "evil.npz", class_names=np.array(["../../etc", "ok", "x"]))
    with pytest.raises(SynthdataError, match="cannot be a folder name"):
        load(source="npz", path=str(path))


def test_npz_names_are_made_to_sort_in_label_order(tmp_path):
    path = make_npz(tmp_path / "n.npz", class_names=np.array(["zebra", "ant", "moth"]))
    names = load(source="npz", path=str(path)).class_names
    assert names == sorted(names) and names[0].endswith("zebra")


def test_too_small_and_too_large_images(tmp_path):
    path = make_npz(tmp_path / "small.npz", size=4)
    with pytest.raises(SynthdataError, match="8x8 to 64x64"):
        load(source="npz", path=str(path))


def test_mnist_idx_gzip_and_raw(tmp_path):
    d = load(source="mnist", path=str(MNIST))
    assert d.images.shape == (70000, 28, 28, 1)
    assert np.bincount(d.labels[d.splits == "test"]).tolist()[:3] == [980, 1135, 1032]
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in MNIST.glob("*.gz"):
        (raw / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
    assert load(source="mnist", path=str(tmp_path)).images.shape == (70000, 28, 28, 1)
    (raw / "t10k-labels-idx1-ubyte").write_bytes((raw / "t10k-labels-idx1-ubyte").read_bytes()[:-10])
    with pytest.raises(SynthdataError, match="truncated IDX"):
        load(source="mnist", path=str(tmp_path))


def test_prepare_drops_duplicates_and_keeps_k_per_class_in_the_low_data_protocol(tmp_path):
    from synthdata import prepare
    from synthdata.dataset import read_metadata
    from synthdata.params import load_params
    from tests.conftest import write_params

    x = (np.random.default_rng(0).random((60, 8, 8)) * 255).astype(np.uint8)
    x[30:40] = x[0:10]  # ten exact duplicates
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(60) % 3)
    over = {"data.source": "npz", "data.path": str(tmp_path / "d.npz"), "prepare.val_fraction": 0.2,
            "prepare.test_fraction": 0.2}
    full = prepare.run(load_params(write_params(tmp_path), over))
    assert full["duplicates_dropped"] == 10 and full["n_train"] + full["n_val"] + full["n_test"] == 50
    metas = {s: read_metadata(tmp_path / "data/prepared" / s)[0] for s in prepare.SPLITS}
    hashes = [set(m["pixel_sha256"]) for m in metas.values()]
    assert sum(len(h) for h in hashes) == len(set().union(*hashes)) == 50  # disjoint by content
    low = prepare.run(load_params(write_params(tmp_path), {**over, "prepare.train_per_class": 2}))
    small = {s: read_metadata(tmp_path / "data/prepared" / s)[0] for s in prepare.SPLITS}
    assert low["n_train"] == 6 and small["train"]["label_id"].value_counts().eq(2).all()
    assert set(small["train"]["origin"]) < set(metas["train"]["origin"])
    for s in ("val", "test"):
        assert small[s]["origin"].tolist() == metas[s]["origin"].tolist()
