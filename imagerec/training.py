"""Compile-and-fit wiring: seeds, the tf.data input pipeline, schedule, callbacks, curves."""
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep stage logs readable

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from .datasets import Split  # noqa: E402
from .errors import ImagerecError  # noqa: E402


def set_seeds(seed: int) -> None:
    """Same seed, same CPU, same result: seeded Python/NumPy/TF RNGs and deterministic TF ops."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def input_pipeline(split: Split, num_classes: int, batch_size: int, shuffle_seed: int | None = None,
                   augmentation: keras.Model | None = None) -> tf.data.Dataset:
    """uint8 arrays -> batches of (float32 pixels 0..255, one-hot labels), augmented if asked."""
    data = tf.data.Dataset.from_tensor_slices((np.asarray(split.images), split.labels))
    if shuffle_seed is not None:
        data = data.shuffle(len(split.labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size).map(
        lambda x, y: (tf.cast(x, tf.float32), tf.one_hot(y, num_classes)), num_parallel_calls=tf.data.AUTOTUNE
    )
    if augmentation is not None and augmentation.layers:
        data = data.map(lambda x, y: (augmentation(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def check_input_shape(model: keras.Model, image_shape: tuple) -> None:
    expected = tuple(model.input_shape[1:])
    if expected != tuple(image_shape):
        raise ImagerecError(f"model expects images of shape {expected}, the dataset has {tuple(image_shape)}")


def compile_model(model: keras.Model, train_params, steps_per_epoch: int) -> None:
    rate = train_params.learning_rate
    if train_params.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=train_params.epochs * steps_per_epoch)
    if train_params.weight_decay:
        optimizer = keras.optimizers.AdamW(rate, weight_decay=train_params.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(rate)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=train_params.label_smoothing),
        metrics=["accuracy"],
    )


def fit(model: keras.Model, train: Split, val: Split, num_classes: int, train_params,
        augmentation: keras.Model, seed: int, curves_dir: Path) -> keras.callbacks.History:
    """Train with validation, early stopping (best weights restored) and per-epoch curves in
    `curves_dir` (dvclive's layout: plots/metrics/{train,eval}/<metric>.tsv)."""
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    check_input_shape(model, train.images.shape[1:])
    batch_size = train_params.batch_size
    compile_model(model, train_params, math.ceil(len(train.labels) / batch_size))
    # dvcyaml=None: the pipeline's dvc.yaml declares the plots itself; dvclive must not edit it.
    live = Live(str(curves_dir), dvcyaml=None, save_dvc_exp=False)
    callbacks = [DVCLiveCallback(live=live)]
    if train_params.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=train_params.early_stopping_patience, restore_best_weights=True))
    return model.fit(
        input_pipeline(train, num_classes, batch_size, shuffle_seed=seed, augmentation=augmentation),
        validation_data=input_pipeline(val, num_classes, batch_size),
        epochs=train_params.epochs,
        callbacks=callbacks,
        shuffle=False,  # the input pipeline shuffles, seeded
        verbose=1 if sys.stdout.isatty() else 2,
    )


def predict(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities; calls the model on whole batches (model.predict is slow on CPU)."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = tf.convert_to_tensor(np.asarray(images[start:start + batch_size]), dtype=tf.float32)
        out.append(np.asarray(model(batch, training=False)))
    probabilities = np.concatenate(out).astype(np.float64)
    return probabilities / probabilities.sum(axis=1, keepdims=True)  # exact sums after float32 softmax
