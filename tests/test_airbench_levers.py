"""airbench's levers (issue 18): the whitening layer, identity initialisation, batch norm's
boosted offsets, Nesterov SGD, weight averaging and the alternating flip."""
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from imagerec import augment, gradcam, inference, models, params, training
from imagerec.datasets import Split
from fixtures import pattern_images
from test_models import dataset_params

LEVERS = {"filters": [8, 16], "convs_per_block": 2, "dense_units": 0, "dropout": 0.0, "batch_norm_momentum": 0.6,
          "activation": "gelu", "whitening_patch": 2, "dirac_init": True, "batch_norm_scale": False,
          "batch_norm_bias_multiplier": 8.0, "logit_scale": 1 / 9}


def labelled_images(count=240, size=16, seed=0):
    """Four classes, each a bright square in its own row of the left column: a mirror image
    keeps the row, so flips do not confuse the classes."""
    labels = np.arange(count) % 4
    return pattern_images(labels * 4, size, 3, seed), labels


def test_whitening_layer_decorrelates_the_patches_it_was_computed_from():
    images, _ = labelled_images()
    p = dataset_params("cifar10", model=LEVERS)
    model = models.build(p.model, images.shape[1:], 4, whitening_images=images)
    whitened = keras.Model(model.input, model.get_layer("whitening_bias").output)
    out = np.asarray(whitened(images.astype("float32"))).reshape(-1, 24)[:, :12]  # the other half is its negative
    second_moment = out.T @ out / len(out)
    # identity up to the eps that keeps the smallest eigenvalues from blowing up
    np.testing.assert_allclose(np.diag(second_moment), 1, atol=0.05)
    assert np.abs(second_moment - np.diag(np.diag(second_moment))).max() < 0.02
    assert model.get_layer("whitening").trainable_weights == []  # frozen, its bias too
    assert [w.name for w in model.get_layer("whitening_bias").trainable_weights] == ["offset"]


def test_the_whitening_layers_trained_bias_starts_at_zero_on_centred_patches():
    """Weight decay pulls the trained bias towards zero, and zero must mean the centred patches
    airbench's bias starts from, not the raw pixels' patches."""
    images, _ = labelled_images()
    model = models.build(dataset_params("cifar10", model=LEVERS).model, images.shape[1:], 4, whitening_images=images)
    assert not model.get_layer("whitening_bias").get_weights()[0].any()
    whitened = keras.Model(model.input, model.get_layer("whitening_bias").output)
    out = np.asarray(whitened(images.astype("float32"))).reshape(-1, 24)
    # centred by the per-pixel mean, so within a few tenths (these images' edges differ from the
    # middle); without the frozen bias the first channel's mean is 0.97
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=0.2)


def test_whitening_is_fit_on_a_seeded_sample_of_5000_training_images_and_only_when_the_model_has_it():
    images = np.arange(6000).reshape(6000, 1, 1, 1)  # each image its own value
    with_layer = dataset_params("cifar10", model=LEVERS).model
    first, again = (training.whitening_images(with_layer, images, 42) for _ in range(2))
    assert first.shape == (5000, 1, 1, 1) and np.array_equal(first, again)
    assert not np.array_equal(first, training.whitening_images(with_layer, images, 43))
    assert len(training.whitening_images(with_layer, images[:300], 42)) == 300  # fewer: all of them
    assert training.whitening_images(dataset_params("cifar10", model={**LEVERS, "whitening_patch": 0}).model,
                                     images, 42) is None


def test_dirac_init_makes_each_block_convolution_pass_its_input_channels_through():
    p = dataset_params("cifar10", model={**LEVERS, "whitening_patch": 0})
    model = models.build(p.model, (16, 16, 3), 4)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 8)).astype("float32")
    second = convs[1]  # 8 -> 8 channels: the identity
    np.testing.assert_allclose(np.asarray(second(x)), x, atol=1e-6)
    third = convs[2]  # 8 -> 16: the first 8 outputs copy the input, the others keep their random start
    out = np.asarray(third(x))
    np.testing.assert_allclose(out[..., :8], x, atol=1e-6)
    assert np.abs(out[..., 8:]).max() > 0


def test_boosted_offset_moves_multiplier_squared_times_as_far_under_sgd():
    offset = models.Offset(8.0)
    offset.build((None, 3))
    optimizer = keras.optimizers.SGD(0.01)
    x = tf.ones((4, 3))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(offset(x))  # d loss / d (the offset itself) = 4 per channel
    optimizer.apply_gradients(zip(tape.gradient(loss, offset.trainable_weights), offset.trainable_weights))
    np.testing.assert_allclose(8.0 * np.asarray(offset.offset), -0.01 * 64 * 4, rtol=1e-5)


