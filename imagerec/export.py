"""Exporting a trained model for serving and for the edge (inference.py runs the exported files).

With Keras 3, TFLite conversion goes through the exported SavedModel (`model.export`):
`TFLiteConverter.from_keras_model` fails on Keras 3 models.
"""
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from .inference import EXPORTED_FILES, load_keras
from .models import CARD_FILE, MODEL_FILE

SAVED_MODEL_DIR = EXPORTED_FILES["saved_model"]
TFLITE_FILES = {fmt: name for fmt, name in EXPORTED_FILES.items() if fmt.startswith("tflite")}


def export(model_dir: Path, out_dir: Path, formats: list[str], representative: np.ndarray) -> dict[str, Path]:
    """Write every asked format into `out_dir`, beside a copy of model.keras and model.json
    (so `out_dir` is itself a model directory). Returns {format: path}."""
    shutil.copy(model_dir / MODEL_FILE, out_dir / MODEL_FILE)
    shutil.copy(model_dir / CARD_FILE, out_dir / CARD_FILE)
    written = {"keras": out_dir / MODEL_FILE}
    model = load_keras(out_dir / MODEL_FILE)
    saved_model = out_dir / SAVED_MODEL_DIR
    model.export(saved_model, format="tf_saved_model", verbose=False)
    if "saved_model" in formats:
        written["saved_model"] = saved_model
    for fmt in formats:
        if fmt in TFLITE_FILES:
            path = out_dir / TFLITE_FILES[fmt]
            path.write_bytes(_convert(saved_model, fmt, representative))
            written[fmt] = path
    if "saved_model" not in formats:
        shutil.rmtree(saved_model)
    return written


def _convert(saved_model: Path, fmt: str, representative: np.ndarray) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if fmt in ("tflite_dynamic_range", "tflite_int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if fmt == "tflite_int8":
        def calibration():
            for image in representative:
                yield [image[None].astype(np.float32)]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()
