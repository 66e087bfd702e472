"""DomainBed's image pipeline (`task.pipeline: domainbed`), written with PIL alone.

DomainBed resizes every evaluation image straight to the model's square size (no crop) and
augments training images: a random resized crop of 70-100 % of the area, a horizontal flip,
colour jitter of 0.3 in brightness, contrast, saturation and hue, and 10 % greyscale
(`Vision/domainbed/datasets.py:191-206`). The draws come from torch's random generator, as
torchvision's transforms do, so each data-loader worker augments differently.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageEnhance

CROP_SCALE, CROP_RATIO = (0.7, 1.0), (3 / 4, 4 / 3)  # datasets.py:200 (ratio: torchvision's)
JITTER, GREY_PROBABILITY = 0.3, 0.1                   # datasets.py:202-203


def uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


def square(image: Image.Image, size: int) -> Image.Image:
    """Evaluation geometry: the whole image, resized to size × size (datasets.py:192)."""
    return image.convert("RGB").resize((size, size), Image.BILINEAR)


def crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """A random crop of 70-100 % of the area, aspect ratio in [3/4, 4/3] (log-uniform); the
    centred largest crop of an allowed ratio when ten draws do not fit (torchvision's rule)."""
    area = width * height
    for _ in range(10):
        target = area * uniform(*CROP_SCALE)
        ratio = math.exp(uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            left = int(torch.randint(0, width - w + 1, ()).item())
            top = int(torch.randint(0, height - h + 1, ()).item())
            return left, top, left + w, top + h
    ratio = width / height
    if ratio < CROP_RATIO[0]:
        w, h = width, round(width / CROP_RATIO[0])
    elif ratio > CROP_RATIO[1]:
        w, h = round(height * CROP_RATIO[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def shift_hue(image: Image.Image, shift: float) -> Image.Image:
    """Rotate the hue by `shift` of a full turn (in [-0.5, 0.5])."""
    h, s, v = image.convert("HSV").split()
    turned = (np.asarray(h, dtype=np.int16) + round(shift * 255)) % 256
    return Image.merge("HSV", (Image.fromarray(turned.astype(np.uint8), "L"), s, v)).convert(
        "RGB")


def jitter(image: Image.Image) -> Image.Image:
    """Brightness, contrast, saturation (factors in [0.7, 1.3]) and hue (± 0.3), the factors
    drawn first, then applied in a random order (as torchvision's ColorJitter)."""
    low, high = 1 - JITTER, 1 + JITTER
    factors = [uniform(low, high), uniform(low, high), uniform(low, high),
               uniform(-JITTER, JITTER)]
    enhancers = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
    for index in torch.randperm(len(factors)).tolist():
        image = (shift_hue(image, factors[index]) if index == 3
                 else enhancers[index](image).enhance(factors[index]))
    return image


def augment(image: Image.Image, size: int) -> Image.Image:
    """One training view of `image`, size × size RGB (datasets.py:198-206)."""
    image = image.convert("RGB")
    image = image.resize((size, size), Image.BILINEAR, box=crop_box(*image.size))
    if torch.rand(()).item() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    image = jitter(image)
    if torch.rand(()).item() < GREY_PROBABILITY:
        image = image.convert("L").convert("RGB")
    return image
