"""From a source's raw files to train/validation/test uint8 arrays on disk, and back.

Three raw formats are read, told apart by content:
- `npz`: arrays x_train, y_train, x_test, y_test (Keras' mnist.npz); loaded without pickle.
- `cifar-python`: the official CIFAR-10 tarball of pickled batches, unpickled only after its
  sha256 matches the one fetch verified.
- `image-folder`: a zip or tar of image files, labelled by folder (`[top/]split/class/x.jpg`,
  `class/x.jpg`) or, directly under a split folder, by file-name prefix (`train/cat.12.jpg`).
  `test/`, `validation/` or `val/` folders form the held-out test split. An archive holding
  no images but a `train.zip` (Kaggle's competition bundle) is read through that inner archive.

`prepare` writes straight into the output directory. Image-folder archives are streamed: each
decoded image goes to its row of `{split}_images.npy` with a plain file write, unreadable
rows are squeezed out in place at the end, so memory does not grow with the dataset (and the
output's pages never need to be resident in this process).
"""
import io
import mmap
import os
import pickle
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from . import archives, images
from .errors import ImagerecError
from .files import read_json, write_json
from .sources import sha256_of

SPLITS = ("train", "val", "test")
SOURCE_RECORD = "source.json"
SPLIT_FOLDERS = {"train": "train", "training": "train", "test": "test", "testing": "test",
                 "validation": "test", "val": "test", "valid": "test"}
MNIST_CLASSES = [str(digit) for digit in range(10)]
NESTED_TRAIN_ARCHIVES = {"train.zip", "train.tar", "train.tar.gz", "train.tgz"}
CHUNK_BYTES = 16 * 2**20  # rows moved or summed at a time


@dataclass
class Split:
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int64 index into classes


@dataclass
class Prepared:
    classes: list[str]
    splits: dict[str, Split]


def detect_format(path: Path) -> str:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if names and all(name.endswith(".npy") for name in names):
            return "npz"
        return "image-folder"
    kind = archives.archive_kind(path)  # raises on anything that is neither zip nor tar
    assert kind == "tar"
    with tarfile.open(path) as tf:
        first = tf.next()
    if first is not None and first.name.split("/")[0] == "cifar-10-batches-py":
        return "cifar-python"
    return "image-folder"


class _ArraySource:
    """Images already decoded into arrays (npz, CIFAR pickles)."""

    def __init__(self, classes, pools):
        self.classes = classes
        self._pools = pools  # pool -> (images, labels)
        self.labels = {pool: labels for pool, (_, labels) in pools.items()}
        self.ignored = []

    def materialise(self, selection, size, color_mode, out_dir: Path):
        """Write `{split}_images.npy` (small enough to build in memory); return the labels."""
        labels = {}
        for split, (pool, index) in selection.items():
            pool_images, pool_labels = self._pools[pool]
            np.save(out_dir / f"{split}_images.npy", images.conform(pool_images[index], size, color_mode), allow_pickle=False)
            labels[split] = pool_labels[index].astype(np.int64)
        return labels, []


def _read_npz(path: Path) -> _ArraySource:
    try:
        with np.load(path, allow_pickle=False) as data:
            pools = {pool: (data[f"x_{pool}"], data[f"y_{pool}"]) for pool in ("train", "test")}
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as err:
        raise ImagerecError(f"{path.name}: not an npz with x_train/y_train/x_test/y_test ({err})") from None
    return _ArraySource(MNIST_CLASSES, pools)


