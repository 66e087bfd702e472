"""The data fingerprint follows the rows, not where they live or how the table is sliced."""

import shutil

import datasets

from emoe_cli.training.fingerprint import dataset_digest


def test_the_same_rows_hash_alike_however_they_were_selected():
    data = datasets.Dataset.from_dict({"input_ids": [[i, i + 1] for i in range(50)],
                                       "labels": [i % 2 for i in range(50)]})
    chosen = data.shuffle(seed=0).select(range(10, 30))
    rebuilt = datasets.Dataset.from_list(list(chosen), features=data.features)
    assert dataset_digest(chosen) == dataset_digest(rebuilt)
    assert dataset_digest(chosen) != dataset_digest(data.shuffle(seed=0).select(range(10, 31)))
    changed = rebuilt.map(lambda row, i: {"labels": 1 - row["labels"] if i == 3
                                          else row["labels"]}, with_indices=True)
    assert dataset_digest(changed) != dataset_digest(rebuilt)


def images(root):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    paths = [str(root / "cls" / f"{i}.png") for i in range(3)]
    return datasets.Dataset.from_dict({"image": paths, "label": [0, 1, 0]}, features=features)


def test_image_files_count_by_path_under_the_root_and_size(tmp_path):
    (tmp_path / "a" / "cls").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "a" / "cls" / f"{i}.png").write_bytes(b"x" * (i + 1))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    here = dataset_digest(images(tmp_path / "a"), str(tmp_path / "a"))
    assert dataset_digest(images(tmp_path / "b"), str(tmp_path / "b")) == here  # moved
    (tmp_path / "b" / "cls" / "1.png").write_bytes(b"a different picture")
    assert dataset_digest(images(tmp_path / "b"), str(tmp_path / "b")) != here
