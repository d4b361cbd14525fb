"""Raw formats: a source's files read into labelled images, each layout recognised by content.

The raw files (source.json's `files`; or the folder or archive given to `survey`) form one
tree of members. An archive among them (zip, tar, tar.gz/bz2/xz, 7z: told by content) is
expanded into its members, and an archive inside it once more (Kaggle's bundles: `train.zip`
in dogs-vs-cats.zip, `train.7z` in cifar-10.zip), unpacked into a scratch folder. Junk is
skipped and counted as ignored, never an error nor a class: a `__MACOSX` or `.hidden` path
part (`.DS_Store`, `._x.jpg`, `.git/`), `Thumbs.db`, `desktop.ini`, and every file the layout
does not use (a readme, Kaggle's sampleSubmission.csv).

Layouts, recognised by content and checked in this order:
- `npz`: arrays x_train, y_train and optionally x_test, y_test (Keras' mnist.npz); loaded
  without pickle. Classes: the labels' values, as strings.
- `cifar-python`: the official CIFAR-10 tarball (`cifar-10-batches-py/`), unpickled only when
  its sha256 is the published one.
- `pixel-csv`: a csv headed `label,pixel0,...,pixelN` of square grayscale images, 0..255
  (Kaggle's digit-recognizer train.csv).
- `labels-csv`: image files plus one csv with an image column (id, filename, file, image,
  image_id, name) and a label column (label, class, category); an id names the image whose
  file name, less folder and extension, it is (Kaggle's CIFAR-10: trainLabels.csv, train.7z).
- `image-folder`: one folder per class (`class/x.jpg`, `top/train/class/x.jpg`) or, directly
  under a split folder, a file-name prefix (`train/cat.12.jpg`).

Split folders give an image's pool: train/training (train), val/valid/validation (val),
test/testing (test), a number allowed after the name (Kaggle's unlabelled `test1/`); no split
folder: train. datasets.assign_splits turns the pools into the train/val/test splits. Class names
are sorted, numerically when all are whole numbers.

`prepare` writes straight into the output directory. Image files are streamed: each decoded
image goes to its row of `{split}_images.npy` with a plain file write, unreadable rows are
squeezed out in place at the end, so memory does not grow with the dataset (and the output's
pages never need to be resident in this process).
"""
import contextlib
import csv
import io
import math
import os
import pickle
import re
import tempfile
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import archives, images
from .catalog import DATASET_SOURCES
from .datasets import SPLITS, Prepared, RowFile, assign_splits, load
from .errors import ImagerecError
from .files import read_json, write_json
from .sources import SOURCE_RECORD, sha256_of

SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}
# Only this file is ever unpickled: the published checksum of the official tarball.
CIFAR10_PYTHON_SHA256 = DATASET_SOURCES["cifar10"]["toronto"].sha256
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_BATCHES = {f"data_batch_{i}" for i in range(1, 6)} | {"test_batch", "batches.meta"}
MAX_ARCHIVE_DEPTH = 2  # an archive, and an archive inside it
NESTED_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".7z", ".npz")
JUNK_NAMES = {"thumbs.db", "desktop.ini"}
IMAGE_COLUMNS = ("filename", "file", "image", "image_id", "id", "name")  # preferred first when several
LABEL_COLUMNS = ("label", "class", "category")
CSV_HEADER_BYTES = 2**20
LAYOUTS = ("class folders (cats/1.jpg, train/cats/1.jpg), name prefixes (train/cat.1.jpg), images plus a "
           "labels csv (id,label), a pixel csv (label,pixel0,...), an npz (x_train, y_train), the CIFAR-10 "
           "python tarball")


# --- the member tree ---------------------------------------------------------------------------

@dataclass(slots=True)
class _Member:
    name: str       # its path in the tree: "train/cat.1.jpg", "train.zip/train/cat.1.jpg"
    size: int
    container: int  # index into _Tree.containers
    inner: str      # its name inside that container ("" when the container is the file itself)


@dataclass
class _Container:
    kind: str  # "archive", "folder", "file" (a plain file) or "npz"
    path: Path
    name: str  # what messages call it: the raw file's name, or its name in the tree