def _read_cifar_python(path: Path, sha256: str) -> _ArraySource:
    if sha256_of(path) != sha256:
        raise ImagerecError(f"{path.name}: sha256 differs from the one fetch verified; refusing to unpickle it")
    wanted = {f"data_batch_{i}" for i in range(1, 6)} | {"test_batch", "batches.meta"}
    batches = {}
    for name, _, open_member in archives.iter_members(path):
        if PurePosixPath(name).name in wanted:  # the tarball also holds a readme.html
            # Trusted: the file's sha256 matches the published checksum of the official tarball.
            batches[PurePosixPath(name).name] = pickle.loads(archives.read_member(open_member, 2**28), encoding="bytes")
    if wanted - set(batches):
        raise ImagerecError(f"{path.name}: missing CIFAR-10 batches {sorted(wanted - set(batches))}")

    def arrays(names):
        x = np.concatenate([batches[n][b"data"] for n in names]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.concatenate([batches[n][b"labels"] for n in names])
        return np.ascontiguousarray(x), np.asarray(y)

    classes = [name.decode() for name in batches["batches.meta"][b"label_names"]]
    pools = {"train": arrays([f"data_batch_{i}" for i in range(1, 6)]), "test": arrays(["test_batch"])}
    return _ArraySource(classes, pools)


def _label_member(name: str) -> tuple[str, str] | None:
    """(pool, class) of an image member, or None for a file that is not an image."""
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).suffix.lower() not in images.IMAGE_SUFFIXES or parts[-1].startswith("."):
        return None
    folders = parts[:-1]
    split_at = next((i for i, folder in enumerate(folders) if folder.lower() in SPLIT_FOLDERS), None)
    pool = SPLIT_FOLDERS[folders[split_at].lower()] if split_at is not None else "train"
    if folders and (split_at is None or split_at < len(folders) - 1):
        label = folders[-1]
    else:
        label = parts[-1].split(".")[0]  # Kaggle style: train/cat.12.jpg
    return pool, label


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The header np.save writes before a C-ordered uint8 array of `shape`."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape})
    return buffer.getvalue()


class _RowFile:
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


def _scan(path: Path) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    """The labelled image members of an archive, per pool, and the other members' names."""
    members, ignored = {"train": [], "test": []}, []
    for name, _, _ in archives.iter_members(path):
        labelled = _label_member(name)
        if labelled is None:
            ignored.append(name)
        else:
            members[labelled[0]].append((name, labelled[1]))
    return members, ignored


class _FolderSource:
    """An archive of image files labelled by folder or file name; decoded lazily."""

    def __init__(self, path: Path, scratch: Path | None = None):
        members, ignored = _scan(path)
        nested = [name for name in ignored if PurePosixPath(name).name.lower() in NESTED_TRAIN_ARCHIVES]
        if not members["train"] and len(nested) == 1 and scratch is not None:
            # Kaggle's competition bundle: train.zip (labelled), test1.zip (unlabelled), a csv.
            inner = scratch / PurePosixPath(nested[0]).name
            archives.extract_member(path, nested[0], inner)
            members, inner_ignored = _scan(inner)
            ignored = [name for name in ignored if name != nested[0]] + inner_ignored
            path = inner
        self.path, self.ignored = path, ignored
        if not members["train"]:
            raise ImagerecError(f"{path.name}: no labelled training images found")
        filled = {str(PurePosixPath(name).parent) for pool in members.values() for name, _ in pool}
        for folder in archives.directory_names(path):
            parts = PurePosixPath(folder).parts
            is_class_folder = len(parts) >= 2 and parts[-2].lower() in SPLIT_FOLDERS
            if is_class_folder and folder not in filled:
                raise ImagerecError(f"{path.name}: class folder {folder!r} holds no images")
        self.classes = sorted({label for pool in members.values() for _, label in pool})
        if len(self.classes) < 2:
            raise ImagerecError(f"{path.name}: found only one class ({self.classes[0]!r}); need at least two")
        missing = set(self.classes) - {label for _, label in members["train"]}
        if missing:
            raise ImagerecError(f"{path.name}: classes {sorted(missing)} have no training images")
        index = {label: i for i, label in enumerate(self.classes)}
        self._names = {pool: [name for name, _ in entries] for pool, entries in members.items() if entries}
        self.labels = {pool: np.array([index[label] for _, label in entries]) for pool, entries in members.items() if entries}

    def materialise(self, selection, size, color_mode, out_dir: Path):
        """Decode the selected members into `{split}_images.npy`, one row at a time.

        Returns the labels of the images kept and the list of unreadable ones (skipped).
        """
        wanted = {}  # member name -> (split, row)
        for split, (pool, index) in selection.items():
            for row, i in enumerate(index):
                wanted[self._names[pool][i]] = (split, row)
        channels = 1 if color_mode == "grayscale" else 3
        kept = {split: np.zeros(len(index), bool) for split, (_, index) in selection.items()}
        files = {}
        try:
            for split, (_, index) in selection.items():
                files[split] = _RowFile(out_dir / f"{split}_images.npy", len(index), (size, size, channels))
            bad = []
            with tqdm(total=len(wanted), desc=f"decoding {self.path.name}", unit="img") as bar:
                for name, _, open_member in archives.iter_members(self.path):
                    if name not in wanted:
                        continue
                    split, row = wanted[name]
                    try:
                        image = images.decode(archives.read_member(open_member, images.MAX_IMAGE_BYTES), size, color_mode)
                    except (images.BadImage, archives.ArchiveError) as err:
                        bad.append({"file": name, "split": split, "reason": str(err)})
                    else:
                        files[split].write(row, image)
                        kept[split][row] = True
                    bar.update()
            for split, rows in files.items():
                rows.finish(kept[split])
        finally:
            for rows in files.values():
                rows.close()
        labels = {split: self.labels[pool][index][kept[split]].astype(np.int64) for split, (pool, index) in selection.items()}
        return labels, bad


