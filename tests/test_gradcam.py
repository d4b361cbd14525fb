"""Grad-CAM heat maps on both model shapes imagerec.models builds: the CNN and the MobileNetV2 transfer model."""
import keras
import numpy as np
import pytest
from fixtures import pattern_images, write_tiny_model

from imagerec import gradcam, inference, models
from imagerec.errors import ImagerecError

LABELS = np.repeat(np.arange(10), 2)


@pytest.fixture(scope="module")
def tiny_cnn(tmp_path_factory):
    model, _ = inference.load(write_tiny_model(tmp_path_factory.mktemp("model")))
    return model


@pytest.fixture(scope="module")
def tiny_mobilenet():
    keras.utils.set_random_seed(0)
    return models.mobilenet_v2((32, 32, 3), 2, 0.0, weights=None)


def square_masks(labels, size=28):
    """Where each image's class square is (fixtures.pattern_images draws it)."""
    cell = size // 4
    masks = np.zeros((len(labels), size, size), bool)
    for mask, label in zip(masks, labels):
        row, col = divmod(int(label), 4)
        mask[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] = True
    return masks


def assert_valid_heatmaps(heat, shape):
    assert heat.shape == shape
    assert np.isfinite(heat).all()
    assert heat.min() >= 0 and heat.max() <= 1


def test_cnn_feature_map_is_the_last_blocks_relu(tiny_cnn):
    # The tiny CNN's one block is convolution, pooling, batch norm, ReLU.
    layer = gradcam.feature_layer(tiny_cnn)
    assert isinstance(layer, keras.layers.ReLU)
    assert isinstance(tiny_cnn.layers[tiny_cnn.layers.index(layer) + 1], keras.layers.Flatten)


def test_cnn_feature_map_of_two_convolution_blocks_is_the_last_relu():
    model = models.cnn((28, 28, 1), 10, [4, 8], 2, True, 0, 0.0, pooling="global_max")
    layer = gradcam.feature_layer(model)
    assert isinstance(layer, keras.layers.ReLU)
    assert isinstance(model.layers[model.layers.index(layer) + 1], keras.layers.GlobalMaxPooling2D)


def test_mobilenet_feature_map_is_the_nested_base(tiny_mobilenet):
    layer = gradcam.feature_layer(tiny_mobilenet)
    assert isinstance(layer, keras.Model) and layer.name == models.BASE_NAME


@pytest.mark.parametrize("method", ["gradcam", "hirescam"])
def test_cnn_heatmaps_have_the_image_size_and_lie_in_zero_to_one(tiny_cnn, method):
    heat = gradcam.heatmaps(tiny_cnn, pattern_images(LABELS, 28, 1, seed=5), method=method)
    assert_valid_heatmaps(heat, (20, 28, 28))
    strongest = heat.max(axis=(1, 2))
    if method == "hirescam":
        assert np.allclose(strongest, 1.0)  # each map is scaled to its own strongest evidence
    else:  # averaging the gradients over a flattened map can leave no positive evidence at all
        assert np.isclose(strongest, 1.0).sum() >= 10 and np.all(np.isclose(strongest, 1.0) | (strongest == 0))


@pytest.mark.parametrize("method", ["gradcam", "hirescam"])
def test_cnn_heat_is_higher_inside_the_class_square_than_outside(tiny_cnn, method):
    images = pattern_images(LABELS, 28, 1, seed=5)
    assert (tiny_cnn.predict(images, verbose=0).argmax(axis=1) == LABELS).all()  # the fixture model learnt the squares
    heat = gradcam.heatmaps(tiny_cnn, images, LABELS, method=method)
    masks = square_masks(LABELS)
    inside = np.array([h[m].mean() for h, m in zip(heat, masks)])
    outside = np.array([h[~m].mean() for h, m in zip(heat, masks)])
    assert inside.mean() > outside.mean()
    if method == "hirescam":  # position by position, the evidence is the square in every image
        assert (inside > 5 * outside).all()


def test_heatmaps_follow_the_requested_class(tiny_cnn):
    images = pattern_images(np.array([0, 0]), 28, 1, seed=5)
    own, other = gradcam.heatmaps(tiny_cnn, images, np.array([0, 9]), method="hirescam")
    mask = square_masks([0])[0]
    assert own[mask].mean() > other[mask].mean()


@pytest.mark.parametrize("size", [32, 64])
def test_mobilenet_heatmaps_have_the_image_size_and_lie_in_zero_to_one(size):
    keras.utils.set_random_seed(0)
    model = models.mobilenet_v2((size, size, 3), 2, 0.0, weights=None)
    images = pattern_images(np.array([0, 1, 0]), size, 3)
    heat = gradcam.heatmaps(model, images)
    assert_valid_heatmaps(heat, (3, size, size))
    assert heat.max() > 0  # the gradient reached the frozen base


def test_gradcam_and_hirescam_agree_when_the_head_pools_globally():
    keras.utils.set_random_seed(1)
    model = models.mobilenet_v2((64, 64, 3), 2, 0.0, weights=None)
    images = pattern_images(np.array([0, 1]), 64, 3)
    gradcam_heat = gradcam.heatmaps(model, images, np.array([0, 0]))
    assert gradcam_heat.std() > 0.01  # a 2x2 feature map: not a flat map
    np.testing.assert_allclose(gradcam_heat, gradcam.heatmaps(model, images, np.array([0, 0]), method="hirescam"),
                               atol=1e-4)


def test_saved_and_reloaded_mobilenet_gives_the_same_heatmaps(tiny_mobilenet, tmp_path):
    images = pattern_images(np.array([0, 1]), 32, 3)
    models.save(tiny_mobilenet, tmp_path, {"classes": ["a", "b"], "input_shape": [32, 32, 3], "color_mode": "rgb"})
    reloaded, _ = inference.load(tmp_path)
    np.testing.assert_allclose(gradcam.heatmaps(reloaded, images), gradcam.heatmaps(tiny_mobilenet, images), atol=1e-5)


def test_model_without_a_convolutional_feature_map_is_refused():
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    with pytest.raises(ImagerecError, match="no convolutional feature map"):
        gradcam.heatmaps(keras.Model(inputs, outputs), np.zeros((1, 8, 8, 1)))


def test_model_with_a_skip_connection_is_refused_rather_than_misread():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Add()([x, keras.layers.Conv2D(4, 1)(inputs)])
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(ImagerecError, match="not a plain stack of layers"):
        gradcam.heatmaps(keras.Model(inputs, outputs), np.zeros((1, 8, 8, 1)))


def test_gradcam_figure_is_written(tiny_cnn, tmp_path):
    from imagerec import figures

    images = pattern_images(LABELS[:4], 28, 1, seed=5)
    probabilities = tiny_cnn.predict(images, verbose=0)
    figures.gradcam(images, gradcam.heatmaps(tiny_cnn, images), LABELS[:4], probabilities, [str(i) for i in range(10)],
                    tmp_path / "gradcam.png", "Grad-CAM")
    assert (tmp_path / "gradcam.png").stat().st_size > 1000
