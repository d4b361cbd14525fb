"""params: the committed params.yaml is valid, a short section gets its defaults, every mistake is one line."""
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from imagerec import params
from imagerec.errors import ImagerecError

COMMITTED = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture
def settings() -> dict:
    """A fresh, mutable copy of the committed params.yaml's `datasets:` mapping."""
    return yaml.safe_load(COMMITTED.read_text())["datasets"]


def write(tmp_path: Path, settings: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"datasets": settings}))
    return path


def set_key(settings: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = settings
    for key in parents:
        node = node[key]
    node[last] = value


def load_error(path: Path, dataset: str = "mnist") -> str:
    with pytest.raises(ImagerecError) as info:
        params.load(dataset, path)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("dataset, model, color_mode", [
    ("mnist", "cnn", "grayscale"),
    ("cifar10", "cnn", "rgb"),
    ("cats_vs_dogs", "mobilenet_v2", "rgb"),
])
def test_committed_params_load_for_each_dataset(dataset, model, color_mode):
    loaded = params.load(dataset, COMMITTED)
    assert loaded.name == dataset
    assert loaded.model.name == model
    assert loaded.preprocess.color_mode == color_mode


def test_loaded_params_are_frozen():
    loaded = params.load("mnist", COMMITTED)
    with pytest.raises(ValidationError):
        loaded.train.epochs = 1


@pytest.mark.parametrize("dataset, dotted, value, expected", [
    ("mnist", "mnist.train.epochs", "10", ["mnist.train.epochs", "valid integer", "'10'"]),
    ("mnist", "mnist.train.epochs", 0, ["mnist.train.epochs", "greater than or equal to 1", "(got 0)"]),
    ("mnist", "mnist.train.epochs", -3, ["mnist.train.epochs", "greater than or equal to 1", "(got -3)"]),
    ("mnist", "mnist.train.batch_size", 0, ["mnist.train.batch_size", "greater than or equal to 1", "(got 0)"]),
    ("mnist", "mnist.train.batch_size", -1, ["mnist.train.batch_size", "greater than or equal to 1", "(got -1)"]),
    ("mnist", "mnist.preprocess.color_mode", "sepia", ["mnist.preprocess.color_mode", "'grayscale'", "'rgb'"]),
    ("mnist", "mnist.train.extra", 1, ["mnist.train.extra: unknown key"]),
    ("mnist", "mnist.model.batch_norm", 1, ["batch_norm", "valid boolean", "(got 1)"]),
    ("mnist", "mnist.model.name", "resnet", ["mnist.model", "'cnn'", "'mobilenet_v2'"]),
    ("mnist", "mnist.fetch.source", "imagenet", ["mnist.fetch.source", "'imagenet'", "allowed: keras, folder, url, kaggle"]),
    ("cats_vs_dogs", "cats_vs_dogs.fetch.source", "imagenet",
     ["cats_vs_dogs.fetch.source", "allowed: petimages, tensorflow, folder, url, kaggle"]),
    ("mnist", "mnist.fetch", {"source": "folder"}, ["mnist.fetch.path: missing key"]),
    ("mnist", "mnist.fetch", {"source": "folder", "path": "x", "url": "https://a/b.zip"}, ["mnist.fetch.url: not a key of source 'folder'"]),
    ("mnist", "mnist.fetch", {"source": "url", "url": "ftp://a/b.zip"}, ["mnist.fetch.url", "should match pattern"]),
    ("mnist", "mnist.fetch", {"source": "url", "url": "https://a/b.zip", "sha256": "abc"}, ["mnist.fetch.sha256"]),
    ("mnist", "mnist.fetch", {"source": "keras", "path": "x"}, ["mnist.fetch.path: not a key of the built-in source"]),
    ("mnist", "mnist.fetch", {"source": "kaggle", "competition": "cifar-10"}, ["mnist.fetch.files: missing key"]),
    ("mnist", "mnist.fetch", {"source": "kaggle", "competition": "c", "dataset": "a/b", "files": ["x"]}, ["either"]),
    ("cats_vs_dogs", "cats_vs_dogs.preprocess.color_mode", "grayscale",
     ["cats_vs_dogs.preprocess.color_mode", "mobilenet_v2 needs rgb"]),
    ("cats_vs_dogs", "cats_vs_dogs.preprocess.image_size", 16,
     ["cats_vs_dogs.preprocess.image_size", "at least 32x32"]),
    ("mnist", "mnist.name", "cifar10", ["mnist.name: unknown key"]),
    ("mnist", "mnist.train.fine_tune", {"layers": 5, "epochs": 1, "learning_rate": 0.001},
     ["mnist.train.fine_tune", "only a pretrained model"]),
    ("cats_vs_dogs", "cats_vs_dogs.train.fine_tune.layers", 0,
     ["cats_vs_dogs.train.fine_tune.layers", "greater than or equal to 1", "(got 0)"]),
    ("mnist", "mnist.model.pooling", "average", ["mnist.model.pooling", "'flatten'", "'global_max'"]),
    ("mnist", "mnist.evaluate.tta", "rotate", ["mnist.evaluate.tta", "'none'", "'flip'", "'flip_translate'", "'translate'"]),
    ("cifar10", "cifar10.augment.erasing", 1.5, ["cifar10.augment.erasing", "less than or equal to 1", "(got 1.5)"]),
    ("mnist", "mnist.train.warmup_epochs", -1, ["mnist.train.warmup_epochs", "greater than or equal to 0"]),
    ("cifar10", "cifar10.model.batch_norm_momentum", 1.0, ["cifar10.model.batch_norm_momentum", "less than 1"]),
    ("cifar10", "cifar10.model.batch_norm_epsilon", 0, ["cifar10.model.batch_norm_epsilon", "greater than 0"]),
    ("cifar10", "cifar10.train.schedule", "step", ["cifar10.train.schedule", "'cosine'", "'triangle'"]),
    ("cifar10", "cifar10.train.triangle", {"start": 0.2, "peak": 1.0, "end": 0.07},
     ["cifar10.train.triangle.peak", "less than 1"]),
    ("cifar10", "cifar10.train.mixed_precision", "yes", ["cifar10.train.mixed_precision", "valid boolean"]),
    ("mnist", "mnist.train.jit_compile", 1, ["mnist.train.jit_compile", "valid boolean", "(got 1)"]),
])
def test_bad_value_is_one_line_naming_the_key(tmp_path, settings, dataset, dotted, value, expected):
    set_key(settings, dotted, value)
    message = load_error(write(tmp_path, settings), dataset)
    assert message.startswith(str(tmp_path / "params.yaml"))
    for fragment in expected:
        assert fragment in message


def test_model_error_names_the_key_as_written_in_params_yaml(tmp_path, settings):
    settings["mnist"]["model"]["batch_norm"] = 1
    assert "mnist.model.batch_norm:" in load_error(write(tmp_path, settings))


def test_misspelt_key_is_reported_by_dotted_name(tmp_path, settings):
    settings["mnist"]["train"]["epoch"] = settings["mnist"]["train"].pop("epochs")
    assert "mnist.train.epoch: unknown key" in load_error(write(tmp_path, settings))


@pytest.mark.parametrize("val, test", [(0.5, 0.5), (0.6, 0.5)])
def test_fractions_leaving_no_training_data_are_refused(tmp_path, settings, val, test):
    settings["mnist"]["preprocess"].update(val_fraction=val, test_fraction=test)
    message = load_error(write(tmp_path, settings))
    assert "mnist.preprocess" in message and "val_fraction + test_fraction must be < 1" in message


@pytest.mark.parametrize("name", ["my photos", "a/b", "x@y", "..", "-x", "é"])
def test_a_dataset_name_that_cannot_be_a_stage_and_folder_name_is_refused(tmp_path, settings, name):
    settings[name] = {"fetch": {"source": "folder", "path": "photos"}}
    message = load_error(write(tmp_path, settings))
    assert f"{name!r} cannot be a dataset name" in message and "DVC stage name" in message


def test_a_new_dataset_needs_only_fetch_and_gets_the_pretrained_recipe(tmp_path, settings):
    settings["flowers"] = {"fetch": {"source": "folder", "path": "../photos/flowers.zip"}}
    loaded = params.load("flowers", write(tmp_path, settings))
    cats = params.load("cats_vs_dogs", COMMITTED)
    assert loaded.model == cats.model  # MobileNetV2, ImageNet weights, the same head
    assert loaded.train == cats.train  # Cats vs Dogs' two phases
    assert loaded.augment == cats.augment
    assert (loaded.preprocess.image_size, loaded.preprocess.color_mode) == (224, "rgb")


@pytest.mark.parametrize("images, side, model, size", [
    (20_000, 32, "cnn", 32),            # many and small: a CNN from scratch at their own size
    (20_000, 128, "mobilenet_v2", 224),  # many but large
    (500, 28, "mobilenet_v2", 224),      # small but few
])
def test_a_local_folder_of_many_small_images_defaults_to_a_cnn(tmp_path, settings, images, side, model, size):
    settings["mine"] = {"fetch": {"source": "folder", "path": "x"}}
    loaded = params.load("mine", write(tmp_path, settings), survey=lambda: {"images": images, "median_side": side})
    assert (loaded.model.name, loaded.preprocess.image_size) == (model, size)
    assert (loaded.train.fine_tune is None) == (model == "cnn")


def test_any_default_can_be_overridden_key_by_key(tmp_path, settings):
    settings["mine"] = {"fetch": {"source": "folder", "path": "x"}, "model": {"name": "resnet50_v2"},
                        "train": {"epochs": 2, "fine_tune": {"epochs": 1}}, "preprocess": {"image_size": 96}}
    loaded = params.load("mine", write(tmp_path, settings))
    assert (loaded.model.name, loaded.model.pretrained) == ("resnet50_v2", "imagenet")
    assert (loaded.train.epochs, loaded.train.fine_tune.epochs, loaded.train.fine_tune.layers) == (2, 1, 64)
    assert loaded.train.learning_rate == 0.001 and loaded.preprocess.image_size == 96
    settings["mine"]["model"] = {"name": "cnn", "filters": [8]}
    del settings["mine"]["train"]["fine_tune"]
    loaded = params.load("mine", write(tmp_path, settings))
    assert loaded.model.filters == [8] and loaded.model.convs_per_block == 2 and loaded.preprocess.image_size == 96


def test_a_float_without_a_dot_is_a_number_as_dvc_writes_it(tmp_path):
    # `dvc exp run -S datasets.mine.train.learning_rate=0.00001` writes 1e-05, which YAML 1.1 reads as a string.
    path = tmp_path / "params.yaml"
    path.write_text("datasets:\n  mine:\n    fetch: {source: folder, path: x}\n"
                    "    train: {learning_rate: 1e-05, weight_decay: 5E-4, epochs: 3}\n")
    loaded = params.load("mine", path)
    assert (loaded.train.learning_rate, loaded.train.weight_decay, loaded.train.epochs) == (1e-05, 5e-4, 3)


def test_a_section_without_fetch_is_refused(tmp_path, settings):
    settings["mine"] = {"train": {"epochs": 2}}
    assert "datasets.mine.fetch: missing key" in load_error(write(tmp_path, settings), "mine")


def test_stage_configs_hold_what_each_stage_reads_and_load_back(tmp_path):
    loaded = params.load("cats_vs_dogs", COMMITTED)
    params.write_stage_configs(loaded, tmp_path, fingerprint="f" * 64)
    assert sorted(p.stem for p in tmp_path.iterdir()) == sorted(params.STAGE_SECTIONS)
    train = params.load_stage(tmp_path / "train.json")
    assert (train.dataset, train.model, train.train, train.seed) == ("cats_vs_dogs", loaded.model, loaded.train, 42)
    assert train.evaluate is None and train.preprocess is None
    fetch = params.load_stage(tmp_path / "fetch.json")
    assert (fetch.fetch, fetch.weights.model, fetch.fingerprint) == (loaded.fetch, "mobilenet_v2", "f" * 64)
    assert params.load_stage(tmp_path / "evaluate.json").evaluate == loaded.evaluate


def test_error_in_another_dataset_section_is_still_reported(tmp_path, settings):
    settings["cifar10"]["train"]["epochs"] = 0
    assert "cifar10.train.epochs" in load_error(write(tmp_path, settings), "mnist")


def test_missing_section_for_requested_dataset(tmp_path, settings):
    del settings["cifar10"]
    path = write(tmp_path, settings)
    assert params.load("mnist", path).name == "mnist"
    assert "datasets.cifar10: no such dataset (have: cats_vs_dogs, mnist)" in load_error(path, "cifar10")


def test_yaml_syntax_error_is_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("datasets:\n  mnist:\n    seed: [42\n    fetch: {}\n")
    assert "not valid YAML" in load_error(path)


@pytest.mark.parametrize("text", ["", "- mnist\n", "just a string\n", "mnist:\n  seed: 1\n"])
def test_params_file_that_is_not_a_datasets_mapping_is_refused(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert "must hold one key, `datasets:`" in load_error(path)


def test_missing_params_file_is_reported(tmp_path):
    message = load_error(tmp_path / "nope.yaml")
    assert "nope.yaml: not found" in message


def test_params_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"\xff\xfe" + "datasets: {}\n".encode("utf-16-le"))
    assert "params.yaml: not UTF-8 text (byte 0" in load_error(path)


def billion_laughs(depth: int) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth + 1)]
    return "\n".join(lines) + "\n"


def test_yaml_aliases_expanding_to_billions_of_values_are_refused_quickly(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(billion_laughs(9) + "datasets:\n  mnist:\n    fetch: {source: keras}\n    seed: *a9\n")
    assert "holds more than 10000 values (YAML aliases expanding?)" in load_error(path)


@pytest.mark.parametrize("value", ["[" + ", ".join(["123456789"] * 2000) + "]", "x" * 100_000])
def test_an_error_shows_only_an_excerpt_of_a_long_value(tmp_path, settings, value):
    settings["mnist"]["seed"] = yaml.safe_load(value)
    message = load_error(write(tmp_path, settings))
    assert message.startswith(f"{tmp_path / 'params.yaml'}: datasets.mnist.seed: ") and len(message) < 300
