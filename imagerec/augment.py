"""The augmentation policy: which random transforms training applies, and how strongly.

The augment stage saves the policy (a small JSON) and a preview; training applies it on the
fly in the tf.data pipeline, so every epoch sees fresh variations instead of a fixed set of
materialised copies, and the disk holds the dataset once.
"""
import numpy as np

POLICY_FILE = "policy.json"


def policy_from_params(augment) -> dict:
    """The policy as plain data: only the transforms that are switched on."""
    if not augment.enabled:
        return {"enabled": False, "fill_mode": augment.fill_mode, "interpolation": augment.interpolation, "ops": []}
    ops = []
    if augment.flip != "none":
        ops.append({"op": "flip", "mode": augment.flip})
    for op in ("rotation", "zoom", "translation", "contrast", "erasing"):
        strength = getattr(augment, op)
        if strength > 0:
            ops.append({"op": op, "factor": strength})
    return {"enabled": True, "fill_mode": augment.fill_mode, "interpolation": augment.interpolation, "ops": ops}


ALTERNATING_FLIP = "horizontal_alternating"


def alternating_flip(policy: dict) -> bool:
    """Whether the policy mirrors each image every other epoch: the input pipeline does that
    (training.input_pipeline), as it alone knows which image and epoch a batch holds."""
    return {"op": "flip", "mode": ALTERNATING_FLIP} in policy["ops"]


def build_layers(policy: dict, seed: int, preview: bool = False):
    """The policy as a Keras Sequential of random layers (identity when disabled). The
    alternating flip is no layer; a `preview` shows it as a random horizontal flip, which mirrors
    as many images, just not in turn."""
    import keras

    layers = []
    resample = {"fill_mode": policy["fill_mode"], "interpolation": policy["interpolation"]}
    for i, op in enumerate(policy["ops"]):
        op_seed = seed + i  # each layer its own stream, all fixed by the dataset seed
        if op == {"op": "flip", "mode": ALTERNATING_FLIP}:
            if preview:
                layers.append(keras.layers.RandomFlip("horizontal", seed=op_seed))
        elif op["op"] == "flip":
            layers.append(keras.layers.RandomFlip(op["mode"], seed=op_seed))
        elif op["op"] == "rotation":
            layers.append(keras.layers.RandomRotation(op["factor"], **resample, seed=op_seed))
        elif op["op"] == "zoom":
            layers.append(keras.layers.RandomZoom(op["factor"], **resample, seed=op_seed))
        elif op["op"] == "translation":
            layers.append(keras.layers.RandomTranslation(op["factor"], op["factor"], **resample, seed=op_seed))
        elif op["op"] == "contrast":
            layers.append(keras.layers.RandomContrast(op["factor"], value_range=(0, 255), seed=op_seed))
        elif op["op"] == "erasing":  # last: a rectangle of up to a quarter of the image becomes noise
            layers.append(keras.layers.RandomErasing((op["factor"], op["factor"]), scale=(0.02, 0.25),
                                                     value_range=(0, 255), seed=op_seed))
        else:
            raise ValueError(f"unknown augmentation op {op['op']!r}")
    return keras.Sequential(layers, name="augmentation")


def preview(images: np.ndarray, policy: dict, seed: int, variants: int = 4) -> np.ndarray:
    """(N, variants + 1, H, W, C) uint8: each original followed by augmented versions."""
    layers = build_layers(policy, seed, preview=True)
    batch = images.astype("float32")
    if not layers.layers:  # augmentation off: every variant is the original (Keras cannot call an empty Sequential)
        return np.repeat(images[:, None], variants + 1, axis=1).astype(np.uint8)
    columns = [batch] + [np.asarray(layers(batch, training=True)) for _ in range(variants)]
    return np.clip(np.stack(columns, axis=1), 0, 255).astype(np.uint8)
