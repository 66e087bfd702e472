"""Images to model inputs, split in two so the expensive half runs once.

`pixels` uses the model's own image processor for the geometry (resize, crop) and keeps
uint8 values: small enough to hold a whole digits task in memory, so it runs once per run.
`collate` does the cheap half per batch: rescale and normalise with the processor's own
constants. Together they give what `processor(images)` gives, in the channel count the
model expects (grey images are repeated to RGB, and RGB is turned grey for a 1-channel
model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from PIL import Image

from emoe_cli.data.augment import augment, square
from emoe_cli.errors import UserError


def _per_channel(values, channels: int, name: str) -> list[float]:
    values = [float(v) for v in (values if isinstance(values, Sequence) else [values])]
    if len(values) == channels:
        return values
    if len(values) == 1 or channels == 1:
        return [float(np.mean(values))] * channels
    raise UserError(f"model.name_or_path: the image processor's {name} has {len(values)} "
                    f"values, but the model takes {channels} channels")


@dataclass
class PixelEncoder:
    """The model's image processor, split into a once-per-run and a per-batch part."""

    processor: object
    channels: int
    mean: torch.Tensor  # (C, 1, 1)
    std: torch.Tensor
    scale: float

    @classmethod
    def for_model(cls, processor, channels: int) -> PixelEncoder:
        normalize = getattr(processor, "do_normalize", True)
        mean = _per_channel(processor.image_mean if normalize else 0.0, channels, "image_mean")
        std = _per_channel(processor.image_std if normalize else 1.0, channels, "image_std")
        scale = processor.rescale_factor if getattr(processor, "do_rescale", True) else 1.0
        shape = (channels, 1, 1)
        return cls(processor, channels, torch.tensor(mean).view(shape),
                   torch.tensor(std).view(shape), float(scale))

    def pixels(self, images: list[Image.Image]) -> np.ndarray:
        """uint8 (B, C, H, W): resized and cropped as the processor does, not normalised."""
        rgb = [image.convert("L").convert("RGB") if self.channels == 1
               else image.convert("RGB") for image in images]
        out = self.processor(rgb, do_rescale=False, do_normalize=False,
                             return_tensors="np")["pixel_values"]
        out = np.clip(np.rint(np.asarray(out, dtype=np.float32)), 0, 255).astype(np.uint8)
        return out[:, :1] if self.channels == 1 else out

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.float() * self.scale - self.mean) / self.std

    def collate(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        pixels = torch.stack([torch.as_tensor(row["pixels"]) for row in rows])
        labels = torch.tensor([int(row["label"]) for row in rows], dtype=torch.long)
        return {"pixel_values": self.normalize(pixels), "labels": labels}

    def arrays(self, images: list[Image.Image]) -> np.ndarray:
        """uint8 (B, C, H, W) of images already at the model's size (no processor geometry)."""
        mode = "L" if self.channels == 1 else "RGB"
        out = np.stack([np.asarray(image.convert(mode)) for image in images])
        return out[:, None] if self.channels == 1 else out.transpose(0, 3, 1, 2)

    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W) of what `pixels` makes, found by running it once."""
        return self.pixels([Image.new("L", (8, 8))]).shape[1:]


def encode_once(data: datasets.Dataset, encoder: PixelEncoder,
                batch_size: int = 512) -> datasets.Dataset:
    """Decode and resize every image now; the rows keep uint8 `pixels` and `label`."""
    shape = encoder.image_shape()
    features = datasets.Features({"pixels": datasets.Array3D(shape, "uint8"),
                                  "label": datasets.Value("int64")})
    encoded = data.map(lambda batch: {"pixels": encoder.pixels(batch["image"])}, batched=True,
                       batch_size=batch_size, remove_columns=["image"], features=features,
                       desc="resizing images", load_from_cache_file=False)
    return encoded.with_format("numpy")


def encode_per_batch(data: datasets.Dataset, encoder: PixelEncoder) -> datasets.Dataset:
    """Decode and resize when rows are read (for data sets too large to hold decoded)."""

    def transform(batch):
        return {"pixels": list(encoder.pixels(batch["image"])), "label": batch["label"]}

    return data.with_transform(transform)


def encode_domainbed(data: datasets.Dataset, encoder: PixelEncoder, size: int,
                     train: bool) -> datasets.Dataset:
    """`task.pipeline: domainbed`: training rows augmented afresh each time they are read,
    the others resized whole to size × size (emoe_cli/data/augment.py)."""

    def transform(batch):
        views = [augment(image, size) if train else square(image, size)
                 for image in batch["image"]]
        return {"pixels": list(encoder.arrays(views)), "label": batch["label"]}

    return data.with_transform(transform)


ENCODINGS = {"once": encode_once, "per_batch": encode_per_batch}


def encode(data: datasets.Dataset, encoder: PixelEncoder, when: str) -> datasets.Dataset:
    """`task.preprocess`: `once` (decoded and resized up front) or `per_batch`."""
    if when not in ENCODINGS:
        raise UserError(f"task.preprocess={when!r} is invalid; valid: {', '.join(ENCODINGS)}")
    return ENCODINGS[when](data, encoder)
