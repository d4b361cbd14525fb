"""params.yaml: one schema for every knob, defaults for what a dataset's section leaves out.

params.yaml holds one mapping, `datasets:`, of dataset name to section. A section needs only
`fetch`; every other key has a default (DEFAULTS, and README's "Your own images" table), taken
from one of two recipes: a pretrained backbone fine-tuned in two phases (Cats vs Dogs' recipe),
or a CNN from scratch (for many small images, or when `model.name: cnn` is asked for).

A wrong type, an out-of-range value or an unknown key stops the stage with one line that
names the key, e.g. `params.yaml: datasets.mnist.train.epochs: Input should be greater than or equal to 1 (got 0)`.

The configure stage resolves a section (defaults filled in) and writes one small JSON file per
stage (STAGE_SECTIONS): each stage depends on its own file only, so DVC re-runs exactly the
stages whose settings changed, also for keys a section leaves to their defaults.
"""
import copy
import re
import reprlib
from pathlib import Path
from typing import Annotated, Callable, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ImagerecError
from .files import read_json, write_json

PARAMS_FILE = "params.yaml"
DATASETS_KEY = "datasets"
# A dataset name becomes a DVC stage name (`train@<name>`) and a folder name (data/raw/<name>).
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# The backbones keras.applications offers here, with the image size their ImageNet weights were trained at.
BACKBONES = ("mobilenet_v2", "efficientnet_v2_b0", "resnet50_v2")
BACKBONE_IMAGE_SIZE = {"mobilenet_v2": 224, "efficientnet_v2_b0": 224, "resnet50_v2": 224}
# More values than any real section holds: YAML aliases can make a few lines mean billions of them.
MAX_VALUES = 10_000
# An error shows a short excerpt of the offending value, never the whole of it.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 60, 60, 40
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 4
EXCERPT_CHARS = 80


class _Loader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, whose floats need a dot: `1e-12` would be a string. DVC writes
    YAML 1.2 (`dvc exp run -S key=1.0e-12` puts `1e-12` in params.yaml), and people write it too."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def _excerpt(value) -> str:
    """repr(value), shortened: reprlib bounds each part of a nested value, this the whole."""
    shown = _REPR.repr(value)
    return shown if len(shown) <= EXCERPT_CHARS else shown[:EXCERPT_CHARS] + "..."
# How many of the base's top layers fine-tuning trains: about its last third.
BACKBONE_FINE_TUNE_LAYERS = {"mobilenet_v2": 54, "efficientnet_v2_b0": 90, "resnet50_v2": 64}


class _Section(BaseModel):
    # strict: "3" is not an int and 1 is not a bool; forbid: a misspelt key is an error.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Fetch(_Section):
    """Where the images come from. `source` is a built-in source of the dataset's name
    (mnist: keras; cifar10: toronto; cats_vs_dogs: tensorflow, petimages), or one of
    folder (path), url (url, sha256) and kaggle (dataset or competition, files)."""
    source: str
    path: str | None = None  # folder: a directory or an archive, relative to the repository root or absolute
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    sha256: Sha256 | None = None  # url: the published checksum; without one the first download's is recorded
    dataset: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$")  # kaggle: owner/name
    competition: str | None = Field(default=None, pattern=r"^[\w.-]+$")  # kaggle
    files: list[Annotated[str, Field(min_length=1)]] | None = None  # kaggle: files of the dataset or competition

    def keys_given(self) -> set[str]:
        return {key for key in self.model_fields_set if key != "source"}


