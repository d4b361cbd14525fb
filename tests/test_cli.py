"""`imagerec predict`: labels for good images, one `error: ...` line and exit code 2 for bad input."""
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import pytest

import fixtures
from imagerec import cli, inference, models

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return fixtures.write_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture
def two_images(tmp_path) -> list[Path]:
    (tmp_path / "two.png").write_bytes(fixtures.image_of(2, "PNG"))
    (tmp_path / "five.jpg").write_bytes(fixtures.image_of(5, "JPEG"))
    return [tmp_path / "two.png", tmp_path / "five.jpg"]


def run_main(capsys, *argv) -> tuple[int, str, str]:
    try:
        cli.main([str(a) for a in argv])
        code = 0
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def run_subprocess(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imagerec.cli", *map(str, argv)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_predict_prints_the_right_label_for_a_png_and_a_jpeg(model_dir, two_images, capsys):
    code, out, err = run_main(capsys, "predict", model_dir, *two_images, "--top-k", "2")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(p) for p in two_images]
    assert [line.split(": ")[1].split()[0] for line in lines] == ["two", "five"]
    assert all(line.count(",") == 1 for line in lines)  # top 2: "label p, label p"


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_predict_json_lists_top_k_labels_most_probable_first(model_dir, two_images, capsys):
    code, out, _ = run_main(capsys, "predict", model_dir, *two_images, "--top-k", "3", "--json")
    results = json_lines(out)
    assert code == 0
    assert [r["file"] for r in results] == [str(p) for p in two_images]
    for result, label in zip(results, ["two", "five"]):
        probabilities = [p["probability"] for p in result["predictions"]]
        assert result["predictions"][0]["label"] == label
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)


def test_top_k_above_the_number_of_classes_shows_every_class(model_dir, two_images, capsys):
    code, out, _ = run_main(capsys, "predict", model_dir, two_images[0], "--top-k", "50", "--json")
    predictions = json_lines(out)[0]["predictions"]
    assert code == 0
    assert sorted(p["label"] for p in predictions) == sorted(fixtures.TINY_CLASSES)
    assert sum(p["probability"] for p in predictions) == pytest.approx(1.0)


def test_a_larger_rgb_image_is_resized_and_made_grayscale_like_the_model(model_dir, tmp_path, capsys):
    (tmp_path / "six.png").write_bytes(fixtures.image_of(6, "PNG", size=56, channels=3))
    code, out, _ = run_main(capsys, "predict", model_dir, tmp_path / "six.png", "--json")
    assert code == 0 and json_lines(out)[0]["predictions"][0]["label"] == "six"


def test_a_folder_stands_for_its_image_files_sorted(model_dir, tmp_path, capsys):
    for name, label in [("b.jpg", 3), ("a.PNG", 4), ("c.png", 7)]:
        (tmp_path / name).write_bytes(fixtures.image_of(label, "JPEG" if name.endswith("jpg") else "PNG"))
    (tmp_path / "notes.txt").write_text("not an image, and not named like one")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(fixtures.image_of(8))
    code, out, err = run_main(capsys, "predict", model_dir, tmp_path, "--json")
    assert (code, err) == (0, "")
    assert [(Path(r["file"]).name, r["predictions"][0]["label"]) for r in json_lines(out)] == [
        ("a.PNG", "four"), ("b.jpg", "three"), ("c.png", "seven")]


def test_a_bad_image_among_good_ones_is_reported_and_the_good_ones_still_predicted(model_dir, two_images, capsys):
    missing = two_images[0].parent / "missing.png"
    code, out, err = run_main(capsys, "predict", model_dir, two_images[0], missing, two_images[1])
    assert code == 2
    assert err.splitlines() == [f"error: {missing}: no such file"]
    assert [line.split(": ")[1].split()[0] for line in out.splitlines()] == ["two", "five"]


def test_predict_on_a_missing_file_exits_2_with_one_line(model_dir, tmp_path):
    result = run_subprocess("predict", model_dir, tmp_path / "missing.png")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'missing.png'}: no such file"]
    assert result.stdout == ""


def test_predict_prints_labels_and_exits_0_as_a_real_process(model_dir, two_images):
    result = run_subprocess("predict", model_dir, *two_images)
    assert (result.returncode, result.stderr) == (0, "")
    assert [line.split(": ")[1].split()[0] for line in result.stdout.splitlines()] == ["two", "five"]


def test_predict_on_a_text_file_named_jpg_exits_2_with_one_line(model_dir, tmp_path, capsys):
    (tmp_path / "photo.jpg").write_text("hello, I am text\n")
    code, out, err = run_main(capsys, "predict", model_dir, tmp_path / "photo.jpg")
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"error: {tmp_path / 'photo.jpg'}: not an image (unknown format)"]



def test_predict_on_a_fifo_exits_2_at_once_instead_of_waiting_for_a_writer(model_dir, tmp_path, capsys):
    os.mkfifo(tmp_path / "photo.jpg")
    code, out, err = run_main(capsys, "predict", model_dir, tmp_path / "photo.jpg")
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"error: {tmp_path / 'photo.jpg'}: not a regular file (a FIFO, socket or device)"]

def test_predict_on_a_truncated_png_exits_2_with_one_line(model_dir, tmp_path, capsys):
    data = fixtures.image_of(3, "PNG", size=64)
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    code, out, err = run_main(capsys, "predict", model_dir, tmp_path / "cut.png")
    [line] = err.splitlines()
    assert (code, out) == (2, "")
    assert line.startswith(f"error: {tmp_path / 'cut.png'}: cannot decode:")


