"""datasets: a user's images in any common layout, recognised by content, and survey()."""
import io
import json
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import encode, pattern_images, shade_image, write_7z, write_archive, write_tree  # noqa: E402

from imagerec import archives, catalog, datasets, images, layouts, sources  # noqa: E402
from imagerec.errors import ImagerecError  # noqa: E402

FLOWERS = ["daisy", "rose", "tulip"]


def pack(path: Path, files: dict[str, bytes]) -> Path:
    """A zip, tar.gz or 7z of the files, by `path`'s suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (write_7z if path.suffix == ".7z" else write_archive)(path, files)
    return path


def raw_dir(tmp_path: Path, files: dict[str, bytes | dict]) -> Path:
    """A fetch output: each file (bytes, or {member: bytes} packed by its suffix) and source.json."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, content in files.items():
        if isinstance(content, dict):
            pack(raw / name, content)
        else:
            (raw / name).write_bytes(content)
    record = {"dataset": "mine", "source": "folder", "files": [{"file": name, "sha256": "-"} for name in files]}
    (raw / sources.SOURCE_RECORD).write_text(json.dumps(record))
    return raw


def prepare(raw: Path, size: int = 16, color_mode: str = "rgb", val_fraction: float = 0.25, test_fraction: float = 0.25):
    out = raw.parent / "prepared"
    out.mkdir()
    return layouts.prepare(raw, out, size, color_mode, val_fraction, test_fraction, max_per_class=0, seed=0)


def shades(layout: str, classes=FLOWERS, per_class: int = 4, **image) -> dict[str, bytes]:
    """{layout.format(cls=..., k=...): flat image of that class}."""
    return {layout.format(cls=name, k=k): shade_image(c, **image) for c, name in enumerate(classes) for k in range(per_class)}


def assert_labels_match_images(prepared) -> None:
    """Every row's shade is the one its label's class was drawn with: images and labels line up."""
    for split, data in prepared.splits.items():
        shade = np.asarray(data.images).reshape(len(data.labels), -1).mean(axis=1)
        assert np.allclose(shade, 30 + 50 * data.labels, atol=2), split


def totals(prepared) -> dict[str, int]:
    return {split: len(data.labels) for split, data in prepared.splits.items()}


def one_line_error(call, match: str) -> str:
    with pytest.raises(ImagerecError, match=match) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


# --- image folders -----------------------------------------------------------------------------

@pytest.mark.parametrize("archive", ["flowers.zip", "flowers.tar.gz", "flowers.7z"])
def test_class_folders_without_split_folders_in_any_archive(tmp_path, archive):
    folder = write_tree(tmp_path / "flowers", shades("{cls}/{k}.jpg", per_class=8))
    files = {f"flowers/{path.relative_to(folder).as_posix()}": path.read_bytes()
             for path in sorted(folder.rglob("*")) if path.is_file()}
    prepared, bad, ignored = prepare(raw_dir(tmp_path, {archive: files}))
    assert prepared.classes == FLOWERS and bad == [] and ignored == []
    assert totals(prepared) == {"train": 13, "val": 5, "test": 6}  # test, then val, carved from train
    assert_labels_match_images(prepared)
    assert not list((tmp_path / "prepared").glob(".scratch*"))  # the unpacked 7z is gone too


def test_train_val_test_folders_are_the_three_splits(tmp_path):
    files = {**shades("data/train/{cls}/{k}.png", per_class=4), **shades("data/val/{cls}/v{k}.png", per_class=2),
             **shades("data/test/{cls}/t{k}.png", per_class=3)}
    prepared, _, _ = prepare(raw_dir(tmp_path, {"data.zip": files}))
    assert totals(prepared) == {"train": 12, "val": 6, "test": 9}  # nothing carved
    assert_labels_match_images(prepared)


def test_a_valid_folder_alone_is_the_test_split_and_validation_is_carved_from_train(tmp_path):
    files = {**shades("train/{cls}/{k}.png", per_class=8), **shades("valid/{cls}/v{k}.png", per_class=2)}
    raw = raw_dir(tmp_path, {"data.tar.gz": files})
    source = layouts.read_raw(raw)
    assert {pool: len(labels) for pool, labels in source.labels.items()} == {"train": 24, "val": 6}
    prepared, _, _ = prepare(raw)
    assert totals(prepared) == {"train": 18, "val": 6, "test": 6}
    assert_labels_match_images(prepared)