def _is_junk(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return (not parts or parts[-1].lower() in JUNK_NAMES
            or any(part == "__MACOSX" or part.startswith(".") for part in parts))


def _is_image(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in images.IMAGE_SUFFIXES


class _Tree:
    """Every member of the raw files: plain files, folders walked, archives expanded."""

    def __init__(self, roots: list[Path], scratch: Path | None, label: str):
        if scratch is None:  # removed once the tree (and whatever reads through it) is gone
            self._scratch_dir = tempfile.TemporaryDirectory(prefix="imagerec-")
            scratch = Path(self._scratch_dir.name)
        self.scratch, self.label = Path(scratch), label
        self.containers: list[_Container] = []
        self.members: list[_Member] = []
        self.folders: list[str] = []  # folders declared as entries (an empty folder exists only so)
        for root in roots:
            if root.is_dir():
                self._add_folder(root)
            else:  # a raw file's members are named as in it, without the file's name in front
                self._add_file(root, root.name, "", depth=0)

    def _container(self, kind: str, path: Path, name: str) -> int:
        self.containers.append(_Container(kind, path, name))
        return len(self.containers) - 1

    def _add_file(self, path: Path, name: str, prefix: str, depth: int) -> None:
        """A file named `name` in the tree; if an archive, its members, named `prefix` + theirs."""
        kind = archives.sniff(path) if depth < MAX_ARCHIVE_DEPTH else None
        if kind is None:
            if depth == 0 and name.lower().endswith(NESTED_SUFFIXES):
                archives.archive_kind(path)  # raises: a user's or a download's archive that is none
            self.members.append(_Member(name, path.stat().st_size, self._container("file", path, name), ""))
            return
        def nested(inner: str) -> bool:
            return depth + 1 < MAX_ARCHIVE_DEPTH and inner.lower().endswith(NESTED_SUFFIXES)

        def taken_out(inner: str) -> bool:  # read now, so that decoding is the archive's only other pass
            return not _is_junk(prefix + inner) and (nested(inner) or inner.lower().endswith(".csv"))

        files, folders, copies = archives.list_entries(path, taken_out, self.scratch / f"members-{len(self.containers)}")
        if kind == "zip" and files and all(inner.endswith(".npy") for inner, _ in files):
            self.members.append(_Member(name, path.stat().st_size, self._container("npz", path, name), ""))
            return
        container = self._container("archive", path, name)
        self.folders += [prefix + folder for folder in folders]
        for inner, size in files:
            member = prefix + inner
            if inner in copies and nested(inner):
                self._add_file(copies[inner], member, member + "/", depth + 1)
            elif inner in copies:
                self.members.append(_Member(member, size, self._container("file", copies[inner], member), ""))
            else:
                self.members.append(_Member(member, size, container, inner))

    def _add_folder(self, root: Path) -> None:
        container, count = self._container("folder", root, str(root)), 0
        for dirpath, dirnames, filenames in os.walk(root):  # linked folders are not followed
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not (here / d).is_symlink())
            self.folders += [(here / d).relative_to(root).as_posix() for d in dirnames]
            for filename in sorted(filenames):
                path = here / filename
                if path.is_symlink() or not path.is_file():
                    continue  # links and devices are not the user's images
                count += 1
                if count > archives.MAX_MEMBERS:
                    raise ImagerecError(f"{root}: more than {archives.MAX_MEMBERS} files")
                name = path.relative_to(root).as_posix()
                if _is_image(name) or _is_junk(name):
                    self.members.append(_Member(name, path.stat().st_size, container, name))
                else:
                    self._add_file(path, name, name + "/", depth=0)

    def read(self, wanted):
        """Yield (member index, open) for the wanted members, each archive read through once."""
        by_container: dict[int, dict[str, int]] = defaultdict(dict)
        for i in sorted(wanted):
            member = self.members[i]
            by_container[member.container].setdefault(member.inner, i)
        for c, pending in by_container.items():
            container = self.containers[c]
            if container.kind == "archive":
                for name, _, open_member in archives.iter_members(container.path, pending.__contains__, self.scratch):
                    if name in pending:  # once, should the archive hold the name twice
                        yield pending.pop(name), open_member
            else:
                for inner, i in pending.items():
                    path = container.path / inner if container.kind == "folder" else container.path
                    yield i, lambda path=path: os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")

    def unused(self, used) -> list[str]:
        """The names of the members a layout leaves out, in tree order: the ignored files."""
        return [member.name for i, member in enumerate(self.members) if i not in used]


def _raw_files(raw_dir: Path) -> list[Path]:
    """The files source.json lists: `files: [{file, sha256}, ...]`, or an older single `file`."""
    record_path = raw_dir / SOURCE_RECORD
    record = read_json(record_path)
    entries = record.get("files") or ([{"file": record["file"]}] if "file" in record else [])
    if not entries:
        raise ImagerecError(f"{record_path}: lists no files (expected \"files\": [{{\"file\": ...}}])")
    paths = []
    for entry in entries:
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name in ("", ".", "..") or PurePosixPath(name).name != name or "\\" in name:
            raise ImagerecError(f"{record_path}: {entry!r} does not name a file in {raw_dir}")
        if not (raw_dir / name).is_file():
            raise ImagerecError(f"{record_path}: lists {name}, which is missing from {raw_dir}")
        paths.append(raw_dir / name)
    return paths


# --- labels ------------------------------------------------------------------------------------

def _pool(folder: str) -> str | None:
    """The pool a split folder's name gives (test1 is test), or None for other folders."""
    return SPLIT_FOLDERS.get(re.sub(r"\d+$", "", folder.lower()))


def _pool_of(name: str) -> str:
    return next((_pool(folder) for folder in PurePosixPath(name).parts[:-1] if _pool(folder)), "train")


def _strip_archive_suffix(folder: str) -> str:
    # A class archive (cats.zip/1.jpg) names its class as a folder would.
    suffix = next((s for s in NESTED_SUFFIXES if folder.lower().endswith(s)), "")
    return folder[:len(folder) - len(suffix)] if suffix and len(folder) > len(suffix) else folder


def _folder_label(name: str) -> tuple[str, str, bool] | None:
    """(pool, class, labelled by folder?) of an image member, or None when it has no label."""
    path = PurePosixPath(name)
    if _is_junk(name) or not _is_image(name):
        return None
    folders = path.parts[:-1]
    split_at = next((i for i, folder in enumerate(folders) if _pool(folder)), None)
    pool = _pool(folders[split_at]) if split_at is not None else "train"
    if folders and (split_at is None or split_at < len(folders) - 1):
        return pool, _strip_archive_suffix(folders[-1]), True
    pieces = path.name.split(".")
    if len(pieces) > 2:
        return pool, pieces[0], False  # Kaggle style: train/cat.12.jpg
    return None  # test1/12.jpg: Kaggle's unlabelled test images


def _label_member(name: str) -> tuple[str, str] | None:
    """(pool, class) of an image member labelled by folder or file name, or None."""
    found = _folder_label(name)
    return None if found is None else found[:2]


def _class_order(labels) -> list[str]:
    labels = sorted(set(labels))
    if all(re.fullmatch(r"-?\d+", label) for label in labels):
        return sorted(labels, key=int)  # 0, 1, ..., 10, not 0, 1, 10, 2
    return labels


# --- layouts -----------------------------------------------------------------------------------

@dataclass
class _Found:
    layout: str
    member: int | None = None  # the npz, cifar batch, or csv read


def _only(tree: _Tree, found: list[int], what: str) -> int:
    if len(found) > 1:
        names = ", ".join(tree.members[i].name for i in found[:3])
        raise ImagerecError(f"{tree.label}: more than one {what} ({names}); keep one")
    return found[0]


def _csv_headers(tree: _Tree, indices: list[int]) -> dict[int, list[str]]:
    """The first row of each csv (empty for an empty or binary file)."""
    headers = {i: [] for i in indices}
    for i, open_member in tree.read(indices):
        with archives._damage_is_archive_error(tree.members[i].name), open_member() as stream:
            first = stream.read(CSV_HEADER_BYTES).split(b"\n", 1)[0]
        try:
            headers[i] = next(csv.reader([first.decode("utf-8-sig").rstrip("\r")]), [])
        except (UnicodeDecodeError, csv.Error):
            pass
    return headers


def _pixel_side(header: list[str]) -> int | None:
    """The side of a pixel csv's square images, or None for another csv."""
    columns = [column.strip().lower() for column in header]
    side = math.isqrt(max(len(columns) - 1, 0))
    if side and columns == ["label"] + [f"pixel{i}" for i in range(side * side)]:
        return side
    return None


def _label_columns(header: list[str]) -> tuple[int, int] | None:
    """Where a labels csv's image and label columns are, or None if it has not both."""
    columns = [column.strip().lower() for column in header]
    image = next((columns.index(c) for c in IMAGE_COLUMNS if c in columns), None)
    label = next((columns.index(c) for c in LABEL_COLUMNS if c in columns), None)
    return None if image is None or label is None else (image, label)


def _detect(tree: _Tree) -> _Found:
    members = [i for i, member in enumerate(tree.members) if not _is_junk(member.name)]
    npz = [i for i in members if tree.containers[tree.members[i].container].kind == "npz"]
    if npz:
        return _Found("npz", _only(tree, npz, "npz"))
    cifar = [i for i in members if CIFAR_FOLDER in PurePosixPath(tree.members[i].name).parts]
    if cifar:
        return _Found("cifar-python", cifar[0])
    # Kaggle's submission templates (sampleSubmission.csv: id,label) label nothing.
    csvs = [i for i in members if tree.members[i].name.lower().endswith(".csv")
            and "submission" not in PurePosixPath(tree.members[i].name).name.lower()]
    headers = _csv_headers(tree, csvs)
    pixel = [i for i in csvs if _pixel_side(headers[i])]
    if pixel:
        return _Found("pixel-csv", _only(tree, pixel, "pixel csv"))
    image_files = [i for i in members if _is_image(tree.members[i].name)]
    labelled = [i for i in csvs if _label_columns(headers[i])]
    if labelled and image_files:
        return _Found("labels-csv", _only(tree, labelled, "labels csv"))
    if any(_folder_label(tree.members[i].name) for i in image_files):
        return _Found("image-folder")
    if not image_files:
        raise ImagerecError(f"{tree.label}: no labelled training images: it holds no image files "
                            f"({len(tree.members)} other files); accepted layouts: {LAYOUTS}")
    if csvs:
        name = tree.members[csvs[0]].name
        if not headers[csvs[0]]:
            raise ImagerecError(f"{name}: empty csv: no header row naming an image and a label column")
        raise ImagerecError(f"{name}: columns {headers[csvs[0]]} not recognised: a labels csv needs an image column "
                            f"({', '.join(IMAGE_COLUMNS)}) and a label column ({', '.join(LABEL_COLUMNS)})")
    raise ImagerecError(f"{tree.label}: layout not recognised: {len(image_files)} images but no labels for them "
                        f"(e.g. {tree.members[image_files[0]].name}); accepted layouts: {LAYOUTS}")


def detect_format(path: Path) -> str:
    """The layout of one raw file (or folder): npz, cifar-python, pixel-csv, labels-csv, image-folder."""
    return _detect(_Tree([Path(path)], None, Path(path).name)).layout


def _open(tree: _Tree, found: _Found | None = None):
    """The source the tree's layout gives: labels per pool, classes, ignored files, materialise()."""
    found = found or _detect(tree)
    if found.layout == "labels-csv":
        return _labels_csv(tree, found.member)
    if found.layout == "image-folder":
        return _image_folder(tree)
    member = tree.members[found.member]
    container = tree.containers[member.container]
    used = {found.member}
    if found.layout == "npz":
        source = _read_npz(container.path, container.name)
    elif found.layout == "pixel-csv":
        source = _read_pixel_csv(tree, found.member)
    else:
        source = _read_cifar_python(container.path, container.name)
        used = {i for i, m in enumerate(tree.members)
                if m.container == member.container and PurePosixPath(m.inner).name in CIFAR_BATCHES}
    source.ignored = tree.unused(used)
    return source


# --- sources: labels per pool, classes, and materialise() ----------------------------------------

class _ArraySource:
    """Images already decoded into arrays (npz, CIFAR pickles, pixel csv)."""

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


def _class_indices(name: str, pools: dict) -> tuple[list[str], dict]:
    """Classes named by the labels' values, and each pool's labels as indices into them."""
    values = np.unique(np.concatenate([labels for _, labels in pools.values()]))
    classes = _class_order(str(value) for value in values)
    if len(classes) != len(values):
        raise ImagerecError(f"{name}: labels {values.tolist()} do not name distinct classes")
    code = np.array([classes.index(str(value)) for value in values])
    return classes, {pool: (x, code[np.searchsorted(values, y)]) for pool, (x, y) in pools.items()}


def _read_npz(path: Path, name: str | None = None) -> _ArraySource:
    name = name or path.name
    try:
        with np.load(path, allow_pickle=False) as data:
            pools = {pool: (data[f"x_{pool}"], data[f"y_{pool}"]) for pool in ("train", "test")
                     if pool == "train" or f"x_{pool}" in data.files}
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as err:
        raise ImagerecError(f"{name}: not an npz with x_train/y_train (and x_test/y_test) "
                            f"({' '.join(str(err).split())[:160]})") from None
    for pool, (x, y) in pools.items():
        if (x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[3] not in (1, 3, 4))
                or 0 in x.shape or y.ndim != 1 or len(x) != len(y) or y.dtype.kind not in "iubU"):
            raise ImagerecError(f"{name}: x_{pool} must be uint8 (N, H, W[, 1, 3 or 4]) and y_{pool} (N,) integers or strings; "
                                f"got {x.dtype} {x.shape} and {y.dtype} {y.shape}")
    return _ArraySource(*_class_indices(name, pools))