def test_predict_on_an_empty_file_exits_2_with_one_line(model_dir, tmp_path, capsys):
    (tmp_path / "empty.png").write_bytes(b"")
    code, _, err = run_main(capsys, "predict", model_dir, tmp_path / "empty.png")
    assert code == 2 and err.splitlines() == [f"error: {tmp_path / 'empty.png'}: empty file"]


def test_predict_on_a_folder_without_images_exits_2_with_one_line(model_dir, tmp_path, capsys):
    (tmp_path / "readme.txt").write_text("no images here")
    code, _, err = run_main(capsys, "predict", model_dir, tmp_path)
    [line] = err.splitlines()
    assert code == 2 and line.startswith(f"error: {tmp_path}: a folder with no image files")


@pytest.mark.parametrize("missing", [models.MODEL_FILE, models.CARD_FILE])
def test_predict_with_an_incomplete_model_dir_exits_2_with_one_line(model_dir, two_images, tmp_path, capsys, missing):
    incomplete = tmp_path / "model"
    incomplete.mkdir()
    for name in {models.MODEL_FILE, models.CARD_FILE} - {missing}:
        (incomplete / name).write_bytes((model_dir / name).read_bytes())
    code, out, err = run_main(capsys, "predict", incomplete, *two_images)
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"error: {incomplete}: incomplete model directory ({missing} missing)"]


def unknown_layer_class(model: bytes) -> bytes:
    """The same .keras zip with its Dense layers renamed to a class no Keras has."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(model)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data.replace(b'"Dense"', b'"NoSuchLayer"') if info.filename == "config.json" else data)
    return out.getvalue()


@pytest.mark.parametrize("card, damage, expected", [
    (b"{not json", None, "model.json: not valid JSON ("),
    (b"\xff\xfe{\x00}\x00", None, "model.json: not valid JSON ("),
    (b'{"classes": 3}', None, "model.json: needs classes, input_shape and color_mode"),
    (None, lambda model: model[:len(model) // 2], "model.keras: not a .keras file (damaged or truncated?)"),
    (None, unknown_layer_class, "model.keras: cannot load: "),
])
def test_predict_with_a_malformed_card_or_model_exits_2_with_one_line(model_dir, two_images, tmp_path, capsys,
                                                                       card, damage, expected):
    model = (model_dir / models.MODEL_FILE).read_bytes()
    (tmp_path / models.MODEL_FILE).write_bytes(damage(model) if damage else model)
    (tmp_path / models.CARD_FILE).write_bytes(card or (model_dir / models.CARD_FILE).read_bytes())
    code, _, err = run_main(capsys, "predict", tmp_path, *two_images)
    [line] = err.splitlines()
    assert code == 2 and line.startswith(f"error: {tmp_path}/{expected}"), line
    assert len(line) < 400


def test_predict_with_a_card_that_does_not_fit_the_model_exits_2(model_dir, two_images, tmp_path, capsys):
    (tmp_path / models.MODEL_FILE).write_bytes((model_dir / models.MODEL_FILE).read_bytes())
    (tmp_path / models.CARD_FILE).write_text(json.dumps({**fixtures.TINY_CARD, "classes": ["cat", "dog"]}))
    code, _, err = run_main(capsys, "predict", tmp_path, *two_images)
    [line] = err.splitlines()
    assert code == 2 and "does not match the model" in line


def test_predict_refuses_a_model_with_a_lambda_layer(two_images, tmp_path):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda x: x * 2),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    models.save(model, tmp_path, fixtures.TINY_CARD)
    result = run_subprocess("predict", tmp_path, *two_images)
    [line] = result.stderr.splitlines()
    assert (result.returncode, result.stdout) == (2, "")
    assert line == (f"error: {tmp_path / models.MODEL_FILE}: refused to load: it holds code to run (a Lambda layer), "
                    "which safe mode refuses; rebuild the model without it")


@pytest.mark.parametrize("k", ["0", "-1"])
def test_predict_with_top_k_below_1_exits_2_with_one_line(model_dir, two_images, capsys, k):
    code, out, err = run_main(capsys, "predict", model_dir, *two_images, "--top-k", k)
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"error: --top-k must be at least 1, not {k}"]


def test_a_usage_mistake_is_one_error_line_too(capsys):
    code, _, err = run_main(capsys, "predict", "model-dir-but-no-image")
    assert code == 2
    assert err.splitlines() == ["error: the following arguments are required: IMAGE (see imagerec predict --help)"]


def test_predict_help_says_what_a_bad_image_does(capsys):
    code, out, _ = run_main(capsys, "predict", "--help")
    assert code == 0
    assert "does not stop the others" in " ".join(out.split())


def test_a_folder_of_many_images_streams_in_batches_and_reports_its_speed(model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(inference.Classifier, "BATCH_SIZE", 4)
    digits = [d % 10 for d in range(11)]
    for k, digit in enumerate(digits):
        (tmp_path / f"{k:02d}.png").write_bytes(fixtures.image_of(digit))
    (tmp_path / "05.png").write_bytes(b"not a png")
    code, out, err = run_main(capsys, "predict", model_dir, tmp_path, "--json")
    results = json_lines(out)
    assert code == 2 and [Path(r["file"]).name for r in results] == [f"{k:02d}.png" for k in range(11) if k != 5]
    assert [r["predictions"][0]["label"] for r in results] == [fixtures.TINY_CLASSES[d] for k, d in enumerate(digits) if k != 5]
    [error, speed] = err.splitlines()
    assert error == f"error: {tmp_path / '05.png'}: not an image (unknown format)"
    assert re.fullmatch(r"11 images in [0-9.]+ s \([0-9.]+ images/s\), 1 unreadable", speed)