_FETCH_KEYS = {"folder": ({"path"}, {"path"}), "url": ({"url"}, {"url", "sha256"}),
               "kaggle": (set(), {"dataset", "competition", "files"})}  # source -> (required, allowed)


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
    # horizontal_alternating (airbench's): each image is mirrored in every other epoch, starting
    # from a seeded coin flip, instead of by a new coin flip every epoch
    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical", "horizontal_alternating"]
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
    # airbench's levers (docs/results.md, "The airbench levers"), each off by default:
    activation: Literal["relu", "gelu"] = "relu"
    whitening_patch: int = Field(default=0, ge=0, le=4)  # side of the frozen patch-whitening first layer; 0: none
    dirac_init: bool = False  # block convolutions start as the identity on their input channels
    batch_norm_scale: bool = True  # false: batch norm without its per-channel weight
    # Batch norm's offset = this x a trained variable: SGD moves it this squared times faster (8: 64x).
    batch_norm_bias_multiplier: float = Field(default=1.0, ge=1, le=100)
    logit_scale: float = Field(default=1.0, gt=0, le=1)  # the classifier's outputs x this (airbench: 1/9)
    # Added to batch norm's variance: Keras' 1e-3, airbench's 1e-12. On CIFAR-10 the variances stay
    # above 0.016, so the choice moved little (docs/results.md, "CIFAR-10's recipe: airbench's levers").
    batch_norm_epsilon: float = Field(default=1e-3, gt=0, le=0.1)
    # How the convolutions and the classifier start: Keras' glorot_uniform, or PyTorch's default
    # (uniform within 1/sqrt(fan_in)), which airbench's layers start from: 2.4x narrower for its head.
    kernel_init: Literal["glorot_uniform", "pytorch"] = "glorot_uniform"

    @model_validator(mode="after")
    def _levers_need_batch_norm(self):
        if not self.batch_norm and (not self.batch_norm_scale or self.batch_norm_bias_multiplier != 1):
            raise ValueError("model.batch_norm_scale and model.batch_norm_bias_multiplier need model.batch_norm: true")
        return self


class PretrainedModel(_Section):
    """A keras.applications backbone (frozen) with a new pooling-dropout-dense head."""
    name: Literal["mobilenet_v2", "efficientnet_v2_b0", "resnet50_v2"]
    pretrained: Literal["none", "imagenet"]
    dropout: float = Field(ge=0, lt=1)


Model = Annotated[Union[CnnModel, PretrainedModel], Field(discriminator="name")]


class FineTune(_Section):
    """The second phase of transfer learning: the top `layers` of the pretrained base train too."""
    layers: int = Field(ge=1)
    epochs: int = Field(ge=1)
    learning_rate: float = Field(gt=0, le=10)


class Lookahead(_Section):
    """airbench's weight averaging: from epoch `start_epochs` on, every `every_steps` steps the
    weights are replaced by their exponential moving average, whose decay per step rises from 0
    to `decay` as (step / last step) ** 3; each epoch ends on the average."""
    every_steps: int = Field(ge=1)
    start_epochs: int = Field(ge=0)
    decay: float = Field(gt=0, lt=1)


class Triangle(_Section):
    """airbench's schedule: the rate rises linearly from `start` x learning_rate to learning_rate
    at `peak` (a fraction of all steps), then falls linearly to `end` x learning_rate."""
    start: float = Field(ge=0, le=1)
    peak: float = Field(ge=0, lt=1)
    end: float = Field(ge=0, le=1)


class Train(_Section):
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)  # per replica (see strategy)
    learning_rate: float = Field(gt=0, le=10)  # per replica: N replicas train at N times this rate
    schedule: Literal["constant", "cosine", "triangle"]
    warmup_epochs: int = Field(ge=0)  # cosine only: the rate rises linearly from 0 first
    triangle: Triangle = Triangle(start=0.2, peak=0.23, end=0.07)  # triangle only; airbench's shape
    weight_decay: float = Field(ge=0)
    label_smoothing: float = Field(ge=0, lt=1)
    # adam: Adam, AdamW when weight_decay > 0 (decoupled, as a fraction per unit of learning rate);
    # sgd_nesterov: SGD with Nesterov momentum and the same decoupled weight decay.
    optimizer: Literal["adam", "sgd_nesterov"] = "adam"
    momentum: float = Field(default=0.9, ge=0, lt=1)  # sgd_nesterov only
    lookahead: Lookahead | None = None  # absent: no weight averaging
    early_stopping_patience: int = Field(ge=0)  # 0: no early stopping
    fine_tune: FineTune | None = None  # pretrained models only; absent: the base stays frozen
    strategy: Literal["default", "mirrored", "multi_worker"]  # tf.distribute; multi_worker reads TF_CONFIG
    # GPU speed settings, off by default: on a 2-core CPU they made a train step slower,
    # mixed precision 8-11x and XLA 2-3x (benchmarks/speed_settings.py).
    mixed_precision: bool  # float16 compute, float32 weights; the saved model computes in float32
    # XLA-compile the train step. Keras will not while TF's op determinism is on, so the train stage
    # turns it off: reruns are seeded but no longer bit-for-bit identical.
    jit_compile: bool


