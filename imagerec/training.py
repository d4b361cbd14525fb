"""Compile-and-fit wiring: seeds, the tf.data input pipeline, schedule, callbacks, curves."""
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep stage logs readable

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from .datasets import Split, seeded_sample  # noqa: E402
from .errors import ImagerecError  # noqa: E402

# The CPU features that change which kernels TF and oneDNN pick, and with them the last bits of
# every sum: the same seed gives other weights on a CPU with a different set.
KERNEL_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                    "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


def environment() -> dict:
    """What produced a result, beside it in the model card: the same seed on another CPU or with
    other TF, Keras or NumPy versions gives slightly different weights (docs/results.md)."""
    import platform

    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu in ("", platform.machine()):
                cpu = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags.update(value.split())
    except OSError:  # not Linux: the model name from platform is what there is
        pass
    return {
        "cpu": cpu,
        "cpu_flags": " ".join(flag for flag in KERNEL_CPU_FLAGS if flag in flags),  # a string: dvc metrics diff shows it
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }

def set_seeds(seed: int, deterministic_ops: bool = True) -> None:
    """Seeded Python/NumPy/TF RNGs; with `deterministic_ops`, TF's deterministic kernels too, so the
    same seed on the same machine gives the same bits. XLA (`train.jit_compile`) needs them off:
    Keras' compile refuses to XLA-compile while TF's op determinism is on."""
    from tensorflow.python.framework.config import disable_op_determinism  # TF has no public off switch

    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()
    else:  # explicitly: an earlier run in this process (a test, a benchmark) may have turned it on
        disable_op_determinism()


