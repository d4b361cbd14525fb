"""datasets: format detection, labelling, splitting, decoding with bad images, saving and loading."""
import csv
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import (CIFAR_CLASSES, ODD_PHOTO_OUTCOMES, encode, image_folder_files,  # noqa: E402
                      make_mnist_npz, odd_photo_files, pattern_images, save_prepared, write_archive)

from imagerec import archives, datasets, images, layouts, params, sources  # noqa: E402
from imagerec.archives import ArchiveError  # noqa: E402
from imagerec.errors import ImagerecError  # noqa: E402

PETS = ["cats", "dogs"]
DIGITS = [str(digit) for digit in range(10)]


def write_raw(raw_dir: Path, name: str, make, sha256: str | None = None) -> Path:
    """A fetch output: the file `make(path)` writes, plus source.json recording its sha256."""
    raw_dir.mkdir(exist_ok=True)
    path = raw_dir / name
    make(path)
    digest = sha256 or hashlib.sha256(path.read_bytes()).hexdigest()
    (raw_dir / sources.SOURCE_RECORD).write_text(f'{{"file": "{name}", "sha256": "{digest}"}}')
    return raw_dir


def folder_raw(tmp_path: Path, files: dict[str, bytes], name: str = "images.zip") -> Path:
    return write_raw(tmp_path / "raw", name, lambda path: write_archive(path, files))