def test_batch_norm_without_weight_and_with_a_boosted_offset():
    p = dataset_params("cifar10", model=LEVERS)
    model = models.build(p.model, (16, 16, 3), 4, whitening_images=labelled_images()[0])
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(not norm.scale and not norm.center for norm in norms)
    boosted = [layer for layer in model.layers if isinstance(layer, models.Offset) and layer.multiplier == 8.0]
    assert len(boosted) == len(norms)


def test_logit_scale_multiplies_the_scores_before_the_softmax_and_grad_cam_reads_them():
    images, _ = labelled_images(count=8)
    p = dataset_params("cifar10", model=LEVERS)
    model = models.build(p.model, images.shape[1:], 4, whitening_images=images)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    pooled = keras.Model(model.input, dense.input)(images.astype("float32"))
    scores = (np.asarray(pooled) @ np.asarray(dense.kernel) + np.asarray(dense.bias)) / 9
    np.testing.assert_allclose(np.asarray(model(images.astype("float32"))), np.asarray(tf.nn.softmax(scores)), atol=1e-5)
    # the feature map runs to the last block's activation, past batch norm's boosted offset
    assert gradcam.feature_layer(model) is [layer for layer in model.layers if isinstance(layer, keras.layers.Activation)][-1]
    maps = gradcam.heatmaps(model, images[:2])
    assert maps.shape == (2, 16, 16) and np.isfinite(maps).all()


def test_levers_that_change_batch_norm_need_batch_norm():
    with pytest.raises(params.ImagerecError, match="batch_norm_bias_multiplier.*need model.batch_norm"):
        dataset_params("cifar10", model={**LEVERS, "batch_norm": False})