def _read_cifar_python(path: Path, name: str | None = None) -> _ArraySource:
    name = name or path.name
    if sha256_of(path) != CIFAR10_PYTHON_SHA256:
        raise ImagerecError(f"{name}: sha256 is not that of the official CIFAR-10 python tarball; "
                            "refusing to unpickle it")
    batches = {}
    for member, _, open_member in archives.iter_members(path):
        if PurePosixPath(member).name in CIFAR_BATCHES:  # the tarball also holds a readme.html
            # Trusted: the file's sha256 matches the published checksum of the official tarball.
            batches[PurePosixPath(member).name] = pickle.loads(archives.read_member(open_member, 2**28), encoding="bytes")
    if CIFAR_BATCHES - set(batches):
        raise ImagerecError(f"{name}: missing CIFAR-10 batches {sorted(CIFAR_BATCHES - set(batches))}")

    def arrays(names):
        x = np.concatenate([batches[n][b"data"] for n in names]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.concatenate([batches[n][b"labels"] for n in names])
        return np.ascontiguousarray(x), np.asarray(y)

    classes = [label.decode() for label in batches["batches.meta"][b"label_names"]]
    pools = {"train": arrays([f"data_batch_{i}" for i in range(1, 6)]), "test": arrays(["test_batch"])}
    return _ArraySource(classes, pools)


@contextlib.contextmanager
def _csv_rows(tree: _Tree, index: int):
    """A csv.reader over one csv member; undecodable text is an error naming it."""
    name = tree.members[index].name
    for _, open_member in tree.read([index]):
        with archives._damage_is_archive_error(name), open_member() as stream:
            try:
                yield csv.reader(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""))
            except (UnicodeDecodeError, csv.Error) as err:
                raise ImagerecError(f"{name}: not a readable UTF-8 csv ({' '.join(str(err).split())[:120]})") from None
        return