def input_pipeline(split: Split, num_classes: int, batch_size: int, shuffle_seed: int | None = None,
                   augmentation: keras.Model | None = None, flip_epoch: tf.Variable | None = None) -> tf.data.Dataset:
    """Batches of (float32 pixels 0..255, one-hot labels), augmented if asked.

    The images are gathered batch by batch from the split's arrays (memory-mapped .npy files),
    so memory holds a few batches, not the dataset, however large it is.

    flip_epoch: the alternating flip (augment.alternating_flip): each image is mirrored when its
    seeded coin flip differs from the parity of the epoch this variable holds (AlternatingFlip
    sets it as each epoch begins, before Keras reads the epoch's first batch)."""
    images, labels = split.images, split.labels
    if flip_epoch is not None:
        flipped_in_odd_epochs = np.random.default_rng(shuffle_seed).random(len(labels)) < 0.5

    def gather(index, epoch):
        index = np.sort(index)  # sequential reads of the memory map; the batch's members stay random
        x = np.asarray(images[index])
        if flip_epoch is not None:
            mirror = flipped_in_odd_epochs[index] == bool(epoch % 2)
            x[mirror] = x[mirror, :, ::-1]
        return x, np.asarray(labels[index], np.int64)

    def to_tensors(index):
        epoch = flip_epoch.value() if flip_epoch is not None else tf.constant(0, tf.int64)
        x, y = tf.numpy_function(gather, [index, epoch], (tf.uint8, tf.int64), stateful=flip_epoch is not None)
        x.set_shape((None, *images.shape[1:]))
        y.set_shape((None,))
        return tf.cast(x, tf.float32), tf.one_hot(y, num_classes)

    data = tf.data.Dataset.range(len(labels))
    if shuffle_seed is not None:
        data = data.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size).map(to_tensors, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augmentation is not None and augmentation.layers:
        data = data.map(lambda x, y: (augmentation(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
    options = tf.data.Options()
    # Several workers each read their own share of the batches (there are no files to share out).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.with_options(options).prefetch(tf.data.AUTOTUNE)


class AlternatingFlip(keras.callbacks.Callback):
    """Tells the input pipeline which epoch begins (input_pipeline's flip_epoch)."""

    def __init__(self, epoch: tf.Variable):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)


class Lookahead(keras.callbacks.Callback):
    """airbench's weight averaging (params.Lookahead): from epoch `start_epochs` on, every
    `every_steps` steps the average moves towards the weights (batch norm's moving statistics
    included) and the weights are set to it; the decay per averaging, decay**every_steps, is
    scaled by (step / total_steps)**3, so the average follows closely early and smooths at the
    end. Each epoch's last step ends on the average, which validation and the saved model see."""

    def __init__(self, every_steps: int, start_epochs: int, decay: float, steps_per_epoch: int, epochs: int):
        super().__init__()
        self.every_steps, self.start_epochs, self.decay = every_steps, start_epochs, decay
        self.steps_per_epoch, self.total_steps = steps_per_epoch, steps_per_epoch * epochs
        self.step, self.epoch, self.average = 0, 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.epoch >= self.start_epochs and self.step % self.every_steps == 0:
            weights = self.model.get_weights()
            if self.average is None:
                self.average = weights
            else:
                rho = self.decay ** self.every_steps * (self.step / self.total_steps) ** 3
                self.average = [rho * a + (1 - rho) * w for a, w in zip(self.average, weights)]
                self.model.set_weights(self.average)
        if batch == self.steps_per_epoch - 1 and self.average is not None:  # before Keras validates
            self.model.set_weights(self.average)


@keras.saving.register_keras_serializable(package="imagerec")
class TriangleSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """params.Triangle: linear from start x rate up to the rate at step int(peak x total_steps),
    then linear down to end x rate at the last step (airbench's `triangle`)."""

    def __init__(self, learning_rate: float, total_steps: int, start: float, peak: float, end: float):
        self.learning_rate, self.total_steps = learning_rate, total_steps
        self.start, self.peak, self.end = start, peak, end

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        top = float(int(self.peak * self.total_steps))
        rising = self.start + (1 - self.start) * step / max(top, 1.0)
        falling = 1 + (self.end - 1) * (step - top) / max(self.total_steps - top, 1.0)
        return self.learning_rate * keras.ops.where(step < top, rising, falling)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps,
                "start": self.start, "peak": self.peak, "end": self.end}


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """Works around two bugs of Keras 3's fit under MultiWorkerMirroredStrategy (keras-team/keras#20585):
    it reduces its first (x, y) batch with one `reduce` call (MirroredStrategy maps a nest, this
    strategy does not), and it reduces the scalar loss and metrics with axis=0."""

    def reduce(self, reduce_op, value, axis):
        def one(v):
            scalar = getattr(self.experimental_local_results(v)[0], "shape", None) == ()
            return super(_MultiWorkerMirroredStrategy, self).reduce(reduce_op, v, None if scalar else axis)
        return tf.nest.map_structure(one, value)


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """default: one device. mirrored: a replica on every local GPU, or on every logical CPU device
    where there is no GPU. multi_worker: a replica per worker process, configured by TF_CONFIG
    (create it before any other TensorFlow work in the process)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":
        return _MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown distribution strategy {name!r}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the outputs (every process but the workers of multi_worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return True
    if "chief" in cluster:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def compile_model(model: keras.Model, train_params, learning_rate: float, epochs: int, warmup_epochs: int,
                  steps_per_epoch: int) -> None:
    """Adam (AdamW with weight decay) or Nesterov SGD at a constant rate, by cosine decay after a
    linear warm-up, or by airbench's triangle; the train step XLA-compiled if
    `train_params.jit_compile`. A mixed-precision model gets Keras' loss scaling from `compile` itself."""
    rate = learning_rate
    if train_params.schedule == "cosine":
        warmup = min(warmup_epochs, epochs - 1) * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else learning_rate, decay_steps=epochs * steps_per_epoch - warmup,
            warmup_target=learning_rate if warmup else None, warmup_steps=warmup)
    elif train_params.schedule == "triangle":
        shape = train_params.triangle
        rate = TriangleSchedule(learning_rate, epochs * steps_per_epoch, shape.start, shape.peak, shape.end)
    if train_params.optimizer == "sgd_nesterov":
        optimizer = keras.optimizers.SGD(rate, momentum=train_params.momentum, nesterov=True,
                                         weight_decay=train_params.weight_decay or None)
    elif train_params.weight_decay:
        optimizer = keras.optimizers.AdamW(rate, weight_decay=train_params.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(rate)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=train_params.label_smoothing),
        metrics=["accuracy"],
        jit_compile=train_params.jit_compile,  # explicit: Keras' "auto" turns XLA on wherever there is a GPU
    )
    if train_params.jit_compile and not model.jit_compile:  # Keras only warns, and trains without XLA
        raise ImagerecError("train.jit_compile: Keras turned XLA off for this model "
                            "(TF op determinism is on, or a layer or platform does not support XLA)")


