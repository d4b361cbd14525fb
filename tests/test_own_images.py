"""Your own images, through the real `dvc` CLI: a params.yaml section is the whole dataset.

A folder outside the repository (a directory, then a zip of it) becomes a pipeline of its own;
removing the section touches nothing else; Kaggle's published layouts of MNIST and CIFAR-10 are
read with the download faked at the `kaggle` package's boundary (tests/fake_kaggle).
"""
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import changed_stages, copy_repo, stages_run
from fixtures import CIFAR_CLASSES, encode, pattern_images

pytestmark = pytest.mark.slow

CLASSES = ["daisy", "rose", "tulip"]
PER_CLASS = 16
JUNK = {".DS_Store": b"\x00\x00\x00\x01Bud1", "__MACOSX/rose/._0000.jpg": b"\x00\x05\x16\x07",
        "Thumbs.db": b"\x00" * 64, "readme.txt": b"photos of flowers"}
PIPELINE = ["fetch", "preprocess", "augment", "train", "evaluate", "export"]
FAKE_KAGGLE = Path(__file__).parent / "fake_kaggle"


def make_photos(folder: Path) -> Path:
    """One folder per class, no split folders, mixed sizes and modes, and the junk real archives carry."""
    for c, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True)
        for k, image in enumerate(pattern_images([c] * PER_CLASS, 40, 3, seed=c)):
            (folder / name / f"{k:04d}.jpg").write_bytes(encode(image))
    (folder / "daisy" / "wide.png").write_bytes(encode(np.kron(pattern_images([0], 40, 3)[0], np.ones((3, 5, 1), np.uint8)), "PNG"))
    (folder / "tulip" / "grey.png").write_bytes(encode(pattern_images([2], 40, 1)[0], "PNG"))
    for name, data in JUNK.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def quick_section(path: Path) -> dict:
    """A folder section with the tiny profile's budget (the defaults would fine-tune MobileNetV2 at 224 px)."""
    return {"fetch": {"source": "folder", "path": str(path)},
            "preprocess": {"image_size": 32},
            "augment": {"preview_images": 4},
            "model": {"name": "cnn", "filters": [8, 16]},
            "train": {"epochs": 2, "batch_size": 16},
            "evaluate": {"samples_shown": 8},
            "export": {"formats": ["tflite_float32"], "calibration_images": 8}}


@pytest.mark.extended
def test_a_folder_outside_the_repo_becomes_a_pipeline_and_its_removal_touches_nothing_else(reproduced_repo, tmp_path):
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    photos = make_photos(tmp_path / "elsewhere" / "photos")
    params = repo.params
    params["photos"] = quick_section(photos)
    repo.params = params

    assert stages_run(repo.dvc("repro").stdout) == {f"{stage}@photos" for stage in PIPELINE}
    metrics = repo.metrics("photos")
    assert sorted(metrics["per_class"]) == CLASSES and 0 <= metrics["accuracy"] <= 1
    stats = json.loads((repo.path / "plots/photos/explore/stats.json").read_text())
    assert stats["classes"] == CLASSES
    assert sum(stats["totals"].values()) == 3 * PER_CLASS + 2  # the wide and the grey photo too
    assert stats["ignored_files"] == len(JUNK)
    assert "metrics/photos.json" in repo.dvc("metrics", "show", "--json").stdout
    shown = json.loads(repo.dvc("plots", "show", "--json").stdout)["data"]
    roc = shown["plots/photos/evaluate/roc.json"][0]["content"]
    assert {point["curve"] for point in roc["data"]["values"]} >= set(CLASSES)  # a line per class, none listed in dvc.yaml
    prediction = repo.run(sys.executable, "-m", "imagerec.cli", "predict", "models/photos",
                          str(photos / "rose" / "0000.jpg"), "--json")
    assert json.loads(prediction.stdout.splitlines()[0])["predictions"][0]["label"] in CLASSES  # JSON Lines

    # Nothing changed: nothing runs. A new photo in the folder: configure notices, and photos'
    # fetch is the one stage whose input changed (the rest of its chain follows from fetch's output).
    assert stages_run(repo.dvc("repro").stdout) == set()
    (photos / "rose" / "new.jpg").write_bytes(encode(pattern_images([1], 40, 3, seed=9)[0]))
    repo.dvc("repro", "configure@photos")
    assert changed_stages(repo) == {"fetch@photos"}

    # Removing the section removes its stages and re-runs nothing else.
    del params["photos"]
    repo.params = params
    assert "photos" not in repo.dvc("stage", "list", "--names-only").stdout
    assert stages_run(repo.dvc("repro").stdout) == set()


