"""Model builders by name. Every model takes uint8-range pixels (0..255) and returns class
probabilities, so a saved model needs no preprocessing code beside it."""
from pathlib import Path

import keras
from keras import layers


def cnn(input_shape, num_classes, filters, convs_per_block, batch_norm, dense_units, dropout, pooling="flatten"):
    """A CNN from scratch: per block, a 3x3 convolution, 2x2 max pooling, then the block's other
    3x3 convolutions at half the size (pooling early spares the later convolutions three
    quarters of their work, airbench's layout); batch norm and ReLU after every convolution.
    The head flattens the last feature map, or takes each channel's maximum (global_max)."""
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    for width in filters:
        for i in range(convs_per_block):
            x = layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm)(x)
            if i == 0:
                x = layers.MaxPooling2D()(x)
            if batch_norm:
                x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
    x = {"flatten": layers.Flatten, "global_max": layers.GlobalMaxPooling2D}[pooling]()(x)
    if dense_units:
        x = layers.Dropout(dropout)(x)
        x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="cnn")


def mobilenet_v2(input_shape, num_classes, dropout, weights: Path | None):
    """MobileNetV2 (alpha 1.0) base, frozen, with a new pooling-dropout-dense head."""
    base = keras.applications.MobileNetV2(
        input_shape=input_shape, alpha=1.0, include_top=False, weights=str(weights) if weights else None,
        name=BASE_NAME,
    )
    base.trainable = False
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)  # MobileNetV2 expects [-1, 1]
    x = base(x, training=False)  # batch norm stays in inference mode, also once fine-tuning unfreezes it
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mobilenet_v2_transfer")


BASE_NAME = "pretrained_base"


def unfreeze_top(model: keras.Model, layers_count: int) -> None:
    """Make the top `layers_count` layers of the pretrained base trainable (fine-tuning)."""
    base = model.get_layer(BASE_NAME)
    base.trainable = True
    for layer in base.layers[: max(len(base.layers) - layers_count, 0)]:
        layer.trainable = False


def build(model_params, input_shape, num_classes, weights: Path | None = None) -> keras.Model:
    settings = model_params.model_dump(exclude={"name", "pretrained"})
    if model_params.name == "cnn":
        return cnn(input_shape, num_classes, **settings)
    if model_params.name == "mobilenet_v2":
        return mobilenet_v2(input_shape, num_classes, weights=weights, **settings)
    raise ValueError(f"unknown model {model_params.name!r}")


MODEL_FILE = "model.keras"
CARD_FILE = "model.json"


def save(model: keras.Model, model_dir: Path, card: dict) -> None:
    """The model and its card (labels, input size, colour mode, scaling): a self-contained dir."""
    from .files import write_json

    model.save(Path(model_dir) / MODEL_FILE)
    write_json(Path(model_dir) / CARD_FILE, card)


def load(model_dir: Path) -> tuple[keras.Model, dict]:
    """Load with Keras' safe mode: a model that needs arbitrary code (a Lambda layer) is refused."""
    from .errors import ImagerecError
    from .files import read_json

    model_dir = Path(model_dir)
    for name in (MODEL_FILE, CARD_FILE):
        if not (model_dir / name).is_file():
            raise ImagerecError(f"{model_dir}: incomplete model directory ({name} missing)")
    try:
        model = keras.models.load_model(model_dir / MODEL_FILE, safe_mode=True)
    except ValueError as err:
        raise ImagerecError(f"{model_dir / MODEL_FILE}: refused to load: {' '.join(str(err).split())[:200]}") from None
    return model, read_json(model_dir / CARD_FILE)