def test_file_name_prefixes_label_and_kaggles_numbered_test_images_are_ignored(tmp_path):
    files = {**shades("train/{cls}.{k}.jpg", classes=["cat", "dog"], per_class=8),
             "test1/1.jpg": shade_image(0), "test1/2.jpg": shade_image(1)}
    prepared, _, ignored = prepare(raw_dir(tmp_path, {"train.zip": files}))
    assert prepared.classes == ["cat", "dog"] and ignored == ["test1/1.jpg", "test1/2.jpg"]
    assert sum(totals(prepared).values()) == 16
    assert_labels_match_images(prepared)


def test_junk_is_skipped_and_counted_never_a_class(tmp_path):
    junk = {"__MACOSX/flowers/daisy/._0.jpg": b"\x00\x05\x16\x07", "flowers/.DS_Store": b"\x00\x00\x00\x01Bud1",
            "flowers/rose/._1.jpg": b"AppleDouble", "flowers/Thumbs.db": b"\x00" * 32, "flowers/desktop.ini": b"[x]",
            "flowers/readme.txt": b"flowers", ".git/config": b"[core]"}
    files = {**shades("flowers/{cls}/{k}.jpg"), **junk}
    prepared, bad, ignored = prepare(raw_dir(tmp_path, {"flowers.zip": files}))
    assert prepared.classes == FLOWERS and bad == []
    assert sorted(ignored) == sorted(junk)
    assert datasets.statistics(prepared, bad, ignored)["ignored_files"] == len(junk)


def test_mixed_sizes_and_colour_modes_are_all_prepared(tmp_path):
    files = shades("pets/{cls}/{k}.png", classes=["cat", "dog"], per_class=6)
    odd = {"pets/cat/gray.png": shade_image(0, mode="L"), "pets/dog/rgba.png": shade_image(1, mode="RGBA"),
           "pets/cat/photo.jpg": shade_image(0, size=300, height=200, fmt="JPEG")}
    prepared, bad, _ = prepare(raw_dir(tmp_path, {"pets.zip": {**files, **odd}}), size=32)
    assert bad == [] and sum(totals(prepared).values()) == 15
    assert all(data.images.shape[1:] == (32, 32, 3) for data in prepared.splits.values())
    assert_labels_match_images(prepared)


def test_a_folder_is_read_walking_regular_files_only(tmp_path):
    folder = write_tree(tmp_path / "flowers", shades("{cls}/{k}.png"))
    (folder / "daisy" / "link.png").symlink_to(folder / "rose" / "0.png")  # would add a rose to daisy
    source = layouts._open(layouts._Tree([folder], tmp_path, "flowers"))
    assert source.classes == FLOWERS and len(source.labels["train"]) == 12


def test_an_archive_three_levels_deep_is_not_expanded(tmp_path):
    innermost = io.BytesIO()
    with zipfile.ZipFile(innermost, "w") as zf:
        zf.writestr("extra/rose/9.png", shade_image(1))
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for name, data in {**shades("{cls}/{k}.png"), "more.zip": innermost.getvalue()}.items():
            zf.writestr(name, data)
    prepared, _, ignored = prepare(raw_dir(tmp_path, {"outer.zip": {"flowers.zip": inner.getvalue()}}))
    assert ignored == ["flowers.zip/more.zip"] and sum(totals(prepared).values()) == 12


# --- csv layouts and npz -----------------------------------------------------------------------

CIFAR_WORDS = ["airplane", "automobile", "bird"]


def kaggle_cifar(count: int = 24, test_count: int = 3) -> dict[str, bytes]:
    """Kaggle's cifar-10 competition download: train.7z (train/1.png ...), trainLabels.csv
    (id,label), test.7z (test/1.png ..., unlabelled) and sampleSubmission.csv (id,label)."""
    labels = [CIFAR_WORDS[i % 3] for i in range(count)]
    train = io.BytesIO()
    write_7z(train, {f"train/{i + 1}.png": shade_image(i % 3) for i in range(count)})
    test = io.BytesIO()
    write_7z(test, {f"test/{i + 1}.png": shade_image(0) for i in range(test_count)})
    rows = "".join(f"{i + 1},{label}\n" for i, label in enumerate(labels))
    return {"train.7z": train.getvalue(), "trainLabels.csv": f"id,label\n{rows}".encode(),
            "test.7z": test.getvalue(),
            "sampleSubmission.csv": ("id,label\n" + "".join(f"{i + 1},cat\n" for i in range(test_count))).encode()}


