"""Model builders by name. Every model takes uint8-range pixels (0..255) and returns class
probabilities, so a saved model needs no preprocessing code beside it."""
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import keras
import numpy as np
from keras import layers


def cnn(input_shape, num_classes, filters, convs_per_block, batch_norm, dense_units, dropout, pooling="flatten",
        batch_norm_momentum=0.99, activation="relu", whitening_patch=0, dirac_init=False, batch_norm_scale=True,
        batch_norm_bias_multiplier=1.0, logit_scale=1.0, batch_norm_epsilon=1e-3, kernel_init="glorot_uniform",
        whitening_images=None):
    """A CNN from scratch: per block, a 3x3 convolution, 2x2 max pooling, then the block's other
    3x3 convolutions at half the size (pooling early spares the later convolutions three
    quarters of their work, airbench's layout); batch norm and the activation after every
    convolution. The head flattens the last feature map, or takes each channel's maximum
    (global_max).

    batch_norm_momentum is Keras' (the weight of the old moving statistics): lower values
    follow the training weights sooner, which a short run needs. batch_norm_epsilon is added to
    the batch's variance (Keras' 1e-3, airbench's 1e-12). airbench's levers (issue 18, each off
    by default):
    - whitening_patch: a frozen first convolution that whitens the image's patches of this side
      (whitening_weights, from `whitening_images`), with no batch norm after it;
    - dirac_init: every block convolution starts as the identity on its input channels;
    - batch_norm_scale=False: batch norm without its per-channel weight;
    - batch_norm_bias_multiplier m: batch norm's offset is m times a trained variable (Offset),
      which multiplies the offset's learning rate by m**2 under SGD (8: airbench's 64x);
    - logit_scale: the classifier's outputs are multiplied by it before the softmax (airbench:
      1/9), which slows the head's learning as airbench's learning rate expects;
    - kernel_init="pytorch": convolutions and classifier start uniform within 1/sqrt(fan_in),
      PyTorch's default, where Keras' Glorot bound also counts the outputs."""
    def init():  # a new initializer per layer: an unseeded instance draws the same values on every call
        if kernel_init == "glorot_uniform":
            return "glorot_uniform"
        # PyTorch's kaiming_uniform(a=sqrt(5)): bound sqrt(3 x scale / fan_in) = 1 / sqrt(fan_in)
        return keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")
    def activate(x):  # ReLU as its own layer, as models trained before the activation lever have it
        return layers.ReLU()(x) if activation == "relu" else layers.Activation(activation)(x)

    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    if whitening_patch:
        channels = 2 * whitening_patch ** 2 * input_shape[-1]
        # Frozen, its bias too: together they standardise and whiten the patches. A bias that starts
        # at zero learns after it, as airbench's does on standardised images, so that weight decay
        # pulls it towards centred patches, not towards raw pixels (a layer of its own, since a
        # variable's trainable flag is not saved, a layer's is).
        whitening = layers.Conv2D(channels, whitening_patch, trainable=False, name="whitening")
        x = Offset(1.0, name="whitening_bias")(whitening(x))
        if whitening_images is not None:
            whitening.set_weights(whitening_weights(whitening_images, whitening_patch))
        x = activate(x)
    for width in filters:
        for i in range(convs_per_block):
            conv = layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm, kernel_initializer=init())
            x = conv(x)
            if dirac_init:
                conv.kernel.assign(dirac(conv.kernel.numpy()))
            if i == 0:
                x = layers.MaxPooling2D()(x)
            if batch_norm:
                separate_offset = batch_norm_bias_multiplier != 1
                x = layers.BatchNormalization(momentum=batch_norm_momentum, epsilon=batch_norm_epsilon,
                                              scale=batch_norm_scale, center=not separate_offset)(x)
                if separate_offset:
                    x = Offset(batch_norm_bias_multiplier)(x)
            x = activate(x)
    x = {"flatten": layers.Flatten, "global_max": layers.GlobalMaxPooling2D}[pooling]()(x)
    if dense_units:
        x = layers.Dropout(dropout)(x)
        x = layers.Dense(dense_units, activation="relu", kernel_initializer=init())(x)
    x = layers.Dropout(dropout)(x)
    if logit_scale == 1:
        outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", kernel_initializer=init())(x)
    else:
        head = layers.Dense(num_classes, dtype="float32", kernel_initializer=init())
        logits = layers.Rescaling(logit_scale, dtype="float32")(head(x))
        outputs = layers.Softmax(dtype="float32")(logits)
    return keras.Model(inputs, outputs, name="cnn")


