"""datasets: format detection, labelling, splitting, decoding with bad images, saving and loading."""
import hashlib
import io
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import (CIFAR_CLASSES, encode, image_folder_files, make_mnist_npz,  # noqa: E402
                      pattern_images, write_archive)

from imagerec import datasets  # noqa: E402
from imagerec.archives import ArchiveError  # noqa: E402
from imagerec.errors import ImagerecError  # noqa: E402

PETS = ["cats", "dogs"]


def write_raw(raw_dir: Path, name: str, make, sha256: str | None = None) -> Path:
    """A fetch output: the file `make(path)` writes, plus source.json recording its sha256."""
    raw_dir.mkdir(exist_ok=True)
    path = raw_dir / name
    make(path)
    digest = sha256 or hashlib.sha256(path.read_bytes()).hexdigest()
    (raw_dir / datasets.SOURCE_RECORD).write_text(f'{{"file": "{name}", "sha256": "{digest}"}}')
    return raw_dir


def folder_raw(tmp_path: Path, files: dict[str, bytes], name: str = "images.zip") -> Path:
    return write_raw(tmp_path / "raw", name, lambda path: write_archive(path, files))


def prepare(raw_dir: Path, size: int = 16, color_mode: str = "rgb", max_per_class: int = 0, seed: int = 0):
    return datasets.prepare(raw_dir, size, color_mode, val_fraction=0.25, test_fraction=0.25,
                            max_per_class=max_per_class, seed=seed)


def cifar_tarball(path: Path, per_batch: int = 3, extra: dict[str, bytes] | None = None,
                  directory_entry: bool = False) -> None:
    """A tiny cifar-10-python.tar.gz: pickled dict batches, as the official one holds them."""
    rng = np.random.default_rng(0)

    def batch(n):
        return pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                             b"labels": [i % 10 for i in range(n)]})

    files = {f"data_batch_{i}": batch(per_batch) for i in range(1, 6)}
    files["test_batch"] = batch(2 * per_batch)
    files["batches.meta"] = pickle.dumps({b"label_names": [name.encode() for name in CIFAR_CLASSES]})
    files.update(extra or {})
    with tarfile.open(path, "w:gz") as tf:
        if directory_entry:
            info = tarfile.TarInfo("cifar-10-batches-py")
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


# --- formats and labels ------------------------------------------------------------------------

@pytest.mark.parametrize("name, make, expected", [
    ("mnist.npz", make_mnist_npz, "npz"),
    ("pets.zip", lambda p: write_archive(p, image_folder_files(PETS, {"train": 1}, 8)), "image-folder"),
    ("pets.tar.gz", lambda p: write_archive(p, image_folder_files(PETS, {"train": 1}, 8)), "image-folder"),
    ("cifar-10-python.tar.gz", lambda p: cifar_tarball(p, 1), "cifar-python"),
    ("cifar-dir-first.tar.gz", lambda p: cifar_tarball(p, 1, directory_entry=True), "cifar-python"),
])
def test_detect_format_tells_formats_apart_by_content(tmp_path, name, make, expected):
    make(tmp_path / name)
    assert datasets.detect_format(tmp_path / name) == expected


def test_detect_format_refuses_a_file_that_is_no_archive(tmp_path):
    (tmp_path / "x.zip").write_text("<html>rate limited</html>")
    with pytest.raises(ArchiveError):
        datasets.detect_format(tmp_path / "x.zip")


@pytest.mark.parametrize("member, expected", [
    ("top/train/cats/x.jpg", ("train", "cats")),
    ("train/cat.12.jpg", ("train", "cat")),
    ("PetImages/Cat/1.jpg", ("train", "Cat")),
    ("validation/dogs/a.png", ("test", "dogs")),
    ("cifar/TEST/ship/0001.JPEG", ("test", "ship")),
    ("readme.txt", None),
    ("train/cats/.DS_Store.jpg", None),
    ("PetImages/Cat/Thumbs.db", None),
])
def test_label_member_gives_pool_and_class(member, expected):
    assert datasets._label_member(member) == expected


# --- splits ------------------------------------------------------------------------------------

TRAIN_LABELS = np.repeat(np.arange(3), 20)  # 3 classes x 20


def class_counts(labels: np.ndarray, index: np.ndarray) -> list[int]:
    return np.bincount(labels[index], minlength=3).tolist()


