"""params.yaml: one schema for every knob, validated when a stage starts.

A wrong type, an out-of-range value or an unknown key stops the stage with one line that
names the key, e.g. `params.yaml: mnist.train.epochs: must be >= 1 (got 0)`.
"""
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ImagerecError
from .sources import DATASET_SOURCES

PARAMS_FILE = "params.yaml"


class _Section(BaseModel):
    # strict: "3" is not an int and 1 is not a bool; forbid: a misspelt key is an error.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Fetch(_Section):
    source: str  # checked against the dataset's registry entry in DatasetParams


class Preprocess(_Section):
    image_size: int = Field(ge=8, le=1024)
    color_mode: Literal["grayscale", "rgb"]
    val_fraction: float = Field(gt=0, lt=1)
    # Used only when the source has no held-out split of its own.
    test_fraction: float = Field(gt=0, lt=1)
    # Keep at most this many images per class and split (0 keeps all): the tiny profile.
    max_per_class: int = Field(ge=0)

    @model_validator(mode="after")
    def _fractions_leave_training_data(self):
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be < 1")
        return self


class Augment(_Section):
    enabled: bool
    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"]
    rotation: float = Field(ge=0, le=0.5)  # fraction of a full turn, as keras.layers.RandomRotation
    zoom: float = Field(ge=0, lt=1)
    translation: float = Field(ge=0, lt=1)  # fraction of height/width
    contrast: float = Field(ge=0, lt=1)
    erasing: float = Field(ge=0, le=1)  # probability of erasing a random rectangle (Random Erasing)
    # How rotation/zoom/translation fill the border: constant (black) suits digits on black.
    fill_mode: Literal["reflect", "constant", "nearest", "wrap"]
    # Each geometric op resamples the image once; bilinear blurs a little every time, which
    # matters for 28x28 strokes. nearest keeps edges crisp.
    interpolation: Literal["bilinear", "nearest"]
    preview_images: int = Field(ge=1, le=32)


class CnnModel(_Section):
    name: Literal["cnn"]
    pretrained: Literal["none"]
    filters: list[Annotated[int, Field(ge=1, le=1024)]] = Field(min_length=1, max_length=6)
    convs_per_block: int = Field(ge=1, le=4)
    batch_norm: bool
    # Keras' convention: the weight of the old moving mean/variance (0.99 is Keras' default).
    batch_norm_momentum: float = Field(ge=0, lt=1)
    pooling: Literal["flatten", "global_max"]  # how the head reads the last feature map
    dense_units: int = Field(ge=0)  # 0: no hidden dense layer
    dropout: float = Field(ge=0, lt=1)


class MobileNetV2Model(_Section):
    name: Literal["mobilenet_v2"]
    pretrained: Literal["none", "imagenet"]
    dropout: float = Field(ge=0, lt=1)


Model = Annotated[Union[CnnModel, MobileNetV2Model], Field(discriminator="name")]


class FineTune(_Section):
    """The second phase of transfer learning: the top `layers` of the pretrained base train too."""
    layers: int = Field(ge=1)
    epochs: int = Field(ge=1)
    learning_rate: float = Field(gt=0, le=10)


class Train(_Section):
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)  # per replica (see strategy)
    learning_rate: float = Field(gt=0, le=10)  # per replica: N replicas train at N times this rate
    schedule: Literal["constant", "cosine"]
    warmup_epochs: int = Field(ge=0)  # cosine only: the rate rises linearly from 0 first
    weight_decay: float = Field(ge=0)
    label_smoothing: float = Field(ge=0, lt=1)
    early_stopping_patience: int = Field(ge=0)  # 0: no early stopping
    fine_tune: FineTune | None = None  # pretrained models only; absent: the base stays frozen
    strategy: Literal["default", "mirrored", "multi_worker"]  # tf.distribute; multi_worker reads TF_CONFIG
    # GPU speed settings, off in params.yaml: on a 2-core CPU they made a train step slower,
    # mixed precision 8-11x and XLA 2-3x (benchmarks/speed_settings.py).
    mixed_precision: bool  # float16 compute, float32 weights; the saved model computes in float32
    # XLA-compile the train step. Keras will not while TF's op determinism is on, so the train stage
    # turns it off: reruns are seeded but no longer bit-for-bit identical.
    jit_compile: bool


