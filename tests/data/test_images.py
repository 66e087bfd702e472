"""ImageFolder domains on generated PNGs, and the pixel encoder against the image processor."""

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from emoe_cli.data.images import read_image_folders
from emoe_cli.data.pixels import PixelEncoder, encode
from emoe_cli.errors import DataError


def write_image_folder(root, folder, domains, classes, per_class=2, size=(20, 12)):
    """`root/folder/<domain>/<class>/<i>.png`, each image a different solid colour."""
    rng = np.random.default_rng(0)
    for domain in domains:
        for name in classes:
            path = root / folder / domain / name
            path.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(path / f"{i}.png")
    return root


def processor(size=16, mean=(0.5, 0.5, 0.5)):
    return transformers.ViTImageProcessor(size={"height": size, "width": size},
                                          image_mean=list(mean), image_std=[0.25] * 3)


def test_domains_are_read_in_order_with_sorted_class_ids(tmp_path):
    write_image_folder(tmp_path, "VLCS", ["b_dom", "a_dom"], ["zebra", "cat", "dog"])
    (tmp_path / "VLCS" / "a_dom" / "cat" / "notes.txt").write_text("not an image")
    found = read_image_folders(tmp_path, "VLCS", ["b_dom", "a_dom"], num_labels=3)
    assert list(found) == ["b_dom", "a_dom"]
    rows = found["a_dom"]
    assert len(rows) == 6 and rows["label"] == [0, 0, 1, 1, 2, 2]  # cat, dog, zebra
    assert rows[0]["image"].size == (20, 12)


def test_missing_domain_folder_names_it_and_the_layout(tmp_path):
    write_image_folder(tmp_path, "PACS", ["photo"], ["dog"])
    with pytest.raises(DataError) as error:
        read_image_folders(tmp_path, "PACS", ["photo", "sketch"], num_labels=1)
    message = str(error.value)
    assert "missing domain folder" in message and str(tmp_path / "PACS" / "sketch") in message
    assert "<data.root>/PACS/<domain>/<class>/*.jpg|png" in message and "\n" not in message
    with pytest.raises(DataError, match="missing folder .*VLCS"):
        read_image_folders(tmp_path, "VLCS", ["C"], num_labels=1)
    with pytest.raises(DataError, match="data.root is null"):
        read_image_folders(None, "VLCS", ["C"], num_labels=1)


def test_class_count_must_match_the_task(tmp_path):
    write_image_folder(tmp_path, "PACS", ["photo"], ["dog", "cat"])
    with pytest.raises(DataError, match="task.num_labels=7, but .* has 2 class folders"):
        read_image_folders(tmp_path, "PACS", ["photo"], num_labels=7)


@pytest.mark.parametrize("when", ["once", "per_batch"])
def test_encoded_pixels_equal_the_processors_output(tmp_path, when):
    write_image_folder(tmp_path, "X", ["d"], ["a", "b"])
    rows = read_image_folders(tmp_path, "X", ["d"], num_labels=2)["d"]
    encoder = PixelEncoder.for_model(processor(), channels=3)
    batch = encoder.collate([row for row in encode(rows, encoder, when)])
    expected = processor()([r["image"] for r in rows], return_tensors="pt")["pixel_values"]
    assert batch["pixel_values"].shape == (4, 3, 16, 16)
    assert torch.allclose(batch["pixel_values"], expected, atol=1 / 255 / 0.25 + 1e-6)
    assert batch["labels"].tolist() == [0, 0, 1, 1]


def test_grey_model_gets_one_channel_and_one_mean():
    encoder = PixelEncoder.for_model(processor(mean=(0.2, 0.5, 0.8)), channels=1)
    pixels = encoder.pixels([Image.new("RGB", (8, 8), (255, 0, 0))])
    assert pixels.shape == (1, 1, 16, 16) and encoder.mean.flatten().tolist() == [
        pytest.approx(0.5)]
    assert int(pixels[0, 0, 0, 0]) == round(255 * 0.299)  # PIL's luminance of pure red
