"""The three digits readers on the real files: shapes, value and label ranges."""

import numpy as np
import pytest

from emoe_cli.data.digits import digits_domain, read_digit_arrays
from emoe_cli.errors import DataError


@pytest.mark.parametrize("name, count, side", [("mnist", 10000, 28), ("usps", 9298, 16),
                                               ("sklearn", 1797, 8)])
def test_reader_shapes_and_ranges(shared_data, name, count, side):
    images, labels = read_digit_arrays(name, shared_data)
    assert images.shape == (count, side, side) and images.dtype == np.uint8
    assert labels.shape == (count,) and set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and images.min() == 0  # each scaled to the full 8-bit range
    assert images.mean() < 128  # light digits on a dark background, as MNIST


def test_first_mnist_label_is_seven(shared_data):
    # The MNIST test set famously starts with a 7, a 2 and a 1.
    assert read_digit_arrays("mnist", shared_data)[1][:3].tolist() == [7, 2, 1]


def test_domain_rows_are_images_with_labels():
    rows = digits_domain("sklearn", None)
    assert len(rows) == 1797 and rows[0]["image"].size == (8, 8)
    assert rows[0]["image"].mode == "L" and rows[0]["label"] == 0


def test_missing_files_name_the_key_and_the_file(tmp_path):
    with pytest.raises(DataError, match="data.root is null"):
        read_digit_arrays("usps", None)
    with pytest.raises(DataError, match=r"missing MNIST file .*t10k-images-idx3-ubyte.gz"):
        read_digit_arrays("mnist", tmp_path)
    with pytest.raises(DataError, match="unknown digits domain 'svhn'"):
        read_digit_arrays("svhn", tmp_path)