# flip: average with the mirror image's prediction; flip_translate: and with 1-pixel shifts
TestTimeAugmentation = Literal["none", "flip", "flip_translate"]


class Evaluate(_Section):
    batch_size: int = Field(ge=1)
    tta: TestTimeAugmentation
    samples_shown: int = Field(ge=1, le=64)


class Export(_Section):
    # keras (model.keras) is always written and is the reference the others are scored against.
    formats: list[Literal["saved_model", "tflite_float32", "tflite_dynamic_range", "tflite_int8"]] = Field(max_length=4)
    calibration_images: int = Field(ge=1, le=10000)  # training images that calibrate int8
    batch_size: int = Field(ge=1)


class DatasetParams(_Section):
    name: str
    seed: int = Field(ge=0)
    fetch: Fetch
    preprocess: Preprocess
    augment: Augment
    model: Model
    train: Train
    evaluate: Evaluate
    export: Export

    @model_validator(mode="after")
    def _known_source_and_shape(self):
        allowed = sorted(DATASET_SOURCES[self.name])
        if self.fetch.source not in allowed:
            raise ValueError(f"fetch.source: unknown source {self.fetch.source!r} (allowed: {', '.join(allowed)})")
        if self.model.name == "mobilenet_v2" and self.preprocess.color_mode != "rgb":
            raise ValueError("preprocess.color_mode: mobilenet_v2 needs rgb images")
        if self.train.fine_tune and not (self.model.name == "mobilenet_v2" and self.model.pretrained != "none"):
            raise ValueError("train.fine_tune: only a pretrained model can be fine-tuned")
        if self.model.name == "mobilenet_v2" and self.preprocess.image_size < 32:
            raise ValueError("preprocess.image_size: mobilenet_v2 needs images of at least 32x32")
        return self


_MODEL_TAGS = {"cnn", "mobilenet_v2"}


def _describe(error: dict) -> str:
    parts = [str(part) for part in error["loc"] if not str(part).startswith("function-after")]
    if len(parts) > 1 and parts[0] == "model" and parts[1] in _MODEL_TAGS:
        del parts[1]  # pydantic names the union member; the user wrote model.<key>
    loc = ".".join(parts)
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key"
    if kind == "missing":
        return f"{loc}: missing key"
    if kind == "union_tag_not_found":
        return f"{loc}.name: missing key"
    message = error["msg"].removeprefix("Value error, ")
    got = "" if kind in ("value_error", "union_tag_invalid") else f" (got {error['input']!r})"
    return f"{loc}: {message}{got}".lstrip(": ")


def load(dataset: str, path: str | Path = PARAMS_FILE) -> DatasetParams:
    """Validate the whole params file and return the section of `dataset`."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ImagerecError(f"{path}: not found (run from the repository root)") from None
    except yaml.YAMLError as err:
        raise ImagerecError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(raw, dict):
        raise ImagerecError(f"{path}: must be a mapping of dataset name to settings")
    for key in raw:
        if key not in DATASET_SOURCES:
            raise ImagerecError(f"{path}: {key}: unknown dataset (allowed: {', '.join(DATASET_SOURCES)})")
    if dataset not in raw:
        raise ImagerecError(f"{path}: {dataset}: missing section for this dataset")
    sections = {}
    for name, section in raw.items():
        if not isinstance(section, dict):
            raise ImagerecError(f"{path}: {name}: must be a mapping")
        if "name" in section:
            raise ImagerecError(f"{path}: {name}.name: unknown key")
        try:
            sections[name] = DatasetParams.model_validate({**section, "name": name})
        except ValidationError as err:
            errors = err.errors(include_url=False)
            # A misspelt key shows up twice, as unknown and as missing: name the unknown one.
            first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
            raise ImagerecError(f"{path}: {name}.{_describe(first)}") from None
    return sections[dataset]
