"""Model settings from params.yaml reach the Keras model: batch-norm momentum, mixed precision
(trained in float16, saved in float32) and XLA compilation of the train step, which needs TF's
op determinism off."""
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from imagerec import inference, models, params, training
from imagerec.errors import ImagerecError
from fixtures import make_backbone_weights, pattern_images
from test_distributed import start, tail, train_command, wait_all, write_stage_inputs

COMMITTED = Path(__file__).resolve().parents[1] / "params.yaml"
DIGITS_CARD = {"classes": [str(digit) for digit in range(10)], "input_shape": [28, 28, 1], "color_mode": "grayscale"}


def dataset_params(dataset: str, **sections) -> params.DatasetParams:
    """The committed params of `dataset` with some keys of some sections replaced (validated)."""
    raw = yaml.safe_load(COMMITTED.read_text())["datasets"][dataset]
    for section, updates in sections.items():
        raw.setdefault(section, {}).update(updates)
    return params.resolve(dataset, raw)


def layers_of(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # the pretrained base: its own layers
            yield from layers_of(layer)
        else:
            yield layer


def assert_same_weights_layer_by_layer(model: keras.Model, other: keras.Model) -> None:
    """Layer by layer in build order, not by the models' flat weight lists (whose order is what
    a copy could get wrong)."""
    pairs = list(zip(layers_of(model), layers_of(other), strict=True))
    assert sum(len(a.weights) for a, _ in pairs) == len(model.weights)
    for a, b in pairs:
        assert type(a) is type(b) and len(a.weights) == len(b.weights)
        for wa, wb in zip(a.weights, b.weights):
            assert wa.name == wb.name
            np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb))


TINY_CNN = {"filters": [8, 16], "convs_per_block": 1, "dense_units": 0, "dropout": 0.0}


def test_batch_norm_momentum_reaches_every_batch_norm_layer():
    p = dataset_params("cifar10", model={**TINY_CNN, "batch_norm_momentum": 0.6})
    model = models.build(p.model, (16, 16, 3), 10)
    momenta = [layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert momenta == [0.6, 0.6]


def test_batch_norm_epsilon_reaches_every_batch_norm_layer_and_defaults_to_keras():
    default = models.build(dataset_params("cifar10", model=TINY_CNN).model, (16, 16, 3), 10)
    p = dataset_params("cifar10", model={**TINY_CNN, "batch_norm_epsilon": 1e-12})
    model = models.build(p.model, (16, 16, 3), 10)
    epsilons = [[layer.epsilon for layer in m.layers if isinstance(layer, keras.layers.BatchNormalization)]
                for m in (default, model)]
    assert epsilons == [[1e-3, 1e-3], [1e-12, 1e-12]]


def test_mixed_precision_trains_in_float16_and_saves_in_float32(tmp_path):
    p = dataset_params("mnist", model=TINY_CNN, train={"mixed_precision": True, "batch_size": 20})
    model = models.build(p.model, (28, 28, 1), 10, mixed_precision=p.train.mixed_precision)
    assert keras.mixed_precision.dtype_policy().name == "float32"  # the global policy is left as it was
    assert {layer.dtype_policy.name for layer in model.layers[1:-1]} == {"mixed_float16"}
    assert model.layers[-1].dtype_policy.name == "float32"  # softmax over float16 logits loses small probabilities

    labels = np.repeat(np.arange(10), 6)
    images = pattern_images(labels, 28, 1).astype("float32")
    training.compile_model(model, p.train, 0.01, epochs=3, warmup_epochs=0, steps_per_epoch=3)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    model.fit(images, keras.utils.to_categorical(labels, 10), batch_size=20, epochs=3, verbose=0)

    saved = models.as_float32(model, p.model)
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}
    assert_same_weights_layer_by_layer(model, saved)
    np.testing.assert_allclose(saved(images[:12]), np.asarray(model(images[:12]), np.float32), atol=5e-3)
    models.save(saved, tmp_path, DIGITS_CARD)
    reloaded, _ = inference.load(tmp_path)
    assert reloaded.layers[1].dtype_policy.name == "float32"


