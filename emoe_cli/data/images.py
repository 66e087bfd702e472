"""ImageFolder-layout domains, as DomainBed reads PACS, VLCS, OfficeHome, TerraIncognita and
DomainNet: `<data.root>/<folder>/<domain>/<class>/<image>`.

Only paths are listed here; images are decoded when a batch needs them (these data sets do
not fit in memory at 224 pixels). Class ids follow the sorted class-folder names, as
torchvision's ImageFolder numbers them, over all domains of the data set together.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from emoe_cli.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
LAYOUT = "<data.root>/{folder}/<domain>/<class>/*.jpg|png"


def image_features() -> datasets.Features:
    return datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})


def domain_dirs(root: Path | None, folder: str, domains: list[str]) -> list[Path]:
    """Each domain's folder, or a DataError naming the first one missing and the layout."""
    layout = LAYOUT.format(folder=folder)
    if root is None:
        raise DataError(f"data.root is null, but {folder} is read from local folders laid out "
                        f"as {layout}; set data.root to the folder that holds {folder}/")
    base = Path(root).expanduser() / folder
    if not base.is_dir():
        raise DataError(f"data.root: missing folder {base}; expected {layout} with domains "
                        f"{', '.join(domains)}")
    dirs = [base / domain for domain in domains]
    for path in dirs:
        if not path.is_dir():
            found = sorted(p.name for p in base.iterdir() if p.is_dir())
            raise DataError(f"data.root: missing domain folder {path}; expected {layout} with "
                            f"domains {', '.join(domains)}; found: {', '.join(found) or 'none'}")
    return dirs


def class_names(dirs: list[Path]) -> list[str]:
    """The sorted class-folder names found in any of the domains."""
    return sorted({p.name for d in dirs for p in d.iterdir() if p.is_dir()})


def image_files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                  and p.is_file())


def read_image_folders(root: Path | None, folder: str, domains: list[str],
                       num_labels: int) -> dict[str, datasets.Dataset]:
    """Every domain as rows of (`image` path, `label`), with one class list for all."""
    dirs = domain_dirs(root, folder, domains)
    classes = class_names(dirs)
    if len(classes) != num_labels:
        raise DataError(f"task.num_labels={num_labels}, but {Path(root) / folder} has "
                        f"{len(classes)} class folders over its domains "
                        f"({', '.join(classes[:8])}{', ...' if len(classes) > 8 else ''})")
    result = {}
    for domain, path in zip(domains, dirs):
        paths, labels = [], []
        for label, name in enumerate(classes):
            files = image_files(path / name) if (path / name).is_dir() else []
            paths += [str(f) for f in files]
            labels += [label] * len(files)
        if not paths:
            raise DataError(f"data.root: no images in {path}; expected "
                            f"{LAYOUT.format(folder=folder)}")
        result[domain] = datasets.Dataset.from_dict({"image": paths, "label": labels},
                                                    features=image_features())
    return result