def test_assign_splits_carves_stratified_disjoint_test_and_val_from_train():
    selection = datasets.assign_splits({"train": TRAIN_LABELS}, 0.2, 0.25, 0, seed=1)
    assert all(pool == "train" for pool, _ in selection.values())
    index = {split: idx for split, (_, idx) in selection.items()}
    assert class_counts(TRAIN_LABELS, index["test"]) == [5, 5, 5]  # 25% of 60, per class
    assert class_counts(TRAIN_LABELS, index["val"]) == [3, 3, 3]  # 20% of the 45 left
    assert class_counts(TRAIN_LABELS, index["train"]) == [12, 12, 12]
    assert len(set(np.concatenate(list(index.values())))) == len(TRAIN_LABELS)  # disjoint and complete


def test_assign_splits_uses_the_sources_own_test_pool():
    test_labels = np.repeat(np.arange(3), 4)
    selection = datasets.assign_splits({"train": TRAIN_LABELS, "test": test_labels}, 0.2, 0.25, 0, seed=1)
    assert selection["test"][0] == "test"
    assert selection["test"][1].tolist() == list(range(12))
    assert len(selection["train"][1]) + len(selection["val"][1]) == len(TRAIN_LABELS)


def test_assign_splits_is_seeded():
    def split(seed):
        selection = datasets.assign_splits({"train": TRAIN_LABELS}, 0.2, 0.25, 0, seed)
        return {split: index.tolist() for split, (_, index) in selection.items()}
    assert split(7) == split(7)
    assert split(7) != split(8)


def test_assign_splits_honours_max_per_class():
    test_labels = np.repeat(np.arange(3), 4)
    selection = datasets.assign_splits({"train": TRAIN_LABELS, "test": test_labels}, 0.2, 0.25, 2, seed=1)
    pools = {"train": TRAIN_LABELS, "test": test_labels}
    for pool, index in selection.values():
        assert class_counts(pools[pool], index) == [2, 2, 2]


def test_assign_splits_with_too_few_images_per_class_is_an_imagerec_error():
    with pytest.raises(ImagerecError, match="cannot carve the test split"):
        datasets.assign_splits({"train": np.arange(3)}, 0.2, 0.25, 0, seed=0)


# --- prepare on image-folder archives ----------------------------------------------------------

def test_prepare_lists_corrupt_images_as_bad_and_keeps_the_rest(tmp_path):
    files = image_folder_files(PETS, {"train": 8, "test": 3}, 24)
    corrupt = {"train/cats/0000.jpg": b"not an image at all", "train/dogs/0008.jpg": files["train/dogs/0008.jpg"][:200],
               "test/cats/0001.jpg": b""}
    files.update(corrupt)
    files["train/dogs/0009.jpg"] = encode(pattern_images([1], 24, 3)[0], "PNG")  # PNG bytes under a .jpg name
    files["readme.txt"] = b"a dataset"
    prepared, bad, ignored = prepare(folder_raw(tmp_path, files))

    assert prepared.classes == PETS and ignored == ["readme.txt"]
    assert sorted(entry["file"] for entry in bad) == sorted(corrupt)
    assert {entry["file"]: entry["split"] for entry in bad}["test/cats/0001.jpg"] == "test"
    assert all(entry["split"] in datasets.SPLITS and entry["reason"] for entry in bad)
    totals = {split: len(data.labels) for split, data in prepared.splits.items()}
    assert totals["test"] == 6 - 1 and totals["train"] + totals["val"] == 16 - 2
    for data in prepared.splits.values():
        assert data.images.shape[1:] == (16, 16, 3) and len(data.images) == len(data.labels)
        assert data.images.reshape(len(data.images), -1).max(axis=1).min() > 0  # no blank placeholder rows


@pytest.mark.parametrize("files, message", [
    ({"train/cats/a.jpg": b"x", "train/cats/b.jpg": b"x"}, "only one class"),
    ({"readme.txt": b"x", "train/notes.md": b"x"}, "no labelled training images"),
    ({"train/cats/a.jpg": b"x", "test/dogs/b.jpg": b"x"}, r"classes \['dogs'\] have no training images"),
], ids=["one-class", "no-images", "class-only-in-test"])
def test_prepare_refuses_an_archive_without_two_trainable_classes(tmp_path, files, message):
    with pytest.raises(ImagerecError, match=message):
        prepare(folder_raw(tmp_path, files))


def test_prepare_reads_kaggle_style_tar_labelled_by_file_name(tmp_path):
    images = pattern_images(np.repeat([0, 1], 16), 24, 3)
    files = {f"train/{PETS[i // 16][:-1]}.{i}.jpg": encode(image) for i, image in enumerate(images)}
    prepared, bad, _ = prepare(folder_raw(tmp_path, files, "train.tar.gz"), max_per_class=2)
    assert prepared.classes == ["cat", "dog"] and bad == []
    assert all(np.bincount(data.labels).tolist() == [2, 2] for data in prepared.splits.values())


# --- npz and CIFAR pickles -------------------------------------------------------------------