def test_float32_copy_keeps_the_fine_tuned_mobilenet_weights_in_place():
    """The base's layers are partly unfrozen when the model is saved; the float32 copy, built
    frozen, must still receive every weight at its own layer."""
    p = dataset_params("cats_vs_dogs")  # built without weights files: random ImageNet-shaped weights
    model = models.build(p.model, (32, 32, 3), 2, mixed_precision=True)
    models.unfreeze_top(model, 20)
    rng = np.random.default_rng(0)
    for variable in model.weights:  # distinct values everywhere, so a misplaced weight shows
        variable.assign(rng.normal(size=variable.shape).astype(variable.dtype))
    saved = models.as_float32(model, p.model)
    assert_same_weights_layer_by_layer(model, saved)


def test_float32_model_is_saved_as_it_is():
    p = dataset_params("mnist", model=TINY_CNN)
    model = models.build(p.model, (28, 28, 1), 10)
    assert models.as_float32(model, p.model) is model



def test_the_same_weights_saved_twice_make_the_same_file(tmp_path):
    # Keras stamps the save time into model.keras; left in, every retrain would change the
    # model's hash and make DVC re-run evaluate and export for nothing.
    model = models.build(dataset_params("mnist", model=TINY_CNN).model, (28, 28, 1), 10)
    saved = []
    for second in (0, 1):
        time.sleep(1.1 * second)  # zip timestamps have a resolution of two seconds, Keras' one
        (tmp_path / str(second)).mkdir()
        models.save(model, tmp_path / str(second), DIGITS_CARD)
        saved.append((tmp_path / str(second) / models.MODEL_FILE).read_bytes())
    assert saved[0] == saved[1]
    reloaded, card = inference.load(tmp_path / "0")
    assert_same_weights_layer_by_layer(model, reloaded)
    assert card["classes"][9] == "9"

@pytest.fixture
def op_determinism_restored():
    """TF's op determinism is process-wide: leave it as the test found it, on or off."""
    from tensorflow.python.framework import config

    before = config.is_op_determinism_enabled()
    yield
    (config.enable_op_determinism if before else config.disable_op_determinism)()


@pytest.mark.parametrize("jit_compile", [True, False])
def test_jit_compile_param_reaches_the_compiled_model(jit_compile, op_determinism_restored):
    """Seeded as the train stage seeds: deterministic ops exactly when XLA is off."""
    p = dataset_params("mnist", model=TINY_CNN, train={"jit_compile": jit_compile})
    training.set_seeds(p.seed, deterministic_ops=not jit_compile)
    model = models.build(p.model, (28, 28, 1), 10)
    training.compile_model(model, p.train, 0.001, epochs=1, warmup_epochs=0, steps_per_epoch=1)
    assert model.jit_compile is jit_compile


def test_jit_compile_under_deterministic_ops_is_refused_in_one_line(op_determinism_restored):
    """Keras would only warn and train without XLA."""
    p = dataset_params("mnist", model=TINY_CNN, train={"jit_compile": True})
    training.set_seeds(p.seed, deterministic_ops=True)
    model = models.build(p.model, (28, 28, 1), 10)
    with pytest.raises(ImagerecError) as info:
        training.compile_model(model, p.train, 0.001, epochs=1, warmup_epochs=0, steps_per_epoch=1)
    assert str(info.value).startswith("train.jit_compile: Keras turned XLA off") and "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.extended
def test_train_stage_with_jit_compile_runs_xla(tmp_path):
    """The real train stage, in a subprocess with TF's info log on: XLA compiles the train step."""
    write_stage_inputs(tmp_path, "default")
    settings = yaml.safe_load((tmp_path / "params.yaml").read_text())
    settings["datasets"]["mnist"]["train"]["jit_compile"] = True
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    params.write_stage_configs(params.load("mnist", tmp_path / "params.yaml"), tmp_path / "config")
    log = tmp_path / "train.log"
    process = start(train_command("out"), tmp_path, log, TF_CPP_MIN_LOG_LEVEL="0")
    wait_all([process], [log], time.monotonic() + 120)
    assert "Compiled cluster using XLA" in log.read_text(), tail(log)
    assert "Proceeding with `jit_compile=False`" not in log.read_text()
    assert (tmp_path / "out" / "model" / "model.keras").is_file()