def test_kaggle_cifar10_bundle_labels_7z_images_by_id(tmp_path):
    bundle = {name: data.encode() if isinstance(data, str) else data for name, data in kaggle_cifar().items()}
    raw = raw_dir(tmp_path, {"cifar-10.zip": bundle})
    assert layouts.detect_format(raw / "cifar-10.zip") == "labels-csv"
    prepared, bad, ignored = prepare(raw)
    assert prepared.classes == CIFAR_WORDS and bad == []
    assert sum(totals(prepared).values()) == 24
    assert ignored == ["test.7z/test/1.png", "test.7z/test/2.png", "test.7z/test/3.png", "sampleSubmission.csv"]
    assert_labels_match_images(prepared)


def test_kaggle_cifar10_as_two_raw_files_train_7z_and_train_labels_csv(tmp_path):
    files = kaggle_cifar()
    prepared, _, ignored = prepare(raw_dir(tmp_path, {"train.7z": files["train.7z"], "trainLabels.csv": files["trainLabels.csv"]}))
    assert prepared.classes == CIFAR_WORDS and ignored == []
    assert_labels_match_images(prepared)


def test_labels_csv_filenames_with_folders_and_extensions(tmp_path):
    files = {f"photos/{'a' if k % 2 else 'b'}/{k}.jpg": shade_image(k % 3, fmt="JPEG") for k in range(24)}
    files["photos/a/1.png"] = shade_image(2)  # another 1.*: "b/1" alone would not say which
    values = [f"b/{k}" if k % 4 == 0 else f"a/{k}.jpg" if k % 2 else f"{k}.jpg" for k in range(24)]
    rows = "".join(f"{value},{FLOWERS[k % 3]}\n" for k, value in enumerate(values)) + "a/1.png,tulip\n"
    prepared, _, ignored = prepare(raw_dir(tmp_path, {"photos.zip": {**files, "labels.csv": f"filename,Label\n{rows}".encode()}}))
    assert prepared.classes == FLOWERS and ignored == [] and sum(totals(prepared).values()) == 25
    assert_labels_match_images(prepared)


def digit_csv(rows: np.ndarray, labels, with_label: bool = True) -> bytes:
    side = int(np.sqrt(rows.shape[1]))
    header = (["label"] if with_label else []) + [f"pixel{i}" for i in range(side * side)]
    lines = [",".join(header)]
    for label, row in zip(labels, rows):
        lines.append(",".join(([str(label)] if with_label else []) + [str(v) for v in row]))
    return ("\n".join(lines) + "\n").encode()


def test_kaggle_digit_recognizer_pixel_csv(tmp_path):
    labels = np.repeat(np.arange(10), 6)
    pixels = pattern_images(labels, 28, 1).reshape(len(labels), 784)
    bundle = {"train.csv": digit_csv(pixels, labels), "test.csv": digit_csv(pixels[:3], [0] * 3, with_label=False),
              "sample_submission.csv": b"ImageId,Label\n1,0\n"}
    raw = raw_dir(tmp_path, {"digit-recognizer.zip": bundle})
    prepared, bad, ignored = prepare(raw, size=28, color_mode="grayscale", val_fraction=0.2, test_fraction=1 / 6)
    assert prepared.classes == [str(d) for d in range(10)] and bad == []
    assert ignored == ["test.csv", "sample_submission.csv"]
    assert totals(prepared) == {"train": 40, "val": 10, "test": 10}  # no test in the file: carved
    train = prepared.splits["train"]
    assert train.images.shape[1:] == (28, 28, 1)
    source_rows = {row.tobytes(): label for row, label in zip(pixels, labels)}
    assert all(source_rows[np.asarray(image).tobytes()] == label for image, label in zip(train.images, train.labels))


