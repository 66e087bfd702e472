"""Three digit domains that fit on a laptop: MNIST (test set), USPS and scikit-learn's digits.

They differ in resolution (28, 16 and 8 pixels), stroke style and framing, which makes them
a small domain-shift benchmark. Each reader returns uint8 grey images (N, H, W) and int64
labels 0-9 in the files' own order; resizing to the model's input happens later, once.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from emoe_cli.data.common import require_file
from emoe_cli.data.images import image_features
from emoe_cli.errors import DataError

MNIST_DIR, USPS_FILE = Path("digits/MNIST"), Path("digits/USPS/usps.h5")
IDX_IMAGES, IDX_LABELS = 2051, 2049  # the IDX format's magic numbers


def _read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    """An IDX file (big-endian header: magic, then one size per dimension, then uint8s)."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    header = np.frombuffer(raw, dtype=">i4", count=1 + dims)
    if header[0] != magic:
        raise DataError(f"{path}: not an IDX file of this kind (magic {header[0]}, "
                        f"expected {magic})")
    shape = tuple(int(n) for n in header[1:])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 * (1 + dims))
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: {data.size} values, but the header says {shape}")
    return data.reshape(shape)


def read_mnist(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's 10,000 test images, 28x28, white digits on black."""
    folder = Path(root) / MNIST_DIR
    images = _read_idx(require_file(folder / "t10k-images-idx3-ubyte.gz", "MNIST"),
                       IDX_IMAGES, 3)
    labels = _read_idx(require_file(folder / "t10k-labels-idx1-ubyte.gz", "MNIST"),
                       IDX_LABELS, 1)
    return images, labels.astype(np.int64)


def read_usps(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """All 9,298 USPS images (its train and test parts together: the domain is the whole
    collection, and the leave-one-out protocol carves its own validation part), 16x16."""
    import h5py

    path = require_file(Path(root) / USPS_FILE, "USPS")
    images, labels = [], []
    with h5py.File(path, "r") as handle:
        for part in ("train", "test"):
            images.append(np.asarray(handle[part]["data"], dtype=np.float32))
            labels.append(np.asarray(handle[part]["target"], dtype=np.int64))
    pixels = np.rint(np.clip(np.concatenate(images), 0, 1) * 255).astype(np.uint8)
    return pixels.reshape(-1, 16, 16), np.concatenate(labels)


def read_sklearn(root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits (values 0-16), shipped with the package."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    return pixels, digits.target.astype(np.int64)


DIGIT_READERS = {"mnist": read_mnist, "usps": read_usps, "sklearn": read_sklearn}


def read_digit_arrays(name: str, root: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """One domain's images and labels; MNIST and USPS need `data.root`."""
    if name not in DIGIT_READERS:
        raise DataError(f"task.domains: unknown digits domain {name!r}; valid: "
                        f"{', '.join(DIGIT_READERS)}")
    if root is None and name != "sklearn":
        raise DataError(f"data.root is null, but the digits domain {name!r} is read from "
                        f"<data.root>/digits/ (e.g. data.root=../shared/data)")
    return DIGIT_READERS[name](root)


def digits_domain(name: str, root: Path | None) -> datasets.Dataset:
    """One domain as rows of (`image`, `label`), in the same form as an ImageFolder domain."""
    images, labels = read_digit_arrays(name, root)
    return datasets.Dataset.from_dict(
        {"image": [Image.fromarray(image) for image in images], "label": labels.tolist()},
        features=image_features())