# --- pretrained backbones --------------------------------------------------------------------------

@dataclass
class PretrainedSettings:
    """What build() reads of params' model section."""
    name: str
    pretrained: str = "imagenet"
    dropout: float = 0.2

    def model_dump(self, exclude=()):
        return {key: value for key, value in vars(self).items() if key not in exclude}


def test_mobilenet_v2_keeps_its_graph():
    """Trained models and their metrics depend on it: the same layers, in the same order."""
    model = models.build(PretrainedSettings("mobilenet_v2"), (32, 32, 3), 2)
    assert model.name == "mobilenet_v2_transfer"
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer", "Rescaling", "Functional", "GlobalAveragePooling2D", "Dropout", "Dense"]
    assert model.layers[2].name == models.BASE_NAME and len(model.layers[2].layers) == 154


@pytest.mark.parametrize("backbone", list(models.BACKBONES))
def test_backbone_loads_a_weights_file_predicts_and_fine_tunes(backbone, tmp_path):
    saved = make_backbone_weights(backbone, tmp_path / "weights.h5")
    model = models.build(PretrainedSettings(backbone), (64, 64, 3), 3, weights=tmp_path / "weights.h5")
    base = model.get_layer(models.BASE_NAME)
    for loaded, expected in zip(base.get_weights(), saved, strict=True):
        np.testing.assert_array_equal(loaded, expected)
    assert not base.trainable and len(model.trainable_weights) == 2  # only the new head trains

    images = pattern_images([0, 1], 64, 3).astype("float32")  # uint8-range pixels, as every model takes
    probabilities = np.asarray(model.predict(images, verbose=0))
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)

    models.unfreeze_top(model, 12)
    assert [layer.trainable for layer in base.layers] == [False] * (len(base.layers) - 12) + [True] * 12
    assert len(model.trainable_weights) > 2


@pytest.mark.parametrize("backbone", list(models.BACKBONES))
def test_each_backbone_scales_uint8_pixels_as_its_weights_expect(backbone):
    """MobileNetV2 and ResNet50V2: the model rescales to [-1, 1]; EfficientNetV2: its base has
    Keras' own preprocessing (1/255, ImageNet mean and variance), chosen by the base's name."""
    model = models.build(PretrainedSettings(backbone), (32, 32, 3), 2)
    base = model.get_layer(models.BASE_NAME)
    rescaling = [layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling)]
    if models.BACKBONES[backbone].scale_to_unit_range:
        assert [(r.scale, r.offset) for r in rescaling] == [(1 / 127.5, -1)]
        assert not any(isinstance(layer, keras.layers.Normalization) for layer in base.layers)
    else:
        assert rescaling == []
        assert [type(layer).__name__ for layer in base.layers[1:3]] == ["Rescaling", "Normalization"]
        assert base.layers[1].scale == 1 / 255


def test_backbone_table_sizes_are_what_keras_accepts():
    for name, spec in models.BACKBONES.items():
        assert spec.default_size == 224 and spec.min_size == 32
        with pytest.raises(ValueError, match=f"at least {spec.min_size}"):
            models.build(PretrainedSettings(name), (spec.min_size - 1, spec.min_size - 1, 3), 2)


@pytest.mark.parametrize("backbone", ["efficientnet_v2_b0", "resnet50_v2"])
def test_float32_copy_keeps_each_fine_tuned_backbone_weight_in_place(backbone):
    """As for MobileNetV2 above: trained in mixed precision, partly unfrozen, saved in float32."""
    settings = PretrainedSettings(backbone)
    model = models.build(settings, (32, 32, 3), 2, mixed_precision=True)
    models.unfreeze_top(model, 20)
    rng = np.random.default_rng(0)
    for variable in model.weights:
        variable.assign(rng.normal(size=variable.shape).astype(variable.dtype))
    assert_same_weights_layer_by_layer(model, models.as_float32(model, settings))