# flip: average with the mirror image's prediction; flip_translate: and with 1-pixel shifts;
# translate: with 1-pixel shifts only (inference.predict)
TestTimeAugmentation = Literal["none", "flip", "flip_translate", "translate"]


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
    def _consistent(self):
        from .catalog import builtin_sources, kaggle_preset

        fetch = self.fetch
        builtin = builtin_sources(self.name)
        if fetch.source in _FETCH_KEYS:
            required, allowed = _FETCH_KEYS[fetch.source]
            for key in sorted(fetch.keys_given() - allowed):
                raise ValueError(f"fetch.{key}: not a key of source {_excerpt(fetch.source)} (its keys: {', '.join(sorted(allowed))})")
            for key in sorted(required - fetch.keys_given()):
                raise ValueError(f"fetch.{key}: missing key (source {_excerpt(fetch.source)} needs it)")
            if fetch.source == "kaggle":
                _check_kaggle(fetch, kaggle_preset(self.name) is not None)
        elif fetch.source in builtin:
            for key in sorted(fetch.keys_given()):
                raise ValueError(f"fetch.{key}: not a key of the built-in source {_excerpt(fetch.source)}")
        else:
            allowed = sorted(set(builtin) - {"kaggle"}) + list(_FETCH_KEYS)
            raise ValueError(f"fetch.source: unknown source {_excerpt(fetch.source)} (allowed: {', '.join(allowed)})")
        pretrained = self.model.name in BACKBONES
        if pretrained and self.preprocess.color_mode != "rgb":
            raise ValueError(f"preprocess.color_mode: {self.model.name} needs rgb images")
        if self.train.fine_tune and not (pretrained and self.model.pretrained != "none"):
            raise ValueError("train.fine_tune: only a pretrained model can be fine-tuned")
        if pretrained and self.preprocess.image_size < 32:
            raise ValueError(f"preprocess.image_size: {self.model.name} needs images of at least 32x32")
        return self


def _check_kaggle(fetch: Fetch, has_preset: bool) -> None:
    if fetch.dataset and fetch.competition:
        raise ValueError("fetch: give either fetch.dataset or fetch.competition, not both")
    if not (fetch.dataset or fetch.competition):
        if fetch.files or not has_preset:
            raise ValueError("fetch.dataset: missing key (source 'kaggle' needs dataset: owner/name or competition: name)")
    if fetch.competition and not fetch.files:
        raise ValueError("fetch.files: missing key (a Kaggle competition needs the files to download)")


# --- defaults ----------------------------------------------------------------------------------

_COMMON = {
    "seed": 42,
    "train": {"schedule": "cosine", "strategy": "default", "mixed_precision": False, "jit_compile": False},
    "evaluate": {"samples_shown": 24},
    "export": {"formats": ["saved_model", "tflite_float32", "tflite_dynamic_range", "tflite_int8"],
               "calibration_images": 200},
}
# Cats vs Dogs' recipe: the new head on the frozen ImageNet base, then its top third fine-tuned.
PRETRAINED_RECIPE = {
    "preprocess": {"color_mode": "rgb", "val_fraction": 0.2, "test_fraction": 0.2, "max_per_class": 0},
    "augment": {"enabled": True, "flip": "horizontal", "rotation": 0.05, "zoom": 0.1, "translation": 0.0,
                "contrast": 0.0, "erasing": 0.0, "fill_mode": "reflect", "interpolation": "bilinear",
                "preview_images": 8},
    "model": {"name": "mobilenet_v2", "pretrained": "imagenet", "dropout": 0.2},
    "train": {"epochs": 6, "batch_size": 32, "learning_rate": 0.001, "warmup_epochs": 0, "weight_decay": 0.0,
              "label_smoothing": 0.0, "early_stopping_patience": 3,
              "fine_tune": {"epochs": 8, "learning_rate": 0.00003}},
    "evaluate": {"batch_size": 16, "tta": "flip"},
    "export": {"batch_size": 16},
}
# The AdamW recipe CIFAR-10 had until 2026-12-05, narrower: for many small images, where ImageNet
# features help least.
SCRATCH_RECIPE = {
    "preprocess": {"color_mode": "rgb", "val_fraction": 0.1, "test_fraction": 0.2, "max_per_class": 0},
    "augment": {"enabled": True, "flip": "horizontal", "rotation": 0.0, "zoom": 0.0, "translation": 0.125,
                "contrast": 0.0, "erasing": 0.0, "fill_mode": "reflect", "interpolation": "nearest",
                "preview_images": 8},
    "model": {"name": "cnn", "pretrained": "none", "filters": [32, 64, 128], "convs_per_block": 2,
              "batch_norm": True, "batch_norm_momentum": 0.99, "pooling": "global_max", "dense_units": 0,
              "dropout": 0.1},
    "train": {"epochs": 30, "batch_size": 128, "learning_rate": 0.003, "warmup_epochs": 1, "weight_decay": 0.05,
              "label_smoothing": 0.1, "early_stopping_patience": 10},
    "evaluate": {"batch_size": 500, "tta": "flip"},
    "export": {"batch_size": 250},
}
# A CNN from scratch is the default only for many small images: below this many, or above this
# side, ImageNet features win.
SCRATCH_MAX_SIDE = 64
SCRATCH_MIN_IMAGES = 10_000
SCRATCH_DEFAULT_SIDE = 32


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _model_name(section: dict) -> str | None:
    model = section.get("model")
    return model.get("name") if isinstance(model, dict) else None