def test_npz_without_a_test_split_is_carved_and_labels_name_the_classes(tmp_path):
    y = np.repeat(np.array([12, 3, 7]), 8)
    buffer = io.BytesIO()
    np.savez(buffer, x_train=pattern_images(y, 12, 1)[..., 0], y_train=y)
    prepared, _, ignored = prepare(raw_dir(tmp_path, {"digits.npz": buffer.getvalue(), "readme.txt": b"x"}),
                                   size=12, color_mode="grayscale")
    assert prepared.classes == ["3", "7", "12"] and ignored == ["readme.txt"]
    assert totals(prepared) == {"train": 13, "val": 5, "test": 6}
    test = prepared.splits["test"]
    expected = {image.tobytes(): label for image, label in zip(pattern_images(y, 12, 1)[..., 0], y)}
    assert all(prepared.classes[label] == str(expected[np.asarray(image)[..., 0].tobytes()])
               for image, label in zip(test.images, test.labels))



def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


IMAGES = np.zeros((1000, 8, 8), np.uint8)


@pytest.mark.parametrize("arrays", [
    {"x_train": np.zeros(64, np.uint8), "y_train": np.zeros(64, np.uint8)},  # 1-D images
    {"x_train": IMAGES[:10], "y_train": np.zeros(20, np.uint8)},  # more labels than images
    {"x_train": IMAGES, "y_train": np.zeros(500, np.uint8)},  # fewer labels: none silently dropped
    {"x_train": np.full((10, 8, 8), 2.5e8), "y_train": np.zeros(10, np.uint8)},  # float64 images
    {"x_train": np.zeros((10, 8, 8, 5), np.uint8), "y_train": np.zeros(10, np.uint8)},  # five channels
    {"x_train": np.zeros((10, 0, 8), np.uint8), "y_train": np.zeros(10, np.uint8)},  # no pixels
    {"x_train": IMAGES[:10], "y_train": np.linspace(0, 1, 10)},  # float labels
    {"x_train": IMAGES[:10], "y_train": np.zeros(10, np.uint8), "x_test": IMAGES[:3], "y_test": np.zeros(2, np.uint8)},
])
def test_npz_arrays_of_the_wrong_rank_dtype_or_length_are_one_line_and_write_nothing(tmp_path, arrays):
    out = tmp_path / "prepared"
    out.mkdir()
    with pytest.raises(ImagerecError, match=r"digits.npz: x_(train|test) must be uint8 \(N, H, W\[, 1, 3 or 4\]\)") as err:
        layouts.prepare(raw_dir(tmp_path, {"digits.npz": npz(**arrays)}), out, 8, "grayscale", 0.2, 0.2, 0, seed=0)
    assert "\n" not in str(err.value) and list(out.iterdir()) == []


class _Exploit:
    def __reduce__(self):
        return (exec, ("raise SystemExit('unpickled')",))


def test_cifar_python_tarball_other_than_the_official_one_is_never_unpickled(tmp_path, monkeypatch):
    assert layouts.CIFAR10_PYTHON_SHA256 == catalog.DATASET_SOURCES["cifar10"]["toronto"].sha256
    payload = pickle.dumps(_Exploit())
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as tf:
        for name in layouts.CIFAR_BATCHES:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled an unofficial file"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled an unofficial file"))
    raw = raw_dir(tmp_path, {"cifar-10-python.tar.gz": tar.getvalue()})
    assert layouts.detect_format(raw / "cifar-10-python.tar.gz") == "cifar-python"
    one_line_error(lambda: prepare(raw), r"^cifar-10-python.tar.gz: .*refusing to unpickle")


# --- bad input: one line naming the file, nothing written --------------------------------------