WHITENING_IMAGES = 5000  # airbench fits its whitening layer on 5,000 training images


def whitening_images(model_params, train_images: np.ndarray, seed: int) -> np.ndarray | None:
    """The training images a CNN's whitening layer (model.whitening_patch) is fit on: a seeded
    sample, so the layer is the same on every run of the seed. None when the model has no such layer."""
    if not getattr(model_params, "whitening_patch", 0):
        return None
    return train_images[seeded_sample(len(train_images), WHITENING_IMAGES, seed)]


def fit(model: keras.Model, train: Split, val: Split, num_classes: int, train_params,
        augmentation: keras.Model, seed: int, curves_dir: Path,
        strategy: tf.distribute.Strategy | None = None, alternating_flip: bool = False) -> list[keras.callbacks.History]:
    """Train with validation, early stopping (best weights restored) and per-epoch curves in
    `curves_dir` (dvclive's layout: plots/metrics/{train,eval}/<metric>.tsv; metrics.json holds
    the last epoch's scores and the training wall time).

    Two phases when `train_params.fine_tune` is set: the new head on the frozen pretrained base,
    then the top layers of the base too, at a lower rate; both phases' epochs in one curve.
    `batch_size` and the learning rates are per replica: with N replicas the global batch is N
    times larger and so are the rates (the linear scaling rule)."""
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    from .models import check_input_shape, unfreeze_top

    check_input_shape(model, train.images.shape[1:])
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    batch_size = train_params.batch_size * replicas
    steps_per_epoch = math.ceil(len(train.labels) / batch_size)
    flip_epoch = tf.Variable(0, dtype=tf.int64, trainable=False) if alternating_flip else None
    train_data = input_pipeline(train, num_classes, batch_size, shuffle_seed=seed, augmentation=augmentation,
                                flip_epoch=flip_epoch)
    val_data = input_pipeline(val, num_classes, batch_size)
    phases = [(train_params.learning_rate, train_params.epochs, train_params.warmup_epochs)]
    if train_params.fine_tune:
        phases.append((train_params.fine_tune.learning_rate, train_params.fine_tune.epochs, 0))
    histories = []
    started = time.monotonic()
    # dvcyaml=None: the pipeline's dvc.yaml declares the plots itself; dvclive must not edit it.
    with Live(str(curves_dir), dvcyaml=None, save_dvc_exp=False) as live:
        for rate, epochs, warmup in phases:
            if histories:  # the second phase: fine-tuning
                unfreeze_top(model, train_params.fine_tune.layers)
            with strategy.scope():
                compile_model(model, train_params, rate * replicas, epochs, warmup, steps_per_epoch)
            callbacks = [DVCLiveCallback(live=live)]
            if flip_epoch is not None:
                callbacks.append(AlternatingFlip(flip_epoch))
            if train_params.lookahead and not histories:  # the first phase's: a CNN has no second
                lookahead = train_params.lookahead
                callbacks.append(Lookahead(lookahead.every_steps, lookahead.start_epochs, lookahead.decay,
                                           steps_per_epoch, epochs))
            if train_params.early_stopping_patience:
                callbacks.append(keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=train_params.early_stopping_patience, restore_best_weights=True))
            done = sum(len(history.epoch) for history in histories)
            histories.append(model.fit(
                train_data, validation_data=val_data, initial_epoch=done, epochs=done + epochs,
                callbacks=callbacks,
                shuffle=False,  # the input pipeline shuffles, seeded
                verbose=1 if sys.stdout.isatty() else 2,
            ))
        # In the summary (metrics.json, written when the context ends) beside the last epoch's
        # scores, for `dvc exp show`.
        live.log_metric("train_seconds", round(time.monotonic() - started, 1), plot=False)
        live.summary["environment"] = environment()
    return histories
