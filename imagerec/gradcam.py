"""Grad-CAM heat maps: which parts of an image the last convolutional feature map used for a class.

Works on the two model shapes imagerec.models builds, both a plain stack of layers ending in a
Dense classifier (with a softmax, or scaled scores and a softmax): the CNN (its feature map is
the output of the last convolution block: the last Conv2D and the pooling, batch norm, offset
and activation that follow it) and the MobileNetV2 transfer
model (the output of the nested convolutional base, a layer of the outer model).
"""
import weakref

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from .errors import ImagerecError
from .models import Offset

_CONVOLUTIONS = (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D)
# Layers that finish a convolution block (imagerec's CNN pools right after its first convolution):
# their output is still "the block's feature map".
_BLOCK_TAIL = (layers.BatchNormalization, Offset, layers.ReLU, layers.Activation, layers.MaxPooling2D)


def feature_layer(model: keras.Model) -> keras.layers.Layer:
    """The outer-model layer whose output is the last convolutional feature map (rank 4)."""
    found, extending = None, False
    for layer in model.layers:
        if isinstance(layer, _CONVOLUTIONS) or (isinstance(layer, keras.Model) and len(layer.output.shape) == 4):
            found, extending = layer, True
        elif extending and isinstance(layer, _BLOCK_TAIL):
            found = layer
        else:
            extending = False
    if found is None:
        raise ImagerecError(f"model {model.name!r} has no convolutional feature map for Grad-CAM "
                            "(no Conv2D layer and no nested convolutional base)")
    return found


_REBUILT = weakref.WeakKeyDictionary()  # model -> its gradient model: a server explains one model many times


def _gradient_model(model: keras.Model) -> tuple[keras.Model, list[keras.layers.Layer]]:
    """inputs -> [feature map, input of the final Dense], rebuilt by calling the layers in order
    (once per model: rebuilding it per call would slowly fill Keras' graph state), and the head:
    the final Dense and what follows it."""
    if model not in _REBUILT:
        _REBUILT[model] = _rebuild(model)
    return _REBUILT[model]


def _rebuild(model: keras.Model) -> tuple[keras.Model, list[keras.layers.Layer]]:
    # The head: a Dense with a softmax, or a linear Dense, a Rescaling of its scores and a Softmax.
    dense_at = max((i for i, layer in enumerate(model.layers) if isinstance(layer, layers.Dense)), default=None)
    head = model.layers[dense_at:] if dense_at is not None else []
    if not head or [type(layer) for layer in head[1:]] not in ([], [layers.Rescaling, layers.Softmax]):
        raise ImagerecError(f"model {model.name!r} does not end in a Dense classifier; Grad-CAM needs its class scores")
    target = feature_layer(model)
    inputs = keras.Input(model.input_shape[1:])
    x, features = inputs, None
    try:
        for layer in model.layers[:dense_at]:
            if isinstance(layer, layers.InputLayer):
                continue
            x = layer(x)
            if layer is target:
                features = x
    except (ValueError, TypeError) as err:  # e.g. a merge layer given one input
        raise ImagerecError(f"model {model.name!r} is not a plain stack of layers; cannot rebuild it for "
                            f"Grad-CAM ({' '.join(str(err).split())[:120]})") from None
    return keras.Model(inputs, [features, x]), head


def heatmaps(model: keras.Model, images: np.ndarray, class_indices: np.ndarray | None = None,
             method: str = "gradcam") -> np.ndarray:
    """A heat map per image for the given classes (default: the predicted ones): an array (n, H, W)
    of the images' size, 0 (no evidence) to 1 (the strongest evidence in that image).

    method "gradcam" weighs each feature-map channel by its gradient averaged over the map
    (Selvaraju et al. 2017); "hirescam" multiplies gradient and activation position by position
    (Draelos & Carin 2020). The two agree when the head pools globally (MobileNetV2); for a CNN
    whose head flattens the map, averaging mixes up positions and "hirescam" is the faithful one.
    The gradient is taken of the class score before the softmax, so confident predictions do
    not flatten it. A model that is not a plain stack of layers is refused rather than mis-read.
    """
    if method not in ("gradcam", "hirescam"):
        raise ValueError(f"unknown heat-map method {method!r}")
    gradient_model, (dense, *after) = _gradient_model(model)
    x = tf.convert_to_tensor(np.asarray(images), dtype=tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)  # record every op from the input on, whatever the trainable flags of the variables
        features, pooled = gradient_model(x, training=False)
        scores = tf.matmul(pooled, dense.kernel) + (dense.bias if dense.use_bias else 0.0)
        if after:  # the logits' scale (model.logit_scale)
            scores = after[0](scores)
        if class_indices is None:
            class_indices = tf.argmax(scores, axis=1)
        chosen = tf.gather(scores, tf.cast(class_indices, tf.int32), axis=1, batch_dims=1)
    probabilities = after[-1](scores) if after else dense.activation(scores)
    if not np.allclose(probabilities, model(x, training=False), atol=1e-4):
        raise ImagerecError(f"model {model.name!r} is not a plain stack of layers; Grad-CAM cannot rebuild it")
    gradients = tape.gradient(chosen, features)
    if method == "gradcam":
        gradients = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)  # one weight per channel
    cam = tf.nn.relu(tf.reduce_sum(gradients * features, axis=-1))
    cam = tf.image.resize(cam[..., None], x.shape[1:3], method="bilinear")[..., 0]
    cam = tf.math.divide_no_nan(cam, tf.reduce_max(cam, axis=(1, 2), keepdims=True))
    return np.clip(cam.numpy(), 0.0, 1.0)