def defaults(section: dict, survey: Callable[[], dict] | None = None) -> dict:
    """The defaults for what `section` leaves out.

    The recipe: the model the section names; else, for a local folder whose images are many
    and small (`survey()`: {"images", "median_side"}), a CNN from scratch at their size; else
    MobileNetV2 with ImageNet weights. The image size is the backbone's, or the images' own."""
    name = _model_name(section)
    side = None
    if name is None and survey is not None:
        found = survey()
        median = found.get("median_side")
        if median is not None and found["images"] >= SCRATCH_MIN_IMAGES and median <= SCRATCH_MAX_SIDE:
            name, side = "cnn", max(8, round(median))
    if name == "cnn":
        recipe = _merge(_COMMON, SCRATCH_RECIPE)
        recipe["preprocess"]["image_size"] = side or SCRATCH_DEFAULT_SIDE
        return recipe
    recipe = _merge(_COMMON, PRETRAINED_RECIPE)
    backbone = name if name in BACKBONES else recipe["model"]["name"]
    recipe["model"]["name"] = backbone
    recipe["preprocess"]["image_size"] = BACKBONE_IMAGE_SIZE[backbone]
    recipe["train"]["fine_tune"]["layers"] = BACKBONE_FINE_TUNE_LAYERS[backbone]
    pretrained = (section.get("model") or {}).get("pretrained") if isinstance(section.get("model"), dict) else None
    if pretrained == "none":  # random weights: nothing to fine-tune in a second phase
        del recipe["train"]["fine_tune"]
    return recipe


# --- reading params.yaml --------------------------------------------------------------------------

_MODEL_TAGS = {"cnn", *BACKBONES}


def _describe(error: dict) -> str:
    parts = [_excerpt(part).strip("'\"") if isinstance(part, str) else str(part)  # a key, unquoted
             for part in error["loc"] if not str(part).startswith("function-after")]
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
    if len(message) > 200:  # pydantic quotes some inputs inside its own message
        message = message[:200] + "..."
    got = "" if kind in ("value_error", "union_tag_invalid") else f" (got {_excerpt(error['input'])})"
    return f"{loc}: {message}{got}".lstrip(": ")


def _count_values(node, limit: int = MAX_VALUES) -> int:
    """Values in a parsed YAML tree, counting stopped just past `limit`: aliases share nodes, so a
    full walk of a "billion laughs" file would take as long as its expansion."""
    count, stack = 0, [node]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple, set)):
            stack.extend(node)
    return count


def load_yaml(text: str):
    """YAML text as Python values, floats read as YAML 1.2 and DVC read them (`1e-12` is a number)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)


def read_sections(path: str | Path = PARAMS_FILE) -> dict[str, dict]:
    """params.yaml's `datasets:` mapping, its names checked; the sections as written."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ImagerecError(f"{path}: not found (run from the repository root)") from None
    except OSError as err:
        raise ImagerecError(f"{path}: cannot read it ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise ImagerecError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    try:
        raw = load_yaml(text)
    # Besides YAMLError, PyYAML's constructors let through what converting a scalar raises
    # (`2001-13-45` as a date, `!!int x`), and its parser recurses once per nesting level.
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError, RecursionError) as err:
        raise ImagerecError(f"{path}: not valid YAML: {' '.join(str(err).split())[:200]}") from None
    if _count_values(raw) > MAX_VALUES:
        raise ImagerecError(f"{path}: holds more than {MAX_VALUES} values (YAML aliases expanding?)")
    if not isinstance(raw, dict) or set(raw) != {DATASETS_KEY}:
        raise ImagerecError(f"{path}: must hold one key, `{DATASETS_KEY}:`, a mapping of dataset name to settings")
    sections = raw[DATASETS_KEY]
    if not isinstance(sections, dict) or not sections:
        raise ImagerecError(f"{path}: {DATASETS_KEY}: must map at least one dataset name to its settings")
    for name, section in sections.items():
        if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
            raise ImagerecError(
                f"{path}: {DATASETS_KEY}: {_excerpt(name)} cannot be a dataset name: use up to 64 letters, digits, '_' "
                "and '-', starting with a letter or digit (it becomes a DVC stage name and a folder name)")
        if not isinstance(section, dict):
            raise ImagerecError(f"{path}: {DATASETS_KEY}.{name}: must be a mapping (at least `fetch:`)")
        if "name" in section:
            raise ImagerecError(f"{path}: {DATASETS_KEY}.{name}.name: unknown key")
    return sections