def prepare(raw_dir: Path, size: int = 16, color_mode: str = "rgb", max_per_class: int = 0, seed: int = 0):
    """layouts.prepare into a fresh directory beside `raw_dir`."""
    out_dir = Path(tempfile.mkdtemp(prefix="prepared-", dir=raw_dir.parent))
    return layouts.prepare(raw_dir, out_dir, size, color_mode, val_fraction=0.25, test_fraction=0.25,
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
    assert layouts.detect_format(tmp_path / name) == expected


def test_detect_format_refuses_a_file_that_is_no_archive(tmp_path):
    (tmp_path / "x.zip").write_text("<html>rate limited</html>")
    with pytest.raises(ArchiveError):
        layouts.detect_format(tmp_path / "x.zip")


@pytest.mark.parametrize("member, expected", [
    ("top/train/cats/x.jpg", ("train", "cats")),
    ("train/cat.12.jpg", ("train", "cat")),
    ("PetImages/Cat/1.jpg", ("train", "Cat")),
    ("validation/dogs/a.png", ("val", "dogs")),  # a val pool alone becomes the test split
    ("test1/12.jpg", None),  # Kaggle's unlabelled test images
    ("cifar/TEST/ship/0001.JPEG", ("test", "ship")),
    ("readme.txt", None),
    ("train/cats/.DS_Store.jpg", None),
    ("PetImages/Cat/Thumbs.db", None),
])
def test_label_member_gives_pool_and_class(member, expected):
    assert layouts._label_member(member) == expected


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

def test_npz_is_prepared_into_memory_mapped_files_that_save_and_load_round_trip(tmp_path):
    out = tmp_path / "prepared"
    out.mkdir()
    prepared, bad, ignored = layouts.prepare(write_raw(tmp_path / "raw", "mnist.npz", make_mnist_npz),
                                              out, 28, "grayscale", 0.25, 0.2, 0, seed=0)
    assert sorted(path.name for path in out.iterdir()) == sorted(
        ["classes.json"] + [f"{split}_{kind}.npy" for split in datasets.SPLITS for kind in ("images", "labels")])
    in_memory = datasets.Prepared(prepared.classes, {split: datasets.Split(np.array(data.images), data.labels)
                                                     for split, data in prepared.splits.items()})
    again = tmp_path / "saved"
    again.mkdir()
    save_prepared(in_memory, again)
    loaded = datasets.load(again)
    assert loaded.classes == DIGITS
    for split in datasets.SPLITS:
        assert isinstance(prepared.splits[split].images, np.memmap)
        assert isinstance(loaded.splits[split].images, np.memmap)
        assert np.array_equal(loaded.splits[split].images, prepared.splits[split].images)
        assert np.array_equal(loaded.splits[split].labels, prepared.splits[split].labels)
        for kind in ("images", "labels"):
            assert (again / f"{split}_{kind}.npy").read_bytes() == (out / f"{split}_{kind}.npy").read_bytes()
    stats = datasets.statistics(loaded, bad, ignored)
    assert stats["image_shape"] == [28, 28, 1]
    assert stats["totals"] == {"train": 90, "val": 30, "test": 60}
    assert stats["counts"]["test"] == {digit: 6 for digit in DIGITS}
    assert stats["counts"]["val"]["7"] == 3 and stats["unreadable_images"] == 0


def test_load_of_incomplete_prepared_dir_names_the_missing_file(tmp_path):
    (tmp_path / "classes.json").write_text('["a", "b"]')
    with pytest.raises(ImagerecError, match="train_images.npy missing"):
        datasets.load(tmp_path)


def trust_as_official(monkeypatch, raw: Path) -> Path:
    """Take the fixture tarball in `raw` for the official one (only that is ever unpickled)."""
    digest = hashlib.sha256((raw / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    monkeypatch.setattr(layouts, "CIFAR10_PYTHON_SHA256", digest)
    return raw


def test_cifar_python_batches_are_unpickled_into_hwc_images(tmp_path, monkeypatch):
    raw = trust_as_official(monkeypatch, write_raw(tmp_path / "raw", "cifar-10-python.tar.gz", cifar_tarball))
    source = layouts.read_raw(raw)
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
        layouts.read_raw(raw)


def test_cifar_python_tarball_with_readme_html_is_read(tmp_path, monkeypatch):
    readme = {"readme.html": b'<meta HTTP-EQUIV="REFRESH" content="0; URL=https://www.cs.toronto.edu/~kriz/">\n'}
    raw = write_raw(tmp_path / "raw", "cifar-10-python.tar.gz",
                    lambda path: cifar_tarball(path, extra=readme, directory_entry=True))
    source = layouts.read_raw(trust_as_official(monkeypatch, raw))
    assert source.classes == CIFAR_CLASSES and source.ignored == ["cifar-10-batches-py/readme.html"]


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
    assert layouts.detect_format(raw / "photos.zip") == "image-folder"
    prepared, bad, _ = prepare(raw)
    assert prepared.classes == PETS and not bad


# --- real photos: odd files, Kaggle and PetImages layouts ------------------------------------

SPLIT_PARAMS = dict(val_fraction=0.25, test_fraction=0.25, max_per_class=0, seed=0)


def selected_files(raw_dir: Path, **split_params) -> dict[str, list[str]]:
    """The member names each split selects, in row order, bad ones included."""
    source = layouts.read_raw(raw_dir)
    selection = datasets.assign_splits(source.labels, **(split_params or SPLIT_PARAMS))
    return {split: [source._names[pool][i] for i in index] for split, (pool, index) in selection.items()}


def row_of_each_file(raw_dir: Path, bad: list[dict]) -> dict[str, tuple[str, int]]:
    """{member name: (split, row)} for the files kept, from the split selection minus the skipped."""
    skipped = {entry["file"] for entry in bad}
    where = {}
    for split, names in selected_files(raw_dir).items():
        kept = [name for name in names if name not in skipped]
        where.update({name: (split, row) for row, name in enumerate(kept)})
    return where


def red_on_top(image: np.ndarray) -> bool:
    redness = image[..., 0].astype(int) - image[..., 2].astype(int)
    half = len(image) // 2
    return redness[:half].mean() > 150 and redness[half:].mean() < -150


@pytest.mark.parametrize("layout, archive", [("petimages", "kagglecatsanddogs_5340.zip"),
                                             ("kaggle", "dogs-vs-cats-train.zip"),
                                             ("kaggle", "train.tar.gz")])
def test_every_odd_photo_is_converted_and_kept_or_skipped_with_a_reason(tmp_path, layout, archive):
    files, odd = odd_photo_files(layout)
    raw = folder_raw(tmp_path, files, archive)
    prepared, bad, ignored = prepare(raw, size=48)

    classes = ["Cat", "Dog"] if layout == "petimages" else ["cat", "dog"]
    assert prepared.classes == classes
    assert ignored == (["PetImages/Cat/Thumbs.db", "readme[1].txt"] if layout == "petimages" else [])
    reasons = {entry["file"]: entry for entry in bad}
    assert len(reasons) == len(bad)  # each file reported once
    rows = row_of_each_file(raw, bad)
    selected = {name: split for split, names in selected_files(raw).items() for name in names}
    assert set(selected) == set(files) - set(ignored)  # every image file is selected somewhere
    for name in files.keys() - set(ignored):
        kind = odd.get(name, "good")
        outcome = ODD_PHOTO_OUTCOMES.get(kind, "kept")
        if outcome != "kept":
            assert name not in rows, f"{kind} file {name} was kept"
            assert reasons[name]["split"] == selected[name]
            assert outcome in reasons[name]["reason"], (kind, reasons[name])
            continue
        assert name not in reasons, f"{kind} file {name} was skipped: {reasons.get(name)}"
        split, row = rows[name]
        data = prepared.splits[split]
        image = np.asarray(data.images[row])
        assert image.shape == (48, 48, 3)
        assert classes[data.labels[row]].lower() in name.lower()
        if kind == "grayscale":
            assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
        elif kind == "cmyk":
            assert image[..., 0].min() > 200 and image[..., 1:].max() < 50  # CMYK (0, 255, 255, 0) is red
        elif kind == "png-disguised":
            assert np.array_equal(image, np.asarray(Image.open(io.BytesIO(files[name]))))  # lossless, same size
        elif kind == "exif-rotated":
            assert red_on_top(image)  # stored red-left; orientation 6 turns it upright
        else:
            assert image.max() > 200  # a real picture (its bright square), not a blank row
    assert sorted(odd[name] for name in reasons) == sorted(2 * [k for k, v in ODD_PHOTO_OUTCOMES.items() if v != "kept"])
    assert sum(len(data.labels) for data in prepared.splits.values()) == len(files) - len(ignored) - len(bad)


def in_memory_prepare(raw_dir: Path, size: int, color_mode: str, **split_params) -> dict[str, bytes]:
    """What preprocess wrote before streaming: whole arrays in memory, bad rows dropped, np.save."""
    source = layouts.read_raw(raw_dir)
    selection = datasets.assign_splits(source.labels, **split_params)
    data = dict(archives_member_bytes(source.path))
    out = {}
    for split, (pool, index) in selection.items():
        rows, labels = [], []
        for i in index:
            try:
                rows.append(images.decode(data[source._names[pool][i]], size, color_mode))
                labels.append(source.labels[pool][i])
            except images.BadImage:
                pass
        for kind, array in (("images", np.stack(rows)), ("labels", np.array(labels, np.int64))):
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            out[f"{split}_{kind}.npy"] = buffer.getvalue()
    return out


def archives_member_bytes(path: Path):
    for name, _, open_member in archives.iter_members(path):
        with open_member() as stream:
            yield name, stream.read()


@pytest.mark.parametrize("archive", ["train.zip", "train.tar.gz"])
@pytest.mark.parametrize("color_mode", ["rgb", "grayscale"])
def test_streamed_files_are_byte_identical_to_in_memory_arrays(tmp_path, archive, color_mode):
    files, odd = odd_photo_files("kaggle", good_per_class=14)
    # Bad files first and last in the archive too, not only in the middle.
    files = {"train/cat.900.jpg": b"", **files, "train/dog.900.jpg": b"GIF89a broken"}
    raw = folder_raw(tmp_path, files, archive)
    split_params = dict(val_fraction=0.2, test_fraction=0.2, max_per_class=0, seed=3)
    out = tmp_path / "prepared"
    out.mkdir()
    prepared, bad, _ = layouts.prepare(raw, out, 20, color_mode, **split_params)
    assert len(bad) == 2 + 2 * 4
    expected = in_memory_prepare(raw, 20, color_mode, **split_params)
    for name, data in expected.items():
        assert (out / name).read_bytes() == data, name
    assert sorted(path.name for path in out.iterdir()) == sorted([*expected, "classes.json"])  # no scratch left


@pytest.mark.parametrize("kept", [[1, 1, 1, 1, 1, 1], [0, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 1], [0] * 6, [1, 0, 0, 0, 0, 0]],
                         ids=["all", "gaps", "last-only", "none", "first-only"])
def test_row_file_compacts_kept_rows_in_place_to_what_np_save_writes(tmp_path, kept, monkeypatch):
    monkeypatch.setattr(datasets, "CHUNK_BYTES", 2 * 5 * 4 * 3)  # two rows per chunk
    rows = np.random.default_rng(0).integers(0, 256, (6, 5, 4, 3), dtype=np.uint8)
    path = tmp_path / "x_images.npy"
    row_file = datasets.RowFile(path, 6, (5, 4, 3))
    for row in [4, 0, 5, 2, 1, 3]:  # the order of members in an archive, not of rows
        if kept[row]:
            row_file.write(row, rows[row])
    row_file.finish(np.array(kept, bool))
    buffer = io.BytesIO()
    np.save(buffer, rows[np.array(kept, bool)], allow_pickle=False)
    assert path.read_bytes() == buffer.getvalue()


def test_kaggle_competition_bundle_is_read_through_its_inner_train_zip(tmp_path):
    files, odd = odd_photo_files("kaggle")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    test1 = io.BytesIO()
    with zipfile.ZipFile(test1, "w") as zf:
        zf.writestr("test1/1.jpg", encode(pattern_images([0], 24, 3)[0]))
    bundle = {"sampleSubmission.csv": b"id,label\n1,0\n", "test1.zip": test1.getvalue(), "train.zip": inner.getvalue()}
    raw = folder_raw(tmp_path, bundle, "dogs-vs-cats.zip")
    out = tmp_path / "prepared"
    out.mkdir()
    prepared, bad, ignored = layouts.prepare(raw, out, 24, "rgb", **SPLIT_PARAMS)
    assert prepared.classes == ["cat", "dog"]
    assert ignored == ["sampleSubmission.csv", "test1.zip/test1/1.jpg"]  # Kaggle's test images have no labels
    assert sorted(entry["file"] for entry in bad) == sorted(
        f"train.zip/{name}" for name, kind in odd.items() if ODD_PHOTO_OUTCOMES[kind] != "kept")
    assert sum(len(data.labels) for data in prepared.splits.values()) == len(files) - len(bad)
    assert not [path for path in out.iterdir() if path.name.startswith(".scratch")]  # the unpacked train.zip is gone


def test_row_chunks_read_a_memory_mapped_npy_in_order_without_its_mapping(tmp_path):
    array = np.random.default_rng(1).integers(0, 256, (7, 3, 2, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", array)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    for source in (mapped, array):
        chunks = list(datasets.row_chunks(source, max_bytes=3 * 18))
        assert [len(chunk) for chunk in chunks] == [3, 3, 1]
        assert all(not isinstance(chunk, np.memmap) for chunk in chunks)
        assert np.array_equal(np.concatenate(chunks), array)


def test_statistics_in_chunks_give_the_mean_of_the_whole_array(tmp_path, monkeypatch):
    files = image_folder_files(PETS, {"train": 12, "test": 4}, 24)
    out = tmp_path / "prepared"
    out.mkdir()
    prepared, bad, ignored = layouts.prepare(folder_raw(tmp_path, files), out, 24, "rgb", **SPLIT_PARAMS)
    monkeypatch.setattr(datasets, "CHUNK_BYTES", 24 * 24 * 3 * 5)  # five images at a time
    stats = datasets.statistics(prepared, bad, ignored)
    whole = np.asarray(prepared.splits["train"].images).reshape(-1, 3).mean(axis=0, dtype=np.float64)
    assert stats["train_mean_pixel"] == [round(float(v), 3) for v in whole]
    assert stats["image_shape"] == [24, 24, 3] and stats["totals"]["test"] == 8


def test_prepare_of_an_image_archive_holds_memory_for_a_chunk_not_the_dataset(tmp_path, monkeypatch):
    count, size = 240, 64  # 240 x 64 x 64 x 3 = 2.9 MB of uint8 images
    labels = np.arange(count) % 2
    files = {f"train/{PETS[label][:-1]}.{i}.jpg": encode(image)
             for i, (label, image) in enumerate(zip(labels, pattern_images(labels, 32, 3)))}
    files["train/cat.500.jpg"] = b""  # one to squeeze out
    raw = folder_raw(tmp_path, files)
    monkeypatch.setattr(datasets, "CHUNK_BYTES", 2**17)
    out = tmp_path / "prepared"
    out.mkdir()
    tracemalloc.start()
    try:
        prepared, bad, ignored = layouts.prepare(raw, out, size, "rgb", **SPLIT_PARAMS)
        datasets.statistics(prepared, bad, ignored)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    dataset_bytes = count * size * size * 3
    assert len(bad) == 1 and sum(len(data.labels) for data in prepared.splits.values()) == count
    assert peak < dataset_bytes / 3, f"peak {peak} bytes traced for a {dataset_bytes}-byte dataset"


def test_preprocess_stage_reports_each_skipped_photo_and_writes_the_prepared_layout(tmp_path):
    root = Path(__file__).resolve().parents[1]
    settings = yaml.safe_load((root / "params.yaml").read_text())
    settings["datasets"]["cats_vs_dogs"]["preprocess"].update(image_size=32, val_fraction=0.25, test_fraction=0.25)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    params.write_stage_configs(params.load("cats_vs_dogs", tmp_path / "params.yaml"), tmp_path / "config")
    files, odd = odd_photo_files("petimages")
    folder_raw(tmp_path, files, "kagglecatsanddogs_5340.zip")
    result = subprocess.run([sys.executable, str(root / "stages" / "preprocess.py"), "config/preprocess.json", "raw",
                             "prepared", "explore"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "explore" / "bad_images.csv") as f:
        report = {row["file"]: row for row in csv.DictReader(f)}
    skipped = {name: kind for name, kind in odd.items() if ODD_PHOTO_OUTCOMES[kind] != "kept"}
    assert set(report) == set(skipped)
    for name, kind in skipped.items():
        assert ODD_PHOTO_OUTCOMES[kind] in report[name]["reason"] and report[name]["split"] in datasets.SPLITS
    stats = json.loads((tmp_path / "explore" / "stats.json").read_text())
    assert stats["unreadable_images"] == len(skipped) and stats["ignored_files"] == 2
    assert sum(stats["totals"].values()) == len(files) - 2 - len(skipped)
    assert "8 unreadable, 2 non-image files ignored" in result.stdout
    prepared = datasets.load(tmp_path / "prepared")
    assert prepared.classes == ["Cat", "Dog"]
    assert all(data.images.shape[1:] == (32, 32, 3) for data in prepared.splits.values())
    assert sorted(path.name for path in (tmp_path / "prepared").iterdir()) == sorted(
        ["classes.json"] + [f"{split}_{kind}.npy" for split in datasets.SPLITS for kind in ("images", "labels")])
