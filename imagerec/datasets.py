"""From a source's raw files to train/validation/test uint8 arrays on disk, and back.

Three raw formats are read, told apart by content:
- `npz`: arrays x_train, y_train, x_test, y_test (Keras' mnist.npz); loaded without pickle.
- `cifar-python`: the official CIFAR-10 tarball of pickled batches, unpickled only after its
  sha256 matches the one fetch verified.
- `image-folder`: a zip or tar of image files, labelled by folder (`[top/]split/class/x.jpg`,
  `class/x.jpg`) or, directly under a split folder, by file-name prefix (`train/cat.12.jpg`).
  `test/`, `validation/` or `val/` folders form the held-out test split.
"""
import pickle
import tarfile
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

    def materialise(self, selection, size, color_mode):
        out = {}
        for split, (pool, index) in selection.items():
            pool_images, pool_labels = self._pools[pool]
            out[split] = Split(images.conform(pool_images[index], size, color_mode), pool_labels[index].astype(np.int64))
        return out, []


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


class _FolderSource:
    """An archive of image files labelled by folder or file name; decoded lazily."""

    def __init__(self, path: Path):
        self.path = path
        members, self.ignored = {"train": [], "test": []}, []
        for name, _, _ in archives.iter_members(path):
            labelled = _label_member(name)
            if labelled is None:
                self.ignored.append(name)
            else:
                members[labelled[0]].append((name, labelled[1]))
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

    def materialise(self, selection, size, color_mode):
        wanted = {}  # member name -> (split, row)
        for split, (pool, index) in selection.items():
            for row, i in enumerate(index):
                wanted[self._names[pool][i]] = (split, row)
        channels = 1 if color_mode == "grayscale" else 3
        arrays = {split: np.zeros((len(index), size, size, channels), np.uint8) for split, (_, index) in selection.items()}
        kept = {split: np.zeros(len(index), bool) for split, (_, index) in selection.items()}
        bad = []
        with tqdm(total=len(wanted), desc=f"decoding {self.path.name}", unit="img") as bar:
            for name, _, open_member in archives.iter_members(self.path):
                if name not in wanted:
                    continue
                split, row = wanted[name]
                try:
                    arrays[split][row] = images.decode(archives.read_member(open_member, images.MAX_IMAGE_BYTES), size, color_mode)
                    kept[split][row] = True
                except (images.BadImage, archives.ArchiveError) as err:
                    bad.append({"file": name, "split": split, "reason": str(err)})
                bar.update()
        out = {}
        for split, (pool, index) in selection.items():
            out[split] = Split(arrays[split][kept[split]], self.labels[pool][index][kept[split]].astype(np.int64))
        return out, bad


def read_raw(raw_dir: Path):
    record = read_json(raw_dir / SOURCE_RECORD)
    path = raw_dir / record["file"]
    kind = detect_format(path)
    if kind == "npz":
        return _read_npz(path)
    if kind == "cifar-python":
        return _read_cifar_python(path, record["sha256"])
    return _FolderSource(path)


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


def prepare(raw_dir: Path, size: int, color_mode: str, val_fraction: float, test_fraction: float,
            max_per_class: int, seed: int) -> tuple[Prepared, list[dict], list[str]]:
    """Read, split and decode a raw dataset. Returns it, the bad images and the ignored files."""
    source = read_raw(raw_dir)
    selection = assign_splits(source.labels, val_fraction, test_fraction, max_per_class, seed)
    splits, bad = source.materialise(selection, size, color_mode)
    for split in SPLITS:
        absent = [name for i, name in enumerate(source.classes) if not (splits[split].labels == i).any()]
        if absent:
            raise ImagerecError(f"the {split} split has no images of class {', '.join(absent)} "
                                f"({len(bad)} unreadable images skipped)")
    return Prepared(source.classes, splits), bad, source.ignored


def save(prepared: Prepared, out_dir: Path) -> None:
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


def statistics(prepared: Prepared, bad: list[dict], ignored: list[str]) -> dict:
    train = np.asarray(prepared.splits["train"].images)
    return {
        "classes": prepared.classes,
        "image_shape": list(train.shape[1:]),
        "counts": {
            split: {name: int((data.labels == i).sum()) for i, name in enumerate(prepared.classes)}
            for split, data in prepared.splits.items()
        },
        "totals": {split: int(len(data.labels)) for split, data in prepared.splits.items()},
        "train_mean_pixel": [round(float(v), 3) for v in train.reshape(-1, train.shape[-1]).mean(axis=0, dtype=np.float64)],
        "unreadable_images": len(bad),
        "ignored_files": len(ignored),
    }
