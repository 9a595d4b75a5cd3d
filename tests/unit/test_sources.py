import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthdata import sources
from synthdata.errors import SynthdataError
from synthdata.params import DataParams
from tests.conftest import idx_bytes, make_npz, need_mnist


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


@pytest.mark.parametrize(
    "breakage, needle",
    [
        (lambda r: (r / "cat" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage"), "bad.png: not a readable image"),
        (lambda r: (r / "dog" / "notes.txt").write_text("hello"), "notes.txt: not a readable image"),
        (lambda r: shutil.rmtree(r / "dog") or (r / "dog").mkdir(), "dog: class folder is empty"),
        (lambda r: shutil.rmtree(r / "dog"), "at least 2 classes"),
    ],
)
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
    np.savez(
        tmp_path / "big.npz",
        x=np.zeros((4, 8, 8), np.uint8),
        y=np.array([0, 1, 5, 1]),
        class_names=np.array(["a", "b", "c"]),
    )
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
    """The reader on IDX files written here (gzip in a folder; raw under MNIST/raw; truncated)."""
    from synthdata.sources.mnist import FILES

    rng = np.random.default_rng(0)
    n = {"train": 40, "test": 20}
    gz = tmp_path / "gz"
    gz.mkdir()
    for split, count in n.items():
        (gz / f"{FILES[(split, 'images')]}.gz").write_bytes(
            gzip.compress(idx_bytes(rng.integers(0, 256, (count, 28, 28))), mtime=0)
        )
        (gz / f"{FILES[(split, 'labels')]}.gz").write_bytes(gzip.compress(idx_bytes(np.arange(count) % 10), mtime=0))
    d = load(source="mnist", path=str(gz))
    assert d.images.shape == (60, 28, 28, 1) and (d.splits == "test").sum() == 20
    assert d.labels[d.splits == "test"].tolist() == list(np.arange(20) % 10)
    raw = tmp_path / "plain" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in gz.glob("*.gz"):
        (raw / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
    again = load(source="mnist", path=str(tmp_path / "plain"))
    assert np.array_equal(again.images, d.images) and np.array_equal(again.labels, d.labels)
    (raw / "t10k-labels-idx1-ubyte").write_bytes((raw / "t10k-labels-idx1-ubyte").read_bytes()[:-10])
    with pytest.raises(SynthdataError, match="truncated IDX"):
        load(source="mnist", path=str(tmp_path / "plain"))


def test_real_mnist_files(tmp_path):
    d = load(source="mnist", path=str(need_mnist()))
    assert d.images.shape == (70000, 28, 28, 1)
    assert np.bincount(d.labels[d.splits == "test"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_prepare_drops_duplicates_and_keeps_k_per_class_in_the_low_data_protocol(tmp_path):
    from synthdata import prepare
    from synthdata.dataset import SPLITS, read_metadata
    from synthdata.params import load_params
    from tests.conftest import write_params

    x = (np.random.default_rng(0).random((60, 8, 8)) * 255).astype(np.uint8)
    x[30:40] = x[0:10]  # ten exact duplicates
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(60) % 3)
    over = {
        "data.source": "npz",
        "data.path": str(tmp_path / "d.npz"),
        "prepare.val_fraction": 0.2,
        "prepare.test_fraction": 0.2,
    }
    full = prepare.run(load_params(write_params(tmp_path), over))
    assert full["duplicates_dropped"] == 10 and full["n_train"] + full["n_val"] + full["n_test"] == 50
    metas = {s: read_metadata(tmp_path / "data/prepared" / s)[0] for s in SPLITS}
    hashes = [set(m["pixel_sha256"]) for m in metas.values()]
    assert sum(len(h) for h in hashes) == len(set().union(*hashes)) == 50  # disjoint by content
    low = prepare.run(load_params(write_params(tmp_path), {**over, "prepare.train_per_class": 2}))
    small = {s: read_metadata(tmp_path / "data/prepared" / s)[0] for s in SPLITS}
    assert low["n_train"] == 6 and small["train"]["label_id"].value_counts().eq(2).all()
    assert set(small["train"]["origin"]) < set(metas["train"]["origin"])
    for s in ("val", "test"):
        assert small[s]["origin"].tolist() == metas[s]["origin"].tolist()


# --- every image mode Pillow opens from a PNG or JPEG becomes 8 bits correctly (scaled, never clipped) ---

GREY = np.tile(np.array([[0, 85, 170, 255], [17, 34, 51, 68]], np.uint8), (4, 2))  # 8x8: the smallest size


def _raw_png(path: Path, pixels: np.ndarray, bit_depth: int, colour_type: int) -> Path:
    """A PNG of any bit depth and colour type, written by hand (Pillow cannot write 16-bit colour or 2-bit grey)."""
    import struct
    import zlib

    from synthdata.pngio import _IEND, _SIGNATURE, _chunk

    h, w = pixels.shape[:2]
    if bit_depth == 16:
        rows = pixels.astype(">u2").reshape(h, -1).view(np.uint8)
    elif bit_depth < 8:  # pack several samples per byte, first sample in the high bits
        per = 8 // bit_depth
        padded = np.zeros((h, -(-w // per) * per), np.uint8)
        padded[:, :w] = pixels
        shifts = np.arange(per - 1, -1, -1) * bit_depth
        rows = (padded.reshape(h, -1, per) << shifts).sum(-1).astype(np.uint8)
    else:
        rows = pixels.reshape(h, -1)
    data = np.concatenate([np.zeros((h, 1), np.uint8), rows], 1).tobytes()
    header = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(data)) + _IEND)
    return path


def _one_image(tmp_path: Path, writer) -> np.ndarray:
    """Load a two-class folder whose first image is made by ``writer(path)``; return that image's pixels."""
    root = _folder(tmp_path / "f", size=(8, 8))
    target = root / "cat" / ("0.jpg" if writer.__name__.endswith("jpeg") else "0.png")
    (root / "cat" / "0.png").unlink()
    writer(target)
    d = load(source="image-folder", path=str(root))
    return d.images[d.origins.index(f"cat/{target.name}")]


def _pil(mode: str, fmt: str = "PNG", **save):
    def write(path: Path):
        img = Image.fromarray(GREY, "L")
        if mode == "1":
            img = img.convert("1", dither=Image.Dither.NONE)  # a plain threshold at 128
        elif mode != "L":
            img = img.convert(mode)
        img.save(path, fmt, **save)

    write.__name__ = f"pil_{mode}_{fmt.lower()}"
    return write


@pytest.mark.parametrize(
    "writer, expected",
    [
        (_pil("L"), GREY),
        (_pil("LA"), GREY),
        (_pil("1"), np.where(GREY >= 128, 255, 0)),
        (_pil("P"), GREY),
        (_pil("RGB"), GREY),
        (_pil("RGBA"), GREY),
    ],
    ids=lambda w: getattr(w, "__name__", ""),
)
def test_8_bit_png_modes_keep_their_values(tmp_path, writer, expected):
    got = _one_image(tmp_path, writer)
    assert got.dtype == np.uint8
    assert np.array_equal(got[..., 0], expected)  # grey stays grey; colour images are read as RGB
    if got.shape[-1] == 3:
        assert np.array_equal(got[..., 1], expected) and np.array_equal(got[..., 2], expected)


def test_palette_with_transparency_is_read(tmp_path):
    def write(path):
        Image.fromarray(GREY, "L").convert("P").save(path, transparency=0)

    got = _one_image(tmp_path, write)
    assert np.array_equal(got[..., 0], GREY)


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.tile(np.array([[0, 257, 32768, 65535], [1000, 40000, 60000, 65535]], np.uint16), (4, 2))
    got = _one_image(tmp_path, lambda p: Image.fromarray(values).save(p))
    assert Image.open(tmp_path / "f/cat/0.png").mode == "I;16"
    assert got[:2, :4, 0].tolist() == [[0, 1, 128, 255], [4, 156, 233, 255]]  # round(v * 255 / 65535)


def test_bright_16_bit_images_stay_distinct(tmp_path):
    """Clipped to 255, every image brighter than 255/65535 collapsed into one, then was dropped as a duplicate."""
    root = tmp_path / "f"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            value = 20000 + 10000 * i + (c == "b") * 3000
            Image.fromarray(np.full((8, 8), value, np.uint16)).save(root / c / f"{i}.png")
    d = load(source="image-folder", path=str(root))
    assert len({a.tobytes() for a in d.images}) == 8


@pytest.mark.parametrize(
    "bit_depth, colour_type, pixels, expected",
    [
        (16, 2, np.stack([np.full((2, 4), 65535), np.full((2, 4), 32896), np.zeros((2, 4))], -1), [255, 128, 0]),
        (
            16,
            6,
            np.stack([np.full((2, 4), 65535), np.full((2, 4), 32896), np.zeros((2, 4)), np.full((2, 4), 100)], -1),
            [255, 128, 0],
        ),
        (16, 4, np.stack([np.full((2, 4), 32896), np.full((2, 4), 65535)], -1), [128, 128, 128]),  # opens as RGBA
        (2, 0, np.array([[0, 1, 2, 3], [3, 2, 1, 0]]), None),
        (4, 0, np.array([[0, 5, 10, 15], [15, 10, 5, 0]]), None),
    ],
    ids=["rgb16", "rgba16", "la16", "grey2", "grey4"],
)
def test_other_bit_depths_are_scaled(tmp_path, bit_depth, colour_type, pixels, expected):
    pixels = np.tile(pixels, (4, 2, 1)[: pixels.ndim])
    got = _one_image(tmp_path, lambda p: _raw_png(p, pixels, bit_depth, colour_type))
    if expected is None:  # 2 and 4 bits: the levels spread over 0..255
        scale = 255 // (2**bit_depth - 1)
        assert np.array_equal(got[..., 0], pixels * scale)
    else:
        assert got[0, 0].tolist() == expected


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_jpeg_modes(tmp_path, mode):
    def write_jpeg(path):
        Image.fromarray(GREY, "L").convert(mode).save(path, "JPEG", quality=100)

    got = _one_image(tmp_path, write_jpeg)
    assert got.dtype == np.uint8 and np.abs(got[..., 0].astype(int) - GREY).max() <= 4


def test_32_bit_integer_and_float_modes(tmp_path):
    from synthdata.sources.image_folder import to_uint8

    wide = Image.fromarray(np.array([[0, 65535, 32768]], np.int32), "I")
    assert to_uint8(wide, tmp_path / "x.png").tolist() == [[0, 255, 128]]
    out_of_range = Image.fromarray(np.array([[0, 70000]], np.int32), "I")
    with pytest.raises(SynthdataError, match="x.png: I image with values outside 0..65535"):
        to_uint8(out_of_range, tmp_path / "x.png")
    with pytest.raises(SynthdataError, match="x.png: floating-point image"):
        to_uint8(Image.fromarray(np.zeros((2, 2), np.float32), "F"), tmp_path / "x.png")


def _huge_png_header(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims w x h pixels (the data stops short: nothing needs to be decoded)."""
    import struct
    import zlib

    from synthdata.pngio import _IEND, _SIGNATURE, _chunk

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 100)) + _IEND)


@pytest.mark.parametrize("w, h", [(20_000, 20_000), (4097, 4096), (9000, 9000)])
def test_oversized_images_are_refused_before_decoding(tmp_path, w, h):
    root = _folder(tmp_path / "f")
    _huge_png_header(root / "dog" / "huge.png", w, h)
    import time

    t0 = time.perf_counter()
    with pytest.raises(SynthdataError) as exc:
        load(source="image-folder", path=str(root))
    assert time.perf_counter() - t0 < 2  # refused from the header: no gigabyte decoded
    msg = str(exc.value)
    assert "huge.png" in msg and "\n" not in msg and ("limit" in msg)


def test_npz_with_a_huge_array_is_refused_from_its_header(tmp_path):
    """A .npz member whose header claims 10 GiB is refused before anything is loaded."""
    import zipfile

    header = {"descr": "|u1", "fortran_order": False, "shape": (100_000, 320, 320)}
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        with z.open("x.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(b"\0" * 1000)  # the rest is missing: it must never be read
        with z.open("y.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros(100_000, np.int64))
    with pytest.raises(SynthdataError) as exc:
        load(source="npz", path=str(tmp_path / "huge.npz"))
    assert "array 'x' (100000, 320, 320) would take 9.5 GiB" in str(exc.value)


def test_mnist_gzip_bomb_is_refused(tmp_path, monkeypatch):
    from synthdata.sources import mnist

    monkeypatch.setattr(mnist, "MAX_IDX_BYTES", 1 << 20)  # the same check at 1 MiB, so the test stays small
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb") as f:
        f.write(b"\0\0\x08\x03" + b"\0" * (2 << 20))
    with pytest.raises(SynthdataError, match="more than 1,048,576 bytes"):
        mnist.read_idx(bomb)