def test_a_model_with_every_lever_saves_and_loads_in_safe_mode_without_warnings(tmp_path):
    images, labels = labelled_images()
    p = dataset_params("cifar10", model=LEVERS, train={"optimizer": "sgd_nesterov", "momentum": 0.85,
                                                       "schedule": "triangle"})
    model = models.build(p.model, images.shape[1:], 4, whitening_images=images)
    training.compile_model(model, p.train, 0.05, 1, 0, 4)
    model.fit(images.astype("float32"), keras.utils.to_categorical(labels, 4), batch_size=60, epochs=1, verbose=0)
    (tmp_path / "m").mkdir()
    models.save(model, tmp_path / "m", {"classes": list("abcd"), "input_shape": [16, 16, 3], "color_mode": "rgb"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Keras' "Skipping variable loading for optimizer"
        loaded, _ = inference.load(tmp_path / "m")
    # Loaded without its optimizer, whose schedule (TriangleSchedule) is training code
    assert getattr(loaded, "optimizer", None) is None
    x = images[:8].astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


def test_sgd_nesterov_is_compiled_with_its_momentum_and_decoupled_weight_decay():
    p = dataset_params("cifar10", model={**LEVERS, "whitening_patch": 0},
                       train={"optimizer": "sgd_nesterov", "momentum": 0.85, "weight_decay": 0.01})
    model = models.build(p.model, (16, 16, 3), 4)
    training.compile_model(model, p.train, 0.5, 10, 1, 5)
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.nesterov
    assert optimizer.momentum == 0.85 and optimizer.weight_decay == 0.01


def test_pytorch_kernel_init_draws_each_layer_within_one_over_root_fan_in():
    keras.utils.set_random_seed(0)
    bounds = {}
    for kernel_init in ("pytorch", "glorot_uniform"):
        p = dataset_params("cifar10", model={**LEVERS, "filters": [8, 8], "whitening_patch": 0, "dirac_init": False,
                                             "kernel_init": kernel_init})
        model = models.build(p.model, (16, 16, 3), 4)
        kernels = [layer.kernel.numpy() for layer in model.layers if isinstance(layer, (keras.layers.Conv2D,
                                                                                         keras.layers.Dense))]
        bounds[kernel_init] = [np.abs(k).max() * np.sqrt(np.prod(k.shape[:-1])) for k in kernels]
        if kernel_init == "pytorch":
            same_shape = [k for k in kernels if k.shape == (3, 3, 8, 8)]
    assert len(same_shape) == 3 and not any(np.array_equal(a, b) for a, b in zip(same_shape, same_shape[1:]))
    assert all(0.8 < b <= 1.0 + 1e-6 for b in bounds["pytorch"])  # max |w| x sqrt(fan_in); the head has 32 weights
    assert bounds["glorot_uniform"][-1] > 1.5  # Glorot's head (8 -> 4): sqrt(6 x 8 / 12) = 2


def test_triangle_schedule_rises_to_the_rate_at_its_peak_then_falls_to_its_end():
    p = dataset_params("cifar10", model=LEVERS, train={"optimizer": "sgd_nesterov", "schedule": "triangle",
                                                       "triangle": {"start": 0.2, "peak": 0.25, "end": 0.1}})
    model = models.build(p.model, (16, 16, 3), 4)
    training.compile_model(model, p.train, 2.0, epochs=10, warmup_epochs=1, steps_per_epoch=10)
    schedule = model.optimizer._learning_rate  # the schedule itself; learning_rate is its current value
    rates = [float(schedule(step)) for step in (0, 10, 25, 50, 100)]
    np.testing.assert_allclose(rates, [0.4, 0.4 + 1.6 * 10 / 25, 2.0, 2.0 - 1.8 * 25 / 75, 0.2], rtol=1e-6)


def test_alternating_flip_mirrors_each_image_in_every_other_epoch():
    images = np.random.default_rng(1).integers(0, 256, (12, 6, 6, 3), dtype=np.uint8)
    epoch = tf.Variable(0, dtype=tf.int64)
    data = training.input_pipeline(Split(images, np.arange(12)), 12, 12, shuffle_seed=5, flip_epoch=epoch)
    mirrored = []
    for e in range(4):
        epoch.assign(e)
        x, y = next(iter(data))
        order = np.argmax(y, axis=1)
        x = np.asarray(x)[np.argsort(order)]
        assert all(np.array_equal(x[i], images[i]) or np.array_equal(x[i], images[i, :, ::-1]) for i in range(12))
        mirrored.append([not np.array_equal(x[i], images[i]) for i in range(12)])
    mirrored = np.array(mirrored)
    assert (mirrored[0] != mirrored[1]).all() and (mirrored[0] == mirrored[2]).all() and (mirrored[1] == mirrored[3]).all()
    assert 0 < mirrored[0].sum() < 12  # a seeded coin flip decides each image's start


def test_alternating_flip_is_no_layer_but_the_preview_shows_flips():
    p = dataset_params("cifar10", augment={"flip": "horizontal_alternating", "translation": 0.0, "erasing": 0.0})
    policy = augment.policy_from_params(p.augment)
    assert augment.alternating_flip(policy) and not augment.build_layers(policy, 0).layers
    images = np.random.default_rng(2).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    shown = augment.preview(images, policy, seed=0, variants=8)
    assert any(np.array_equal(shown[i, v], images[i, :, ::-1]) for i in range(6) for v in range(1, 9))


class _Weights:
    """Enough of a model for the callback: one weight that the test sets step by step."""

    def __init__(self):
        self.value = np.zeros(1)

    def get_weights(self):
        return [self.value.copy()]

    def set_weights(self, weights):
        self.value = np.array(weights[0])


def test_lookahead_moves_the_weights_to_their_average_with_airbench_decay():
    callback = training.Lookahead(every_steps=2, start_epochs=1, decay=0.9, steps_per_epoch=4, epochs=2)
    weights = _Weights()
    callback.set_model(weights)
    trained = iter([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    seen, average = [], None
    for epoch in range(2):
        callback.on_epoch_begin(epoch)
        for batch in range(4):
            weights.value = np.array([next(trained)])  # what the optimizer step left
            callback.on_train_batch_end(batch)
            seen.append(float(weights.value[0]))
    # epoch 0: no averaging. Epoch 1, steps 5-8: the average starts at step 6 (6.0) and at step 8
    # moves towards 8.0 with rho = 0.9**2 * (8/8)**3 = 0.81
    assert seen[:4] == [1.0, 2.0, 3.0, 4.0]
    average = 0.81 * 6.0 + 0.19 * 8.0
    assert seen[4:6] == [5.0, 6.0] and seen[6] == 7.0
    assert seen[7] == pytest.approx(average)


def test_every_lever_together_learns_a_pattern(tmp_path):
    images, labels = labelled_images(count=320)
    train, val = Split(images[:240], labels[:240]), Split(images[240:], labels[240:])
    p = dataset_params("cifar10", model=LEVERS,
                       augment={"flip": "horizontal_alternating", "translation": 0.0625, "erasing": 0.0},
                       train={"optimizer": "sgd_nesterov", "momentum": 0.85, "learning_rate": 0.2, "epochs": 6,
                              "batch_size": 32, "weight_decay": 0.005, "label_smoothing": 0.2, "warmup_epochs": 1,
                              "early_stopping_patience": 0,
                              "lookahead": {"every_steps": 2, "start_epochs": 2, "decay": 0.9}})
    training.set_seeds(0)
    model = models.build(p.model, images.shape[1:], 4, whitening_images=train.images)
    policy = augment.policy_from_params(p.augment)
    histories = training.fit(model, train, val, 4, p.train, augment.build_layers(policy, 0), 0, tmp_path / "curves",
                             alternating_flip=augment.alternating_flip(policy))
    assert histories[0].history["val_accuracy"][-1] >= 0.9