@pytest.mark.parametrize("files, match", [
    ({"notes/readme.txt": b"x", "data.csv": b"a,b\n1,2\n"}, r"^mine.zip: no labelled training images: it holds no image files"),
    ({"flowers/daisy/1.jpg": shade_image(0), "flowers/daisy/2.jpg": shade_image(0)}, r"^mine.zip: found only one class"),
    ({"1.jpg": shade_image(0), "2.jpg": shade_image(1)}, r"^mine.zip: layout not recognised: 2 images .*accepted layouts"),
    ({**shades("train/{cls}/{k}.png"), **shades("test/{cls}/{k}.png", classes=FLOWERS[:2], per_class=2)},
     r"the test split has no images of class tulip"),
], ids=["no-images", "one-class", "unrecognised", "class-missing-from-test"])
def test_bad_datasets_are_one_line_errors_and_write_nothing(tmp_path, files, match):
    raw = raw_dir(tmp_path, {"mine.zip": files})
    before = sorted(tmp_path.rglob("*"))
    one_line_error(lambda: prepare(raw), match)
    outside = [path for path in tmp_path.rglob("*") if "prepared" not in path.relative_to(tmp_path).parts]
    assert sorted(outside) == before  # partial files only in the output folder (a temporary one, in the stage)
    assert not any((tmp_path / "prepared").glob(".scratch*"))


@pytest.mark.parametrize("make", ["zip", "folder"])
def test_an_empty_class_folder_without_split_folders_is_an_error_naming_it(tmp_path, make):
    files = shades("flowers/{cls}/{k}.png", classes=["daisy", "rose"])
    if make == "folder":
        folder = write_tree(tmp_path / "flowers-dir", files)
        (folder / "flowers" / "tulip").mkdir()
        one_line_error(lambda: layouts.survey(folder), r"class folder 'flowers/tulip' holds no images")
    else:
        raw = raw_dir(tmp_path, {"flowers.zip": files})
        with zipfile.ZipFile(raw / "flowers.zip", "a") as zf:
            zf.writestr(zipfile.ZipInfo("flowers/tulip/"), b"")
        one_line_error(lambda: prepare(raw), r"^flowers.zip: class folder 'flowers/tulip' holds no images")


def labels_bundle(csv_text: str, count: int = 6) -> dict[str, bytes]:
    return {**{f"train/{i + 1}.png": shade_image(i % 2) for i in range(count)}, "trainLabels.csv": csv_text.encode()}


@pytest.mark.parametrize("csv_text, match", [
    ("id,label\n1,a\n2,b\n3,a\n4,b\n5,a\n6,b\n7,a\n", r"^trainLabels.csv: line 8 names image '7', which is not in the dataset"),
    ("picture,kind\n1,a\n", r"^trainLabels.csv: columns \['picture', 'kind'\] not recognised: "
                             r".*image column \(filename, .*id.*label column \(label, class, category\)"),
    ("id,label\n1,a\n2,b\n3,a\n", r"^trainLabels.csv: 3 images have no label row, e.g. train/4.png"),
    ("", r"^trainLabels.csv: empty csv"),
    ("id,label\n", r"^trainLabels.csv: empty csv"),
], ids=["missing-image", "columns", "unlabelled", "empty", "header-only"])
def test_labels_csv_problems_are_one_line_errors_naming_the_csv(tmp_path, csv_text, match):
    one_line_error(lambda: prepare(raw_dir(tmp_path, {"cifar.zip": labels_bundle(csv_text)})), match)


def test_source_json_listing_a_missing_file_is_an_error(tmp_path):
    raw = raw_dir(tmp_path, {"train.zip": shades("{cls}/{k}.png")})
    (raw / "train.zip").unlink()
    one_line_error(lambda: prepare(raw), r"source.json: lists train.zip, which is missing")


@pytest.mark.parametrize("archive", ["bomb.tar.gz", "bomb.zip", "bomb.7z"])
def test_an_archive_with_more_entries_than_the_cap_is_refused(tmp_path, monkeypatch, archive):
    monkeypatch.setattr(archives, "MAX_MEMBERS", 50)
    raw = raw_dir(tmp_path, {archive: {f"x/{i}.txt": b"" for i in range(51)}})
    one_line_error(lambda: prepare(raw), rf"^{archive}: refusing archive: more than 50 entries")


def test_an_archive_declaring_more_bytes_than_the_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "MAX_TOTAL_BYTES", 1000)
    raw = raw_dir(tmp_path, {"big.tar.gz": {f"{c}/{i}.png": bytes(300) for c in "ab" for i in range(2)}})
    one_line_error(lambda: prepare(raw), r"^big.tar.gz: refusing archive: declares more than 1000 bytes")