def resolve(name: str, section: dict, survey: Callable[[], dict] | None = None,
            path: str | Path = PARAMS_FILE) -> DatasetParams:
    """Validate `section` with its defaults filled in; an error names the key in params.yaml."""
    where = f"{path}: {DATASETS_KEY}.{name}"
    if not isinstance(section.get("fetch"), dict):
        raise ImagerecError(f"{where}.fetch: missing key (where the images come from, e.g. source: folder, path: ...)")
    try:
        full = _merge(defaults(section, survey), section)
        return DatasetParams.model_validate({**full, "name": name})
    except ValidationError as err:
        errors = err.errors(include_url=False)
        # A misspelt key shows up twice, as unknown and as missing: name the unknown one.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise ImagerecError(f"{where}.{_describe(first)}") from None


def load(dataset: str, path: str | Path = PARAMS_FILE, survey: Callable[[], dict] | None = None) -> DatasetParams:
    """Validate the whole params file and return the resolved section of `dataset`."""
    sections = read_sections(path)
    if dataset not in sections:
        raise ImagerecError(f"{path}: {DATASETS_KEY}.{dataset}: no such dataset (have: {', '.join(sections)})")
    for name, section in sections.items():
        if name != dataset:
            resolve(name, section, None, path)  # a typo elsewhere in the file is still an error now
    return resolve(dataset, sections[dataset], survey, path)


# --- one resolved file per stage ------------------------------------------------------------------

# What each stage reads, and nothing else: a stage re-runs when one of these changes.
STAGE_SECTIONS = {
    "fetch": ("fetch",),
    "preprocess": ("seed", "preprocess"),
    "augment": ("seed", "augment"),
    "train": ("seed", "model", "train"),
    "evaluate": ("seed", "evaluate"),
    "export": ("seed", "export"),
}


class Weights(_Section):
    model: str
    pretrained: str


class StageParams(_Section):
    """One stage's resolved settings, as the configure stage wrote them."""
    dataset: str
    seed: int | None = None
    fetch: Fetch | None = None
    weights: Weights | None = None  # fetch: the pretrained weights the model needs
    fingerprint: str | None = None  # fetch from a folder: its files' names, sizes and times
    preprocess: Preprocess | None = None
    augment: Augment | None = None
    model: Model | None = None
    train: Train | None = None
    evaluate: Evaluate | None = None
    export: Export | None = None


def stage_configs(p: DatasetParams, fingerprint: str | None = None) -> dict[str, dict]:
    """{stage: the JSON its config file holds}."""
    full = p.model_dump(mode="json", exclude_unset=False)
    configs = {}
    for stage, keys in STAGE_SECTIONS.items():
        config = {"dataset": p.name, **{key: full[key] for key in keys}}
        if stage == "fetch":
            config["fetch"] = p.fetch.model_dump(mode="json", exclude_none=True)
            config["weights"] = {"model": p.model.name, "pretrained": p.model.pretrained}
            if fingerprint is not None:
                config["fingerprint"] = fingerprint
        configs[stage] = config
    return configs


def write_stage_configs(p: DatasetParams, out_dir: Path, fingerprint: str | None = None) -> None:
    for stage, config in stage_configs(p, fingerprint).items():
        write_json(Path(out_dir) / f"{stage}.json", config)


def load_stage(path: str | Path) -> StageParams:
    """A stage's config file (data/config/<dataset>/<stage>.json), validated again."""
    path = Path(path)
    try:
        return StageParams.model_validate(read_json(path))
    except FileNotFoundError:
        raise ImagerecError(f"{path}: not found (run the configure stage first: dvc repro)") from None
    except (ValueError, ValidationError) as err:
        raise ImagerecError(f"{path}: not a stage config written by configure ({' '.join(str(err).split())[:160]})") from None