def test_npz_round_trips_through_save_and_memory_mapped_load(tmp_path):
    prepared, bad, ignored = datasets.prepare(write_raw(tmp_path / "raw", "mnist.npz", make_mnist_npz),
                                              28, "grayscale", 0.25, 0.2, 0, seed=0)
    out = tmp_path / "prepared"
    out.mkdir()
    datasets.save(prepared, out)
    loaded = datasets.load(out)
    assert loaded.classes == datasets.MNIST_CLASSES
    for split in datasets.SPLITS:
        assert isinstance(loaded.splits[split].images, np.memmap)
        assert np.array_equal(loaded.splits[split].images, prepared.splits[split].images)
        assert np.array_equal(loaded.splits[split].labels, prepared.splits[split].labels)
    stats = datasets.statistics(loaded, bad, ignored)
    assert stats["image_shape"] == [28, 28, 1]
    assert stats["totals"] == {"train": 90, "val": 30, "test": 60}
    assert stats["counts"]["test"] == {digit: 6 for digit in datasets.MNIST_CLASSES}
    assert stats["counts"]["val"]["7"] == 3 and stats["unreadable_images"] == 0


def test_load_of_incomplete_prepared_dir_names_the_missing_file(tmp_path):
    (tmp_path / "classes.json").write_text('["a", "b"]')
    with pytest.raises(ImagerecError, match="train_images.npy missing"):
        datasets.load(tmp_path)


def test_cifar_python_batches_are_unpickled_into_hwc_images(tmp_path):
    source = datasets.read_raw(write_raw(tmp_path / "raw", "cifar-10-python.tar.gz", cifar_tarball))
    assert source.classes == CIFAR_CLASSES
    assert {pool: len(labels) for pool, labels in source.labels.items()} == {"train": 15, "test": 6}
    images, _ = source._pools["train"]
    with tarfile.open(tmp_path / "raw" / "cifar-10-python.tar.gz") as tf:
        first = pickle.load(tf.extractfile("cifar-10-batches-py/data_batch_1"))[b"data"][0]
    assert images.shape == (15, 32, 32, 3)
    assert tuple(images[0, 0, 1]) == (first[1], first[1025], first[2049])  # R, G, B planes of pixel (0, 1)


def test_cifar_python_with_unverified_sha256_is_never_unpickled(tmp_path, monkeypatch):
    raw = write_raw(tmp_path / "raw", "cifar-10-python.tar.gz", cifar_tarball, sha256="0" * 64)
    monkeypatch.setattr(pickle, "loads", lambda *args, **kwargs: pytest.fail("unpickled an unverified file"))
    with pytest.raises(ImagerecError, match="refusing to unpickle"):
        datasets.read_raw(raw)


def test_cifar_python_tarball_with_readme_html_is_read(tmp_path):
    readme = {"readme.html": b'<meta HTTP-EQUIV="REFRESH" content="0; URL=https://www.cs.toronto.edu/~kriz/">\n'}
    raw = write_raw(tmp_path / "raw", "cifar-10-python.tar.gz",
                    lambda path: cifar_tarball(path, extra=readme, directory_entry=True))
    assert datasets.read_raw(raw).classes == CIFAR_CLASSES


@pytest.mark.parametrize("name", ["images.zip", "images.tar.gz"])
def test_an_empty_class_folder_is_an_error_naming_it(tmp_path, name):
    files = image_folder_files(PETS, {"train": 4, "test": 2}, 16)
    path = tmp_path / "raw" / name
    path.parent.mkdir()
    write_archive(path, files)
    if name.endswith(".zip"):
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr(zipfile.ZipInfo("train/birds/"), b"")
    else:  # rewrite with a directory entry for the empty class
        with tarfile.open(path, "w:gz") as tf:
            info = tarfile.TarInfo("train/birds")
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
            for member, data in files.items():
                entry = tarfile.TarInfo(member)
                entry.size = len(data)
                tf.addfile(entry, io.BytesIO(data))
    raw = write_raw(tmp_path / "raw", name, lambda p: None)
    with pytest.raises(ImagerecError, match="class folder 'train/birds' holds no images"):
        prepare(raw)


def test_archive_format_is_read_from_content_not_extension(tmp_path):
    files = image_folder_files(PETS, {"train": 4, "test": 2}, 16)
    # A gzipped tar that calls itself .zip: still read, as what it is.
    raw = write_raw(tmp_path / "raw", "photos.zip", lambda p: write_archive(p.with_suffix(".tar.gz"), files)
                    or p.with_suffix(".tar.gz").rename(p))
    assert datasets.detect_format(raw / "photos.zip") == "image-folder"
    prepared, bad, _ = prepare(raw)
    assert prepared.classes == PETS and not bad
