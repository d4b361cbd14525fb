"""Prepared datasets: train/validation/test uint8 arrays on disk, how they are split, and back.

`layouts` reads a source's raw files into labelled pools; `assign_splits` turns the pools into
the splits; `RowFile` writes an images file row by row, so memory does not grow with the
dataset (and the output's pages never need to be resident in this process); `load` maps the
files back. Training, evaluation and export read only this module, not the raw formats.
"""
import io
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from .errors import ImagerecError
from .files import read_json

SPLITS = ("train", "val", "test")
CHUNK_BYTES = 16 * 2**20  # rows moved or summed at a time


@dataclass
class Split:
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int64 index into classes


@dataclass
class Prepared:
    classes: list[str]
    splits: dict[str, Split]


def assign_splits(labels: dict[str, np.ndarray], val_fraction: float, test_fraction: float,
                  max_per_class: int, seed: int) -> dict[str, tuple[str, np.ndarray]]:
    """Seeded, stratified split of the pools (train, and maybe val, test) into train/val/test indices.

    The source's own test pool is the test split; without one, its val pool (the only
    held-out folder, as in cats_and_dogs_filtered's validation/) is; without either, a
    `test_fraction` of the training pool is carved off first. Validation is the val pool when
    the source has both held-out pools, else carved from the training pool, so the test split
    never takes part in model selection.
    """
    def carve(index, fraction, what):
        try:
            return train_test_split(index, test_size=fraction, stratify=labels["train"][index], random_state=seed)
        except ValueError as err:
            raise ImagerecError(f"cannot carve the {what} split: {err}") from None

    train = np.arange(len(labels["train"]))
    held_out = [pool for pool in ("test", "val") if pool in labels]
    if held_out:
        test = (held_out[0], np.arange(len(labels[held_out[0]])))
    else:
        train, test_index = carve(train, test_fraction, "test")
        test = ("train", test_index)
    if len(held_out) == 2:
        val = ("val", np.arange(len(labels["val"])))
    else:
        train, val_index = carve(train, val_fraction, "validation")
        val = ("train", val_index)
    selection = {"train": ("train", train), "val": val, "test": test}
    if max_per_class:
        for split, (pool, index) in selection.items():
            keep = np.concatenate([index[labels[pool][index] == c][:max_per_class] for c in np.unique(labels[pool][index])])
            selection[split] = (pool, keep)
    return {split: (pool, np.sort(index)) for split, (pool, index) in selection.items()}


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The header np.save writes before a C-ordered uint8 array of `shape`."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape})
    return buffer.getvalue()


class RowFile:
    """A uint8 `.npy` file whose rows are written in any order, then the kept ones compacted.

    Rows go to their place with plain file writes (os.pwrite), never through a memory map, so
    the file's pages stay in the page cache and out of this process's resident set.
    """

    def __init__(self, path: Path, rows: int, row_shape: tuple[int, ...]):
        self.path, self.rows, self.row_shape = path, rows, row_shape
        self.row_bytes = int(np.prod(row_shape))
        self.offset = len(_npy_header((rows, *row_shape)))
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)

    def write(self, row: int, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
        assert len(data) == self.row_bytes
        self._write(data, self.offset + row * self.row_bytes)

    def finish(self, kept: np.ndarray) -> None:
        """Keep the rows where `kept` is True, in order: exactly what np.save of them writes."""
        keep = np.flatnonzero(kept)
        header = _npy_header((len(keep), *self.row_shape))
        # Rows only ever move towards the start (the new header is never longer, no row moves
        # past its own place), and a chunk is read whole before it is written: nothing unread
        # is overwritten.
        if len(header) != self.offset or len(keep) != self.rows:
            chunk = max(1, CHUNK_BYTES // self.row_bytes)
            buffer = memoryview(bytearray(min(chunk, len(keep)) * self.row_bytes))
            dest = len(header)
            for start in range(0, len(keep), chunk):
                rows, filled = keep[start:start + chunk], 0
                for run in np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1):  # consecutive rows
                    size = len(run) * self.row_bytes
                    self._read_into(buffer[filled:filled + size], self.offset + int(run[0]) * self.row_bytes)
                    filled += size
                self._write(buffer[:filled], dest)
                dest += filled
        self._write(header, 0)
        os.ftruncate(self.fd, len(header) + len(keep) * self.row_bytes)
        self.close()

    def _write(self, data, offset: int) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written

    def _read_into(self, view: memoryview, offset: int) -> None:
        while view:
            read = os.preadv(self.fd, [view], offset)
            if read == 0:
                raise OSError(f"{self.path}: ends before row data written to it")
            view, offset = view[read:], offset + read

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def load(prepared_dir: Path, splits=SPLITS) -> Prepared:
    prepared_dir = Path(prepared_dir)
    try:
        classes = read_json(prepared_dir / "classes.json")
        loaded = {
            split: Split(np.load(prepared_dir / f"{split}_images.npy", mmap_mode="r", allow_pickle=False),
                         np.load(prepared_dir / f"{split}_labels.npy", allow_pickle=False))
            for split in splits
        }
    except FileNotFoundError as err:
        raise ImagerecError(f"{prepared_dir}: incomplete prepared dataset ({Path(err.filename).name} missing); run preprocess") from None
    return Prepared(classes, loaded)


def seeded_sample(total: int, count: int, seed: int) -> np.ndarray:
    """`count` distinct indices below `total` (all of them if fewer), sorted, fixed by `seed`."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=min(count, total), replace=False))


def row_chunks(images: np.ndarray, max_bytes: int | None = None):
    """Consecutive in-memory chunks of an (N, ...) array, at most `max_bytes` (CHUNK_BYTES) each.

    A memory-mapped .npy (what `load` gives) is read with plain file reads instead of through
    its mapping, so a pass over it leaves no file pages in this process's resident set.
    """
    rows = max(1, (max_bytes or CHUNK_BYTES) // max(1, images[:1].nbytes))
    if isinstance(images, np.memmap) and isinstance(images.base, mmap.mmap) and images.flags.c_contiguous:
        with open(images.filename, "rb") as f:
            f.seek(images.offset)
            for start in range(0, len(images), rows):
                chunk = np.empty((min(rows, len(images) - start), *images.shape[1:]), images.dtype)
                if f.readinto(memoryview(chunk).cast("B")) != chunk.nbytes:
                    raise ImagerecError(f"{images.filename}: shorter than its header says")
                yield chunk
    else:
        for start in range(0, len(images), rows):
            yield np.asarray(images[start:start + rows])


def statistics(prepared: Prepared, bad: list[dict], ignored: list[str]) -> dict:
    train = prepared.splits["train"].images
    channels = train.shape[-1]
    total = np.zeros(channels, np.int64)  # exact; the same figures as a float64 mean of the whole array
    for chunk in row_chunks(train):
        total += chunk.reshape(-1, channels).sum(axis=0, dtype=np.int64)
    pixels = train.size // channels
    return {
        "classes": prepared.classes,
        "image_shape": list(train.shape[1:]),
        "counts": {
            split: {name: int((data.labels == i).sum()) for i, name in enumerate(prepared.classes)}
            for split, data in prepared.splits.items()
        },
        "totals": {split: int(len(data.labels)) for split, data in prepared.splits.items()},
        "train_mean_pixel": [round(int(v) / pixels, 3) if pixels else float("nan") for v in total],
        "unreadable_images": len(bad),
        "ignored_files": len(ignored),
    }