def whitening_weights(images, patch: int, eps: float = 5e-4, chunk: int = 500):
    """airbench's whitening layer for uint8 `images` (N, H, W, C): the kernel is the
    eigenvectors of the patches' covariance, each divided by the square root of its eigenvalue,
    once as it is and once negated (a ReLU or GELU after it keeps both signs); the patches are
    those of images scaled to 0..1 and standardised per channel. The standardisation is folded
    into the kernel and the bias, so the layer takes the 0..1 pixels the model has."""
    images = np.asarray(images)
    channels = images.shape[-1]
    pixels = images.reshape(-1, channels).astype(np.float64) / 255
    mean, std = pixels.mean(axis=0), pixels.std(axis=0) + 1e-8
    size = patch * patch * channels
    second_moment, count = np.zeros((size, size)), 0
    for start in range(0, len(images), chunk):  # the patches of every image at once would not fit
        x = (images[start:start + chunk].astype(np.float32) / 255 - mean) / std
        windows = np.lib.stride_tricks.sliding_window_view(x, (patch, patch), axis=(1, 2))
        # (n, rows, cols, C, kh, kw) -> rows in the kernel's own order (kh, kw, C)
        flat = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size).astype(np.float64)
        second_moment += flat.T @ flat
        count += len(flat)
    values, vectors = np.linalg.eigh(second_moment / count)
    scaled = vectors[:, ::-1] / np.sqrt(values[::-1] + eps)  # largest eigenvalue first
    kernel = np.concatenate([scaled, -scaled], axis=1).reshape(patch, patch, channels, 2 * size)
    kernel = kernel / std[None, None, :, None]
    bias = -(kernel * mean[None, None, :, None]).sum(axis=(0, 1, 2))
    return [kernel.astype(np.float32), bias.astype(np.float32)]


def dirac(kernel):
    """A (kh, kw, in, out) kernel whose first min(in, out) output channels copy their input
    channel (the identity at the kernel's centre); the other output channels keep their values."""
    kernel = np.array(kernel)
    kh, kw, n_in, n_out = kernel.shape
    n = min(n_in, n_out)
    kernel[:, :, :, :n] = 0
    kernel[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1
    return kernel


@keras.saving.register_keras_serializable(package="imagerec")
class Offset(layers.Layer):
    """A per-channel offset stored divided by `multiplier`: a gradient step moves the offset
    multiplier**2 times as far under SGD (multiplier times under Adam), which gives batch norm's
    offsets a larger learning rate than the other weights without an optimizer of its own."""

    def __init__(self, multiplier: float, **kwargs):
        super().__init__(**kwargs)
        self.multiplier = float(multiplier)

    def build(self, input_shape):
        self.offset = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="offset")

    def call(self, x):
        return x + self.multiplier * self.offset

    def get_config(self):
        return {**super().get_config(), "multiplier": self.multiplier}


@dataclass(frozen=True)
class Backbone:
    application: str  # the keras.applications constructor
    default_size: int  # the input side its ImageNet weights were trained at: the default image_size
    min_size: int  # the smallest input side keras.applications accepts
    scale_to_unit_range: bool  # True: the base expects [-1, 1]; False: it takes 0..255 itself
    options: tuple[tuple[str, object], ...] = ()  # further constructor arguments


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone("MobileNetV2", 224, 32, True, (("alpha", 1.0),)),
    # Its own preprocessing (rescale, ImageNet mean and variance) is part of the base.
    "efficientnet_v2_b0": Backbone("EfficientNetV2B0", 224, 32, False, (("include_preprocessing", True),)),
    "resnet50_v2": Backbone("ResNet50V2", 224, 32, True),
}
BASE_NAME = "pretrained_base"