def test_a_zip_of_the_folder_is_read_the_same_way(pipeline_repo, tmp_path):
    repo = pipeline_repo
    photos = make_photos(tmp_path / "photos")
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(photos.rglob("*")):
            if path.is_file():
                zf.write(path, f"photos/{path.relative_to(photos)}")
    params = repo.params
    params["zipped"] = quick_section(archive)
    repo.params = params
    repo.dvc("repro", "preprocess@zipped")
    stats = json.loads((repo.path / "plots/zipped/explore/stats.json").read_text())
    assert stats["classes"] == CLASSES and stats["ignored_files"] == len(JUNK)


def test_the_shortest_section_gets_the_pretrained_recipe_and_a_bad_path_is_one_line(pipeline_repo, tmp_path):
    repo = pipeline_repo
    photos = make_photos(tmp_path / "photos")
    params = repo.params
    params["short"] = {"fetch": {"source": "folder", "path": str(photos)}}
    repo.params = params
    repo.dvc("repro", "configure@short")
    train = json.loads((repo.path / "data/config/short/train.json").read_text())
    assert train["model"] == {"name": "mobilenet_v2", "pretrained": "imagenet", "dropout": 0.2}
    assert train["train"]["fine_tune"]["layers"] == 54 and train["train"]["epochs"] == 6
    assert json.loads((repo.path / "data/config/short/preprocess.json").read_text())["preprocess"]["image_size"] == 224

    params["short"]["fetch"]["path"] = str(tmp_path / "nowhere")
    repo.params = params
    result = repo.dvc("repro", "fetch@short", check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and len(errors) == 1 and "nowhere" in errors[0], result.stderr
    assert not (repo.path / "data/raw/short").exists()


def test_bad_dataset_name_stops_before_any_stage_with_one_line(pipeline_repo, tmp_path):
    repo = pipeline_repo
    params = repo.params
    params["my photos"] = {"fetch": {"source": "folder", "path": str(tmp_path)}}
    repo.params = params
    result = repo.dvc("repro", check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and len(errors) == 1 and "'my photos' cannot be a dataset name" in errors[0]
    assert not (repo.path / "data/raw").exists()


def _kaggle_fixtures(root: Path) -> None:
    """Kaggle's published layouts: digit-recognizer's train.csv (label,pixel0..pixel783) and
    cifar-10's train.7z (train/1.png ... ) with trainLabels.csv (id,label)."""
    import py7zr

    labels = np.repeat(np.arange(10), 14)
    pixels = pattern_images(labels, 28, 1)[..., 0].reshape(len(labels), -1)
    (root / "digit-recognizer").mkdir(parents=True)
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    rows = [f"{label}," + ",".join(map(str, row)) for label, row in zip(labels, pixels)]
    (root / "digit-recognizer" / "train.csv").write_text("\n".join([header, *rows]) + "\n")

    (root / "cifar-10").mkdir()
    cifar_labels = np.repeat(np.arange(10), 14)  # enough for a stratified validation split of 10 classes
    images = pattern_images(cifar_labels, 32, 3)
    with py7zr.SevenZipFile(root / "cifar-10" / "train.7z", "w") as archive:
        for i, image in enumerate(images, 1):
            archive.writef(io.BytesIO(encode(image, "PNG")), f"train/{i}.png")
    (root / "cifar-10" / "trainLabels.csv").write_text(
        "id,label\n" + "".join(f"{i},{CIFAR_CLASSES[label]}\n" for i, label in enumerate(cifar_labels, 1)))


@pytest.mark.extended
def test_mnist_and_cifar10_from_kaggle_competitions(pipeline_repo, tmp_path):
    repo = pipeline_repo
    _kaggle_fixtures(tmp_path / "kaggle")
    repo.env.update(PYTHONPATH=str(FAKE_KAGGLE), FAKE_KAGGLE_DIR=str(tmp_path / "kaggle"))
    params = repo.params
    params["mnist"]["fetch"] = {"source": "kaggle"}
    params["cifar10"]["fetch"] = {"source": "kaggle"}
    repo.params = params
    repo.dvc("repro", "preprocess@mnist", "preprocess@cifar10")
    mnist = json.loads((repo.path / "plots/mnist/explore/stats.json").read_text())
    assert mnist["classes"] == [str(d) for d in range(10)] and mnist["image_shape"] == [28, 28, 1]
    assert mnist["totals"]["test"] > 0  # carved: the competition's test.csv has no labels
    cifar = json.loads((repo.path / "plots/cifar10/explore/stats.json").read_text())
    assert cifar["classes"] == sorted(CIFAR_CLASSES) and cifar["image_shape"] == [32, 32, 3]
    record = json.loads((repo.path / "data/raw/cifar10/source.json").read_text())
    assert sorted(f["file"] for f in record["files"]) == ["train.7z", "trainLabels.csv"]
    shutil.rmtree(tmp_path / "kaggle")
