import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import decode_png

from synthdata.pngio import encode_png, write_pngs


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 9, 13), (3, 64, 64), (1, 64, 17)])
def test_encoded_png_decodes_to_the_same_pixels(shape):
    img = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(img)
    pil = np.asarray(Image.open(io.BytesIO(data)))
    assert np.array_equal(pil, img[0] if shape[0] == 1 else img.transpose(1, 2, 0))
    assert Image.open(io.BytesIO(data)).mode == ("L" if shape[0] == 1 else "RGB")
    tv = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    assert torch.equal(tv, torch.from_numpy(img))


def test_compression_level_changes_size_not_pixels(tmp_path):
    img = np.zeros((1, 28, 28), np.uint8)
    img[0, 10:18, 5:20] = 255
    fast, small = encode_png(img, 1), encode_png(img, 9)
    assert len(small) <= len(fast)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(small))), np.asarray(Image.open(io.BytesIO(fast))))
    write_pngs(str(tmp_path), ["a.png", "b.png"], np.stack([img, 255 - img]))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), 255 - img[0])