def _read_pixel_csv(tree: _Tree, index: int) -> _ArraySource:
    """Kaggle's digit-recognizer train.csv: label,pixel0,...; one square grayscale image a row."""
    name = tree.members[index].name
    rows, labels = [], []
    with _csv_rows(tree, index) as reader:
        side = _pixel_side(next(reader, []))
        for number, row in enumerate(reader, start=2):
            if not any(field.strip() for field in row):
                continue
            if len(row) != side * side + 1:
                raise ImagerecError(f"{name}: line {number} has {len(row)} fields, the header {side * side + 1}")
            try:
                pixels = np.array(row[1:], dtype=np.int64)
            except ValueError:
                pixels = np.array([-1])
            if pixels.min() < 0 or pixels.max() > 255:
                raise ImagerecError(f"{name}: line {number}: pixel values must be whole numbers from 0 to 255")
            rows.append(pixels.astype(np.uint8))
            labels.append(row[0].strip())
    if not rows:
        raise ImagerecError(f"{name}: empty csv: no image rows under its header")
    classes = _class_order(labels)
    index_of = {label: i for i, label in enumerate(classes)}
    x = np.stack(rows).reshape(-1, side, side)
    return _ArraySource(classes, {"train": (x, np.array([index_of[label] for label in labels]))})