# --- survey ------------------------------------------------------------------------------------

def test_survey_of_a_folder_counts_without_decoding(tmp_path, monkeypatch):
    files = {**shades("{cls}/{k}.png", per_class=5), "rose/big.jpg": shade_image(1, size=300, height=200, fmt="JPEG"),
             "readme.txt": b"x"}
    folder = write_tree(tmp_path / "flowers", files)
    monkeypatch.setattr(images, "decode", lambda *a, **k: pytest.fail("survey decoded an image"))
    assert layouts.survey(folder) == {"images": 16, "classes": 3, "median_side": 16.0}
    assert layouts.survey(folder, sample=3)["median_side"] == 16.0


@pytest.mark.parametrize("name", ["flowers.zip", "flowers.7z"])
def test_survey_of_an_archive_reads_up_to_sample_headers(tmp_path, name):
    files = {**shades("{cls}/{k}.png", per_class=2, size=64, height=40), **shades("{cls}/s{k}.png", per_class=1, size=20)}
    path = pack(tmp_path / name, files)
    assert layouts.survey(path) == {"images": 9, "classes": 3, "median_side": 40.0}  # min(64, 40)


def test_survey_of_a_labels_csv_layout_and_of_a_pixel_csv(tmp_path):
    cifar = kaggle_cifar(count=6)
    assert layouts.survey(pack(tmp_path / "c.zip", cifar)) == {"images": 6, "classes": 3, "median_side": 16.0}
    labels = np.repeat(np.arange(3), 4)
    digits = tmp_path / "train.csv"
    digits.write_bytes(digit_csv(pattern_images(labels, 28, 1).reshape(12, 784), labels))
    assert layouts.survey(digits) == {"images": 12, "classes": 3, "median_side": 28.0}


@pytest.mark.parametrize("files, match", [
    (None, r"no such file or folder"),
    ({"a/readme.txt": b"x"}, r"no labelled training images: it holds no image files"),
    ({"1.png": shade_image(0), "2.png": shade_image(1)}, r"layout not recognised"),
], ids=["missing", "no-images", "unrecognised"])
def test_survey_errors_are_the_ones_prepare_gives(tmp_path, files, match):
    path = tmp_path / "mine"
    if files is not None:
        write_tree(path, files)
    one_line_error(lambda: layouts.survey(path), match)


def test_an_old_single_file_source_json_is_still_read(tmp_path):
    raw = raw_dir(tmp_path, {"flowers.zip": shades("{cls}/{k}.png")})
    (raw / sources.SOURCE_RECORD).write_text(json.dumps({"file": "flowers.zip", "sha256": "-"}))
    assert layouts.read_raw(raw).classes == FLOWERS


def test_image_fixture_bytes_are_real_images():
    assert encode(pattern_images([0], 8, 3)[0])[:2] == b"\xff\xd8"


# --- passes over an archive ----------------------------------------------------------------------

def labelled_by_csv(count: int = 12) -> dict[str, bytes]:
    return labels_bundle("id,label\n" + "".join(f"{i + 1},{'ab'[i % 2]}\n" for i in range(count)), count)


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz", ".7z"])
@pytest.mark.parametrize("layout", ["class-folders", "labels-csv", "kaggle-bundle"])
def test_preprocess_passes_over_each_archive_at_most_twice(tmp_path, monkeypatch, layout, suffix):
    """One listing (which also takes out csv files and nested archives) and one pass decoding the
    images: a tar.gz is decompressed at most twice, however its dataset is laid out."""
    files = {"class-folders": lambda: shades("{cls}/{k}.png", per_class=8), "labels-csv": labelled_by_csv,
             "kaggle-bundle": kaggle_cifar}[layout]()
    passes = {}
    for name in ("list_entries", "iter_members"):
        def counted(path, *args, _read=getattr(archives, name), **kwargs):
            passes[Path(path)] = passes.get(Path(path), 0) + 1
            return _read(path, *args, **kwargs)
        monkeypatch.setattr(archives, name, counted)
    prepared, _, _ = prepare(raw_dir(tmp_path, {f"data{suffix}": files}))
    assert_labels_match_images(prepared)
    assert passes and max(passes.values()) <= 2, passes