def _base(backbone: str, input_shape, weights: Path | None) -> keras.Model:
    spec = BACKBONES[backbone]
    base = getattr(keras.applications, spec.application)(
        input_shape=input_shape, include_top=False, weights=str(weights) if weights else None, **dict(spec.options),
    )
    # Renamed after it is built: EfficientNetV2 picks its preprocessing by its name's "-b0" suffix.
    base.name = BASE_NAME
    base.trainable = False
    return base


def transfer(input_shape, num_classes, dropout, weights: Path | None, backbone: str):
    """A pretrained base (BACKBONES), frozen, with a new pooling-dropout-dense head."""
    base = _base(backbone, input_shape, weights)
    inputs = keras.Input(input_shape)
    x = inputs
    if BACKBONES[backbone].scale_to_unit_range:
        x = layers.Rescaling(1 / 127.5, offset=-1)(x)
    x = base(x, training=False)  # batch norm stays in inference mode, also once fine-tuning unfreezes it
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"{backbone}_transfer")


def mobilenet_v2(input_shape, num_classes, dropout, weights: Path | None):
    """MobileNetV2 (alpha 1.0) base, frozen, with a new pooling-dropout-dense head."""
    return transfer(input_shape, num_classes, dropout, weights, "mobilenet_v2")


def unfreeze_top(model: keras.Model, layers_count: int) -> None:
    """Make the top `layers_count` layers of the pretrained base trainable (fine-tuning)."""
    base = model.get_layer(BASE_NAME)
    base.trainable = True
    for layer in base.layers[: max(len(base.layers) - layers_count, 0)]:
        layer.trainable = False


def build(model_params, input_shape, num_classes, weights: Path | None = None,
          mixed_precision: bool = False, whitening_images=None) -> keras.Model:
    """The model `model_params` names. mixed_precision: its layers compute in float16 and keep
    float32 weights (Keras' mixed_float16 policy, a GPU speed-up); the output layer stays float32.
    whitening_images: training images for a CNN's whitening layer (model.whitening_patch); without
    them that layer keeps random weights, for a model whose weights are set afterwards."""
    settings = model_params.model_dump(exclude={"name", "pretrained"})
    transfers = {name: partial(transfer, weights=weights, backbone=name) for name in BACKBONES}
    builder = {"cnn": partial(cnn, whitening_images=whitening_images), **transfers}.get(model_params.name)
    if builder is None:
        raise ValueError(f"unknown model {model_params.name!r}")
    # Layers take the global policy when they are built; the model keeps it after it is reset.
    keras.mixed_precision.set_dtype_policy("mixed_float16" if mixed_precision else "float32")
    try:
        return builder(input_shape, num_classes, **settings)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def as_float32(model: keras.Model, model_params) -> keras.Model:
    """The same model and weights computing in float32: what a mixed-precision model is saved as,
    so that evaluation, export and serving behave the same on any device."""
    if model.dtype_policy.name == "float32":
        return model
    twin = build(model_params, model.input_shape[1:], model.output_shape[-1])
    twin.set_weights(model.get_weights())
    return twin


MODEL_FILE = "model.keras"
CARD_FILE = "model.json"


def save(model: keras.Model, model_dir: Path, card: dict) -> None:
    """The model and its card (labels, input size, colour mode, scaling): a self-contained dir."""
    from .files import write_json

    model.save(Path(model_dir) / MODEL_FILE)
    _drop_save_time(Path(model_dir) / MODEL_FILE)
    write_json(Path(model_dir) / CARD_FILE, card)


def _drop_save_time(path: Path) -> None:
    """Rewrite a .keras zip without the moment it was saved (metadata.json's date_saved, each
    member's zip timestamp): identical weights then give an identical file, so DVC spares a
    retrain's unchanged model the evaluate and export stages."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as saved:
        members = [(info, saved.read(info)) for info in saved.infolist()]
    with zipfile.ZipFile(path, "w") as fixed:
        for info, data in members:
            if info.filename == "metadata.json":
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "date_saved"}).encode()
            fixed.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), data,
                           compress_type=info.compress_type)


def check_input_shape(model: keras.Model, image_shape: tuple) -> None:
    from .errors import ImagerecError

    expected = tuple(model.input_shape[1:])
    if expected != tuple(image_shape):
        raise ImagerecError(f"model expects images of shape {expected}, the dataset has {tuple(image_shape)}")
