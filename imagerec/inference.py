"""Using a trained model: the one safe way to load it with its card, input checks, batched
prediction with test-time augmentation, and the exported formats (SavedModel, TFLite) behind the
same call. evaluate, export, `imagerec predict` and `imagerec serve` all go through here; none of
them needs the training code.

A runner is any `run(batch) -> class probabilities` over a float32 batch of uint8-range pixels:
a Keras model (`keras_runner`), a SavedModel or a TFLite file (`load_exported`).
"""
import os
import zipfile
from pathlib import Path
from typing import Callable, get_args

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from . import images  # noqa: E402
from .errors import ImagerecError  # noqa: E402
from .files import read_json  # noqa: E402
from .models import CARD_FILE, MODEL_FILE  # noqa: E402
from .params import TestTimeAugmentation  # noqa: E402

CHANNELS = {"grayscale": 1, "rgb": 3}
# What a model directory may hold besides model.keras: the export stage's formats (exports/X).
EXPORTED_FILES = {
    "saved_model": "saved_model",
    "tflite_float32": "model_float32.tflite",
    "tflite_dynamic_range": "model_dynamic_range.tflite",  # int8 weights, float activations
    "tflite_int8": "model_int8.tflite",  # int8 weights and activations, float input/output
}
FORMATS = ("keras", *EXPORTED_FILES)
MAX_ACCURACY_LOSS_POINTS = 0.2  # what "auto" lets a faster format lose against the Keras model
TTA_MODES = get_args(TestTimeAugmentation)
Runner = Callable[[np.ndarray], np.ndarray]


def _one_line(err: Exception, limit: int = 200) -> str:
    return " ".join(str(err).split())[:limit] or type(err).__name__


def load_keras(path: Path) -> keras.Model:
    """A .keras file, loaded with Keras' safe mode: a model that needs arbitrary code (a Lambda
    layer) is refused; so is a damaged file or one naming a layer this Keras does not know.
    Without its optimizer (compile=False): predicting needs none, and a model trained with
    imagerec's own schedule (training.TriangleSchedule) then loads without the training code."""
    path = Path(path)
    if not zipfile.is_zipfile(path):  # Keras reports a truncated file as "File not found"
        raise ImagerecError(f"{path}: not a .keras file (damaged or truncated?)")
    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as err:
        if "safe_mode" in str(err):  # Keras' own text runs to ~500 characters
            raise ImagerecError(f"{path}: refused to load: it holds code to run (a Lambda layer), which "
                                "safe mode refuses; rebuild the model without it") from None
        raise ImagerecError(f"{path}: cannot load: {_one_line(err)}") from None


def load(model_dir: Path) -> tuple[keras.Model, dict]:
    """A model directory (model.keras + model.json): the model and its card, checked against
    each other, or one ImagerecError line saying what is wrong."""
    model_dir = Path(model_dir)
    for name in (MODEL_FILE, CARD_FILE):
        if not (model_dir / name).is_file():
            raise ImagerecError(f"{model_dir}: incomplete model directory ({name} missing)")
    try:
        card = read_json(model_dir / CARD_FILE)
    except ValueError as err:  # UnicodeDecodeError included
        raise ImagerecError(f"{model_dir / CARD_FILE}: not valid JSON ({_one_line(err, 120)})") from None
    try:
        classes = [str(name) for name in card["classes"]]
        size, channels = int(card["input_shape"][0]), CHANNELS[card["color_mode"]]
    except (KeyError, IndexError, TypeError, ValueError, OverflowError):
        raise ImagerecError(f"{model_dir / CARD_FILE}: needs classes, input_shape and color_mode "
                            "(grayscale or rgb)") from None
    model = load_keras(model_dir / MODEL_FILE)
    if tuple(model.input_shape[1:]) != (size, size, channels) or model.output_shape[-1] != len(classes):
        raise ImagerecError(
            f"{model_dir}: model.json ({len(classes)} classes, {card['color_mode']} {size}x{size}) does not "
            f"match the model (input {model.input_shape[1:]}, {model.output_shape[-1]} outputs)")
    return model, card


def keras_runner(model: keras.Model) -> Runner:
    # Calling the model on whole batches: model.predict is slow on CPU for this.
    return lambda batch: np.asarray(model(tf.constant(batch, tf.float32), training=False))


