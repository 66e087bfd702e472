"""DomainBed's image pipeline: the augmentation's geometry and randomness, the plain resize."""

import numpy as np
import pytest
import torch
from PIL import Image

from emoe_cli.data.augment import augment, crop_box, shift_hue, square


def halves(width=40, height=30):
    """Left half red, right half blue."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2, 0] = 255
    pixels[:, width // 2:, 2] = 255
    return Image.fromarray(pixels)


def test_square_resizes_the_whole_image_without_cropping():
    out = np.asarray(square(halves(), 16))
    assert out.shape == (16, 16, 3)
    assert out[:, 0, 0].min() > 200 and out[:, -1, 2].min() > 200  # both halves survive


def test_crops_cover_70_to_100_percent_within_the_image():
    torch.manual_seed(0)
    for _ in range(200):
        left, top, right, bottom = crop_box(40, 30)
        assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
        area = (right - left) * (bottom - top) / (40 * 30)
        assert 0.6 < area <= 1.0  # 0.7-1.0 before rounding to whole pixels


def test_augment_gives_square_views_that_differ_and_flip_half_the_time():
    torch.manual_seed(0)
    views = [np.asarray(augment(halves(), 16)).astype(int) for _ in range(200)]
    assert all(view.shape == (16, 16, 3) for view in views)
    assert len({view.tobytes() for view in views}) > 150
    # red on the left unless flipped (hue shifts and greyscale blur the colours, so compare
    # the two sides' mean brightness pattern instead): flips happen, but not always
    left_redder = [view[:, :4].mean(axis=(0, 1))[0] > view[:, -4:].mean(axis=(0, 1))[0]
                   for view in views]
    assert 0.3 < np.mean(left_redder) < 0.85


def test_same_seed_same_views():
    torch.manual_seed(3)
    first = np.asarray(augment(halves(), 16))
    torch.manual_seed(3)
    assert np.array_equal(first, np.asarray(augment(halves(), 16)))


@pytest.mark.parametrize("turn", [0.0, 1.0])
def test_a_full_turn_of_hue_leaves_the_colours(turn):
    image = halves()
    out = np.asarray(shift_hue(image, turn)).astype(int)
    assert np.abs(out - np.asarray(image).astype(int)).max() <= 8  # HSV round trip
