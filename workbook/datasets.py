"""Small data sets that ship with the workbook, so no notebook downloads anything.

``load_digits()`` returns the 1797 hand-written digits that scikit-learn bundles as
``sklearn.datasets.load_digits``: 8x8 images whose pixels count, from 0 to 16, the inked pixels of a
4x4 block of a 32x32 bitmap, with their labels 0-9. They are the test set of the UCI "Optical
Recognition of Handwritten Digits" data (E. Alpaydin and C. Kaynak, 1998; CC BY 4.0). The workbook
keeps its own copy (``data/digits.npz``, 45 kB) so that the notebooks need no scikit-learn;
tests/test_capstone.py checks that it equals scikit-learn's, pixel for pixel.

    >>> images, labels = load_digits()
    >>> images.shape, labels.shape
    ((1797, 8, 8), (1797,))
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["DIGITS_FILE", "load_digits"]

DIGITS_FILE = Path(__file__).resolve().parent / "data" / "digits.npz"


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """
    The hand-written digits: 1797 images of 8x8 pixels with their labels.

    Returns a tuple of:
    - images: float64 array of shape (1797, 8, 8), whole numbers from 0 (blank) to 16 (all inked), the
      values of scikit-learn's ``load_digits().images``
    - labels: int64 array of shape (1797,), the digit each image shows (0-9), scikit-learn's ``target``
    """
    with np.load(DIGITS_FILE, allow_pickle=False) as data:
        return data["images"].astype(np.float64), data["labels"].astype(np.int64)
