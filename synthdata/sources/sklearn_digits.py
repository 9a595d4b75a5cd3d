"""The embedded default: scikit-learn's copy of the UCI optical digits (1,797 images, 8x8, 10 classes)."""

import numpy as np

from synthdata.sources.base import LabeledImages, register


@register("sklearn-digits")
def load(params) -> LabeledImages:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 grey levels -> 0..255
    return LabeledImages(
        images=images,
        labels=digits.target.astype(np.int64),
        class_names=[str(i) for i in range(10)],
        origins=[f"sklearn-digits:{i}" for i in range(len(images))],
        name="sklearn-digits",
        license="CC BY 4.0 (UCI Optical Recognition of Handwritten Digits, as shipped by scikit-learn)",
        description="scikit-learn's load_digits: 1,797 8x8 handwritten digits with 17 grey levels, 10 classes",
    )