class _ImageSource:
    """Image files of the tree, each labelled (by folder, file name or csv); decoded lazily."""

    def __init__(self, tree: _Tree, entries: list[tuple[int, str, str]], used=()):
        """entries: (member index, pool, class) of each labelled image; used: other members read."""
        self.tree, self.path = tree, tree.containers[0].path
        self.ignored = tree.unused({i for i, _, _ in entries} | set(used))
        if not any(pool == "train" for _, pool, _ in entries):
            raise ImagerecError(f"{tree.label}: no labelled training images found")
        self.classes = _class_order(label for _, _, label in entries)
        if len(self.classes) < 2:
            raise ImagerecError(f"{tree.label}: found only one class ({self.classes[0]!r}); need at least two")
        missing = set(self.classes) - {label for _, pool, label in entries if pool == "train"}
        if missing:
            raise ImagerecError(f"{tree.label}: classes {sorted(missing)} have no training images")
        index = {label: i for i, label in enumerate(self.classes)}
        pools = [pool for pool in SPLITS if any(p == pool for _, p, _ in entries)]
        self._members = {pool: [i for i, p, _ in entries if p == pool] for pool in pools}
        self._names = {pool: [tree.members[i].name for i in members] for pool, members in self._members.items()}
        self.labels = {pool: np.array([index[label] for _, p, label in entries if p == pool]) for pool in pools}

    def materialise(self, selection, size, color_mode, out_dir: Path):
        """Decode the selected members into `{split}_images.npy`, one row at a time.

        Returns the labels of the images kept and the list of unreadable ones (skipped).
        """
        wanted = {}  # member index -> (split, row)
        for split, (pool, index) in selection.items():
            for row, i in enumerate(index):
                wanted[self._members[pool][i]] = (split, row)
        channels = 1 if color_mode == "grayscale" else 3
        kept = {split: np.zeros(len(index), bool) for split, (_, index) in selection.items()}
        files = {}
        try:
            for split, (_, index) in selection.items():
                files[split] = RowFile(out_dir / f"{split}_images.npy", len(index), (size, size, channels))
            bad = []
            with tqdm(total=len(wanted), desc=f"decoding {self.tree.label}", unit="img") as bar:
                for i, open_member in self.tree.read(wanted):
                    split, row = wanted[i]
                    try:
                        image = images.decode(archives.read_member(open_member, images.MAX_IMAGE_BYTES), size, color_mode)
                    except (images.BadImage, archives.ArchiveError) as err:
                        bad.append({"file": self.tree.members[i].name, "split": split, "reason": str(err)})
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


