"""export: every format is written, runs, and agrees with the Keras model it came from."""
from pathlib import Path

import numpy as np
import pytest

import fixtures
from imagerec import export, inference
from imagerec.errors import ImagerecError

FORMATS = ["saved_model", "tflite_float32", "tflite_dynamic_range", "tflite_int8"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model_dir = fixtures.write_tiny_model(tmp_path_factory.mktemp("model"))
    out = tmp_path_factory.mktemp("export")
    labels = np.repeat(np.arange(10), 4)
    calibration = fixtures.pattern_images(labels, 28, 1, seed=3)
    return export.export(model_dir, out, FORMATS, calibration), out


@pytest.fixture(scope="module")
def test_images():
    labels = np.repeat(np.arange(10), 3)
    return fixtures.pattern_images(labels, 28, 1, seed=5).astype(np.float32), labels


def size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def test_every_format_is_written_beside_a_loadable_model_directory(exported):
    written, out = exported
    assert set(written) == {"keras", *FORMATS}
    for path in written.values():
        assert size_bytes(path) > 0
    model, card = inference.load(out)  # the export directory is a model directory itself
    assert card["classes"] == fixtures.TINY_CLASSES
    assert size_bytes(written["tflite_dynamic_range"]) < size_bytes(written["tflite_float32"])


def test_float_exports_give_the_keras_probabilities(exported, test_images):
    written, _ = exported
    images, _ = test_images
    reference = inference.load_exported("keras", written["keras"])(images)
    for fmt in ("saved_model", "tflite_float32"):
        np.testing.assert_allclose(inference.load_exported(fmt, written[fmt])(images), reference, atol=1e-4)


@pytest.mark.parametrize("fmt", ["tflite_dynamic_range", "tflite_int8"])
def test_quantized_exports_keep_the_predicted_classes(exported, test_images, fmt):
    written, _ = exported
    images, labels = test_images
    keras_accuracy = inference.accuracy(inference.load_exported("keras", written["keras"]), images, labels, batch_size=7)
    assert keras_accuracy >= 0.9  # the tiny model has learned the patterns
    quantized = inference.accuracy(inference.load_exported(fmt, written[fmt], threads=1), images, labels, batch_size=7)
    assert abs(quantized - keras_accuracy) <= 0.1


def test_tflite_model_accepts_changing_batch_sizes(exported, test_images):
    written, _ = exported
    images, _ = test_images
    run = inference.load_exported("tflite_float32", written["tflite_float32"])
    assert run(images[:1]).shape == (1, 10)
    assert run(images[:5]).shape == (5, 10)
    assert run(images[:1]).shape == (1, 10)


def test_tflite_runs_on_every_usable_core_unless_told(exported, monkeypatch):
    written, _ = exported
    made = []
    interpreter = inference.tf.lite.Interpreter
    monkeypatch.setattr(inference.tf.lite, "Interpreter", lambda **kw: made.append(kw["num_threads"]) or interpreter(**kw))
    monkeypatch.setattr(inference.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    inference.load_exported("tflite_int8", written["tflite_int8"])
    inference.load_exported("tflite_int8", written["tflite_int8"], threads=1)
    assert made == [3, 1]  # TFLite's own default would be one thread


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_classifier_runs_each_exported_format_with_the_keras_answers(exported, test_images, fmt):
    _, out = exported
    images, _ = test_images
    classifier = inference.Classifier(out)
    reference = classifier.rank(list(images[:6]), 1)
    classifier.use(fmt)
    assert classifier.format == fmt
    assert [top[0]["label"] for top in classifier.rank(list(images[:6]), 1)] == [top[0]["label"] for top in reference]


def test_auto_takes_only_formats_that_lose_at_most_0_2_points_and_times_them(exported, monkeypatch):
    _, out = exported
    timed = []
    load_exported = inference.load_exported
    monkeypatch.setattr(inference, "load_exported", lambda fmt, *args: timed.append(fmt) or load_exported(fmt, *args))
    classifier = inference.Classifier(out)
    classifier.use("auto", {"saved_model": 0.0, "tflite_float32": -0.2, "tflite_dynamic_range": -0.21, "tflite_int8": 1.0})
    assert timed == ["saved_model", "tflite_float32", "tflite_int8"]
    assert classifier.format in ["keras", *timed]
    classifier.use("auto", {})  # no export metrics: nothing is known to be as accurate
    assert classifier.format == "keras"


def test_a_format_that_is_not_there_is_one_line(exported):
    _, out = exported
    model_only = inference.Classifier(out)
    model_only.model_dir = out / "elsewhere"
    with pytest.raises(ImagerecError, match=r"elsewhere: no tflite_int8 here \(model_int8.tflite missing"):
        model_only.use("tflite_int8")
