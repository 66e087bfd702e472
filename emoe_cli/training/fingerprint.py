"""The fingerprint of the data a run trains and selects on, kept with its checkpoint.

A run's identity leaves out `data.root` (moving the data must not make a run look new), so
the same command over other data finds the old checkpoint. What the checkpoint must match is
the rows themselves: each split is hashed as the loop reads it (after caps, fractions and
tokenisation), so only what the task actually uses is read, whatever its source (local
files, the hub, images), and a moved but unchanged copy still resumes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import datasets
import pyarrow as pa
from omegaconf import DictConfig

BATCH_ROWS = 8192  # fixed, so the hash does not depend on how the table happens to be chunked


def dataset_digest(data: datasets.Dataset, root: str | None = None) -> str:
    """SHA-256 of the rows (all columns, in order) as Arrow IPC.

    Each batch's columns are copied into fresh arrays first: a slice of a larger table
    serialises differently from the same rows on their own, and the hash must not care.
    Images read from files when batched (`task.preprocess=per_batch`) count by their path
    under `root` and their size, not by where `root` is.
    """
    digest = hashlib.sha256()
    rows = data.with_format("arrow")  # raw rows: no transform, selections applied
    images = [name for name, kind in data.features.items() if isinstance(kind, datasets.Image)]
    for start in range(0, len(data), BATCH_ROWS):
        sliced = rows[start:start + BATCH_ROWS]
        columns = [image_files(column, root) if name in images else pa.concat_arrays(column.chunks)
                   for name, column in zip(sliced.column_names, sliced.columns)]
        batch = pa.table(columns, names=sliced.column_names)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_table(batch)
        digest.update(sink.getvalue())
    return digest.hexdigest()


def image_files(column: pa.ChunkedArray, root: str | None) -> pa.Array:
    """An image column as `relative/path:bytes` per row (embedded bytes are hashed as is)."""
    described = []
    for image in column.to_pylist():
        path = (image or {}).get("path")
        if image is None or image.get("bytes") is not None or not path:
            described.append(hashlib.sha256(repr(image).encode()).hexdigest())
            continue
        where = os.path.relpath(path, root) if root else path
        size = os.path.getsize(path) if os.path.isfile(path) else -1
        described.append(f"{where}:{size}")
    return pa.array(described, pa.string())


def split_source(cfg: DictConfig, split: str) -> str:
    """Where a split comes from, as the key a user would change: a task file or data.root."""
    files = cfg.task.get("files") or {}
    if files.get(split) is not None:
        return f"task.files.{split}={files[split]}"
    if cfg.data.root is not None:
        return f"data.root={cfg.data.root}"
    return f"task={cfg.task.name} (from the hub)"


def data_fingerprint(cfg: DictConfig, data) -> dict:
    """{role: {source, rows, sha256}} for the training split and the one that picks the epoch."""
    root = None if cfg.data.root is None else str(Path(cfg.data.root).expanduser())
    train_split = cfg.task.get("train_split", "train")  # image tasks split domains instead
    selection, selection_split = ((data.validation, cfg.task.get("eval_split", "validation"))
                                  if data.selection is None else (data.selection, train_split))
    return {role: {"source": split_source(cfg, split), "rows": len(rows),
                   "sha256": dataset_digest(rows, root)}
            for role, rows, split in (("training", data.train, train_split),
                                      ("selection", selection, selection_split))}