def _image_folder(tree: _Tree) -> _ImageSource:
    entries, class_folders = [], set()
    for i, member in enumerate(tree.members):
        found = _folder_label(member.name)
        if found is not None:
            entries.append((i, found[0], found[1]))
            if found[2]:
                class_folders.add(PurePosixPath(member.name).parent)
    # A declared folder beside class folders that holds nothing is a class left empty.
    class_parents = {folder.parent for folder in class_folders}
    holding = {parent for member in tree.members if not _is_junk(member.name)
               for parent in PurePosixPath(member.name).parents}
    for folder in map(PurePosixPath, tree.folders):
        if folder.parent in class_parents and folder not in holding and not _is_junk(str(folder)):
            raise ImagerecError(f"{tree.label}: class folder {str(folder)!r} holds no images")
    return _ImageSource(tree, entries)


def _image_matcher(tree: _Tree, image_files: list[int]):
    """match(value) -> the images a labels csv's value can name: by file name with or without
    its extension, and with as much of its folder path as the value gives."""
    by_name = defaultdict(list)
    for i in image_files:
        path = PurePosixPath(tree.members[i].name)
        by_name[path.name].append(i)
        by_name[path.stem].append(i)

    def match(value: str) -> list[int]:
        wanted = PurePosixPath(value.replace("\\", "/"))
        found = by_name.get(wanted.name, [])
        if len(wanted.parts) > 1:
            tail = "/" + str(wanted)
            found = [i for i in found if any(("/" + path).endswith(tail) for path in
                                             (tree.members[i].name, str(PurePosixPath(tree.members[i].name).with_suffix(""))))]
        if len(found) > 1:  # 1.png in train/ and in test/: the labels are the training images'
            found = [i for i in found if _pool_of(tree.members[i].name) == "train"] or found
        return found

    return match