def read_raw(raw_dir: Path, scratch: Path | None = None):
    """The source in `raw_dir`; `scratch`, a directory for an inner archive that must be unpacked."""
    record = read_json(raw_dir / SOURCE_RECORD)
    path = raw_dir / record["file"]
    kind = detect_format(path)
    if kind == "npz":
        return _read_npz(path)
    if kind == "cifar-python":
        return _read_cifar_python(path, record["sha256"])
    return _FolderSource(path, scratch)


def assign_splits(labels: dict[str, np.ndarray], val_fraction: float, test_fraction: float,
                  max_per_class: int, seed: int) -> dict[str, tuple[str, np.ndarray]]:
    """Seeded, stratified split of the pools into train/val/test indices.

    A pool named "test" (the source's own held-out split) is the test split; without one, a
    `test_fraction` of the training pool is carved off first. Validation always comes from the
    training pool, so the test split never takes part in model selection.
    """
    def carve(index, fraction, what):
        try:
            return train_test_split(index, test_size=fraction, stratify=labels["train"][index], random_state=seed)
        except ValueError as err:
            raise ImagerecError(f"cannot carve the {what} split: {err}") from None

    train = np.arange(len(labels["train"]))
    if "test" in labels:
        test = ("test", np.arange(len(labels["test"])))
    else:
        train, test_index = carve(train, test_fraction, "test")
        test = ("train", test_index)
    train, val = carve(train, val_fraction, "validation")
    selection = {"train": ("train", train), "val": ("train", val), "test": test}
    if max_per_class:
        for split, (pool, index) in selection.items():
            keep = np.concatenate([index[labels[pool][index] == c][:max_per_class] for c in np.unique(labels[pool][index])])
            selection[split] = (pool, keep)
    return {split: (pool, np.sort(index)) for split, (pool, index) in selection.items()}


def prepare(raw_dir: Path, out_dir: Path, size: int, color_mode: str, val_fraction: float, test_fraction: float,
            max_per_class: int, seed: int) -> tuple[Prepared, list[dict], list[str]]:
    """Read, split and decode a raw dataset into `out_dir` (an existing, empty directory).

    Writes `{split}_images.npy`, `{split}_labels.npy` and classes.json, and returns the dataset
    loaded back (images memory-mapped), the unreadable images skipped and the ignored files.
    On an error `out_dir` may hold partial files: write into a temporary directory (atomic_dir).
    """
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=out_dir) as scratch:
        source = read_raw(raw_dir, Path(scratch))
        selection = assign_splits(source.labels, val_fraction, test_fraction, max_per_class, seed)
        labels, bad = source.materialise(selection, size, color_mode, out_dir)
    for split in SPLITS:
        absent = [name for i, name in enumerate(source.classes) if not (labels[split] == i).any()]
        if absent:
            raise ImagerecError(f"the {split} split has no images of class {', '.join(absent)} "
                                f"({len(bad)} unreadable images skipped)")
    for split, split_labels in labels.items():
        np.save(out_dir / f"{split}_labels.npy", split_labels, allow_pickle=False)
    write_json(out_dir / "classes.json", source.classes)
    return load(out_dir, tuple(labels)), bad, source.ignored


def save(prepared: Prepared, out_dir: Path) -> None:
    """Write an in-memory Prepared in the layout `prepare` writes and `load` reads."""
    for split, data in prepared.splits.items():
        np.save(out_dir / f"{split}_images.npy", data.images, allow_pickle=False)
        np.save(out_dir / f"{split}_labels.npy", data.labels, allow_pickle=False)
    write_json(out_dir / "classes.json", prepared.classes)


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