def predict(run: Runner, pixels: np.ndarray, batch_size: int, tta: str = "none") -> np.ndarray:
    """Class probabilities (float64, rows summing to 1) of uint8-range images, batch by batch.

    Test-time augmentation:
    - "flip" averages each image's probabilities with its mirror image's (for models trained
      with horizontal flips);
    - "flip_translate" (airbench's) averages that, at half weight, with the flip average of the
      image shifted one pixel up-left and one pixel down-right (borders reflected);
    - "translate" is flip_translate without the mirror images, for what a flip changes (digits)."""
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}")
    mirror, shifts = tta in ("flip", "flip_translate"), tta in ("flip_translate", "translate")

    def view(batch):  # the image's probabilities, averaged with its mirror image's where the mode says
        if not mirror:
            return run(batch)
        return (run(batch) + run(np.ascontiguousarray(batch[:, :, ::-1]))) / 2

    out = []
    for start in range(0, len(pixels), batch_size):
        batch = np.asarray(pixels[start:start + batch_size], dtype=np.float32)
        if not shifts:
            probabilities = view(batch)
        else:
            height, width = batch.shape[1:3]
            padded = np.pad(batch, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
            shifted = [padded[:, :height, :width], padded[:, 2:height + 2, 2:width + 2]]
            probabilities = (view(batch) + sum(view(np.ascontiguousarray(s)) for s in shifted) / 2) / 2
        out.append(np.asarray(probabilities))
    probabilities = np.concatenate(out).astype(np.float64)
    return probabilities / probabilities.sum(axis=1, keepdims=True)  # exact sums after float32 softmax


def accuracy(run: Runner, pixels: np.ndarray, labels: np.ndarray, batch_size: int) -> float:
    return float((predict(run, pixels, batch_size).argmax(axis=1) == labels).mean())


def choose_format(model_dir: Path, keras_model: keras.Model, accuracy_changes: dict[str, float], batch: np.ndarray,
                  threads: int | None = None) -> tuple[str, Runner]:
    """The fastest format in `model_dir` whose test accuracy, as the export stage measured it
    (`accuracy_changes`: format -> points against the Keras model), is at most
    MAX_ACCURACY_LOSS_POINTS lower; timed here, on this machine, on `batch`. Keras when none is."""
    import time

    candidates = {"keras": keras_runner(keras_model)}
    for fmt, name in EXPORTED_FILES.items():
        change = accuracy_changes.get(fmt)
        if (Path(model_dir) / name).exists() and isinstance(change, (int, float)) and change >= -MAX_ACCURACY_LOSS_POINTS:
            candidates[fmt] = load_exported(fmt, Path(model_dir) / name, threads)
    if len(candidates) == 1:
        return "keras", candidates["keras"]
    seconds = {}
    for fmt, run in candidates.items():
        run(batch)  # the first call builds graphs and allocates
        started = time.perf_counter()
        for _ in range(3):
            run(batch)
        seconds[fmt] = time.perf_counter() - started
    fastest = min(seconds, key=seconds.get)
    return fastest, candidates[fastest]


class Classifier:
    """A model dir ready for use: decodes images the way its card says and ranks its classes.

    Predictions run on the Keras model until `use` picks one of the exported files beside it
    (exports/X). The Keras model stays loaded whatever runs: the card is checked against it, and
    Grad-CAM needs its gradients."""

    BATCH_SIZE = 32

    def __init__(self, model_dir: Path):
        self.model_dir = Path(model_dir)
        self.model, self.card = load(model_dir)
        self.classes = [str(name) for name in self.card["classes"]]
        self.size, self.color_mode = int(self.card["input_shape"][0]), self.card["color_mode"]
        self.dataset = self.card.get("dataset")
        self.format, self.run = "keras", keras_runner(self.model)

    def use(self, fmt: str, accuracy_changes: dict[str, float] | None = None) -> None:
        """Run predictions in `fmt`: "keras", an exported format, or "auto" (`choose_format`,
        given the export stage's `accuracy_changes`: format -> points against the Keras model)."""
        if fmt == "auto":
            probe = np.zeros((self.BATCH_SIZE, self.size, self.size, CHANNELS[self.color_mode]), np.float32)
            self.format, self.run = choose_format(self.model_dir, self.model, accuracy_changes or {}, probe)
        elif fmt == "keras":
            self.format, self.run = fmt, keras_runner(self.model)
        elif fmt in EXPORTED_FILES:
            path = self.model_dir / EXPORTED_FILES[fmt]
            if not path.exists():
                raise ImagerecError(f"{self.model_dir}: no {fmt} here ({EXPORTED_FILES[fmt]} missing; "
                                    "exports/<dataset> holds the exported formats)")
            self.format, self.run = fmt, load_exported(fmt, path)
        else:
            raise ImagerecError(f"unknown model format {fmt!r} (one of: auto, {', '.join(FORMATS)})")

    def decode(self, data: bytes) -> np.ndarray:
        return images.decode(data, self.size, self.color_mode)

    def rank(self, pixels: list[np.ndarray], top_k: int) -> list[list[dict]]:
        """Per image, the top_k classes as [{"label", "probability"}], most probable first."""
        return [self.top(p, top_k) for p in predict(self.run, np.stack(pixels), self.BATCH_SIZE)]

    def top(self, probabilities: np.ndarray, top_k: int) -> list[dict]:
        return [{"label": self.classes[i], "probability": float(probabilities[i])}
                for i in np.argsort(-probabilities, kind="stable")[:top_k]]


# --- exported formats ----------------------------------------------------------------------------

class TFLiteModel:
    """A .tflite file behind a `__call__(batch) -> probabilities`, like a Keras model."""

    def __init__(self, path: Path, threads: int | None = None):
        # TFLite's own default runs one thread, half of a 2-core machine (67 against 133 images/s
        # for Cats vs Dogs' int8 model in batches of 32): every usable core unless told otherwise.
        threads = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
        self.interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.batch != len(batch):
            self.interpreter.resize_tensor_input(self.input["index"], [len(batch), *batch.shape[1:]])
            self.interpreter.allocate_tensors()
            self.batch = len(batch)
        self.interpreter.set_tensor(self.input["index"], batch.astype(np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])


class SavedModel:
    """An exported SavedModel's serving function behind `__call__(batch) -> probabilities`."""

    def __init__(self, path: Path):
        self.loaded = tf.saved_model.load(str(path))  # the function needs its object kept alive
        self.function = self.loaded.serve

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.function(tf.constant(batch, tf.float32)))


def load_exported(fmt: str, path: Path, threads: int | None = None) -> Runner:
    """A runner for any format `export` writes: keras, saved_model or one of the tflite files."""
    if fmt == "keras":
        return keras_runner(load_keras(path))
    if fmt == "saved_model":
        return SavedModel(path)
    return TFLiteModel(path, threads)