def _labels_csv(tree: _Tree, index: int) -> _ImageSource:
    name = tree.members[index].name
    image_files = [i for i, member in enumerate(tree.members) if not _is_junk(member.name) and _is_image(member.name)]
    match = _image_matcher(tree, image_files)
    labels = {}
    with _csv_rows(tree, index) as reader:
        header = next(reader, [])
        image_column, label_column = _label_columns(header)
        for number, row in enumerate(reader, start=2):
            if not any(field.strip() for field in row):
                continue
            if len(row) <= max(image_column, label_column):
                raise ImagerecError(f"{name}: line {number} has {len(row)} fields, the header {len(header)}")
            value, label = row[image_column].strip(), row[label_column].strip()
            found = match(value)
            if not found:
                raise ImagerecError(f"{name}: line {number} names image {value!r}, which is not in the dataset")
            if len(found) > 1:
                raise ImagerecError(f"{name}: line {number}: {value!r} matches several images "
                                    f"({tree.members[found[0]].name}, {tree.members[found[1]].name}); give its folder too")
            if not label:
                raise ImagerecError(f"{name}: line {number} gives {value!r} no label")
            if found[0] in labels:
                raise ImagerecError(f"{name}: line {number} labels {tree.members[found[0]].name} a second time")
            labels[found[0]] = label
    if not labels:
        raise ImagerecError(f"{name}: empty csv: no rows under its header")
    # Held-out images without labels are Kaggle's unlabelled test set: ignored, not an error.
    unlabelled = [i for i in image_files if i not in labels and _pool_of(tree.members[i].name) == "train"]
    if unlabelled:
        raise ImagerecError(f"{name}: {len(unlabelled)} images have no label row, "
                            f"e.g. {tree.members[unlabelled[0]].name}")
    entries = [(i, _pool_of(tree.members[i].name), label) for i, label in sorted(labels.items())]
    return _ImageSource(tree, entries, used={index})


def read_raw(raw_dir: Path, scratch: Path | None = None):
    """The source in `raw_dir` (its files as source.json lists them); `scratch`, a directory
    for archives that must be unpacked (a temporary one, kept as long as the source, if None)."""
    raw_dir = Path(raw_dir)
    paths = _raw_files(raw_dir)
    return _open(_Tree(paths, scratch, ", ".join(path.name for path in paths)))


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


def survey(path: Path, sample: int = 100) -> dict:
    """Describe a user's folder or archive cheaply, to choose defaults: how many labelled
    images, how many classes, and the median of min(width, height) over up to `sample` images
    spread over the dataset, read from their headers (nothing is decoded). Raises the errors
    `prepare` would for a missing path, an unrecognised layout or no images."""
    path = Path(path)
    if not path.exists():
        raise ImagerecError(f"{path}: no such file or folder")
    with tempfile.TemporaryDirectory(prefix="imagerec-survey-") as scratch:
        tree = _Tree([path], Path(scratch), path.name)
        source = _open(tree)
        total = sum(len(labels) for labels in source.labels.values())
        if isinstance(source, _ArraySource):
            side = min(next(iter(source._pools.values()))[0].shape[1:3])
            return {"images": total, "classes": len(source.classes), "median_side": float(side)}
        members = sorted(i for pool in source._members.values() for i in pool)
        spread = {members[int(k)] for k in np.linspace(0, len(members) - 1, min(sample, len(members))).round()}
        sides = []
        for i, open_member in tree.read(spread):
            try:
                with Image.open(io.BytesIO(archives.read_member(open_member, images.MAX_IMAGE_BYTES))) as image:
                    sides.append(min(image.size))  # from the header: nothing is decoded
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, ImagerecError):
                pass  # unreadable: prepare will skip it too
    return {"images": total, "classes": len(source.classes),
            "median_side": float(np.median(sides)) if sides else None}
