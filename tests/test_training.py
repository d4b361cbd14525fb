"""Test-time augmentation in inference.predict and the augmentation policy's ops."""
import numpy as np
import pytest

from imagerec import augment, inference


def position_sensitive_model(seed=0):
    """Softmax over a fixed random linear map of the pixels: moving or mirroring a pixel changes the output."""
    import keras

    inputs = keras.Input((5, 6, 1))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    weights = np.random.default_rng(seed).normal(size=(30, 3)).astype("float32") / 2000  # logits of order 1 for 0..255 pixels
    model.layers[-1].set_weights([weights, np.zeros(3, "float32")])
    return model


@pytest.fixture(scope="module")
def model_and_images():
    images = np.random.default_rng(1).integers(0, 256, (7, 5, 6, 1)).astype(np.uint8)
    return position_sensitive_model(), images


def probabilities(model, batch):
    return np.asarray(model(batch.astype("float32"), training=False), np.float64)


def test_no_tta_is_the_model_alone(model_and_images):
    model, images = model_and_images
    np.testing.assert_allclose(inference.predict(inference.keras_runner(model), images, 3), probabilities(model, images), rtol=1e-5)


def test_flip_averages_with_the_mirror_image(model_and_images):
    model, images = model_and_images
    expected = (probabilities(model, images) + probabilities(model, images[:, :, ::-1])) / 2
    np.testing.assert_allclose(inference.predict(inference.keras_runner(model), images, 4, "flip"), expected, rtol=1e-5)


def test_flip_translate_adds_one_pixel_shifts_at_half_weight(model_and_images):
    model, images = model_and_images

    def with_mirror(batch):
        return (probabilities(model, batch) + probabilities(model, batch[:, :, ::-1])) / 2

    padded = np.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    up_left, down_right = padded[:, :5, :6], padded[:, 2:, 2:]
    expected = with_mirror(images) / 2 + (with_mirror(up_left) + with_mirror(down_right)) / 4
    predicted = inference.predict(inference.keras_runner(model), images, 5, "flip_translate")
    np.testing.assert_allclose(predicted, expected, rtol=1e-5)
    assert not np.allclose(predicted, inference.predict(inference.keras_runner(model), images, 5, "flip"))  # the shifts do count
    np.testing.assert_allclose(predicted.sum(axis=1), 1.0)


def test_translate_is_flip_translate_without_the_mirror_images(model_and_images):
    model, images = model_and_images
    padded = np.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    up_left, down_right = padded[:, :5, :6], padded[:, 2:, 2:]
    expected = probabilities(model, images) / 2 + (probabilities(model, up_left) + probabilities(model, down_right)) / 4
    predicted = inference.predict(inference.keras_runner(model), images, 3, "translate")
    np.testing.assert_allclose(predicted, expected, rtol=1e-5)
    assert not np.allclose(predicted, inference.predict(inference.keras_runner(model), images, 3, "none"))
    np.testing.assert_allclose(predicted.sum(axis=1), 1.0)


def test_unknown_tta_is_refused(model_and_images):
    model, images = model_and_images
    with pytest.raises(ValueError, match="rotate"):
        inference.predict(inference.keras_runner(model), images, 2, "rotate")


class Augment:
    enabled = True
    flip = "none"
    rotation = zoom = translation = contrast = 0.0
    erasing = 1.0
    fill_mode = "reflect"
    interpolation = "nearest"


def test_erasing_replaces_one_rectangle_of_at_most_a_quarter_of_each_image():
    policy = augment.policy_from_params(Augment())
    assert policy["ops"] == [{"op": "erasing", "factor": 1.0}]
    images = np.full((16, 32, 32, 3), 128, np.uint8)
    augmented = np.asarray(augment.build_layers(policy, seed=3)(images.astype("float32"), training=True))
    changed = (augmented != 128).any(axis=-1)
    for mask in changed:
        assert 0 < mask.sum() <= 0.25 * mask.size
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        assert mask.sum() >= 0.9 * len(rows) * len(cols)  # one rectangle (noise may match 128 here and there)


def test_erasing_zero_is_no_op():
    settings = Augment()
    settings.erasing = 0.0
    assert augment.policy_from_params(settings)["ops"] == []


def test_preview_of_disabled_augmentation_repeats_the_originals():
    settings = Augment()
    settings.enabled = False
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 1)).astype(np.uint8)
    grid = augment.preview(images, augment.policy_from_params(settings), seed=0, variants=2)
    assert grid.shape == (3, 3, 8, 8, 1) and grid.dtype == np.uint8
    assert (grid == images[:, None]).all()
