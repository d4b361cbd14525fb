"""export: SavedModel and TFLite files of a trained model, each scored on the test split.

The export directory is itself a model directory (model.keras + model.json) with the other
formats beside; the metrics give each format's test accuracy and its difference from the Keras
model in percentage points. File sizes (which vary by a few bytes from run to run: SavedModels
carry generated names) and latency are measured by benchmarks/export_latency.py.
"""
import argparse
from pathlib import Path

import numpy as np

from imagerec import datasets, export, inference, params
from imagerec.errors import run_stage
from imagerec.files import atomic_dir, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="data/config/<dataset>/export.json")
    parser.add_argument("prepared_dir", type=Path)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("exports_dir", type=Path, help="output: model.keras, model.json, saved_model/, *.tflite")
    parser.add_argument("metrics_file", type=Path, help="output: test accuracy per format")
    args = parser.parse_args()
    p = params.load_stage(args.config)

    data = datasets.load(args.prepared_dir, splits=["train", "test"])
    train, test = data.splits["train"], data.splits["test"]
    # Int8 calibration sees training images only, never the test split it is scored on.
    calibration = np.asarray(train.images[datasets.seeded_sample(len(train.labels), p.export.calibration_images, p.seed)])
    scores = {}
    with atomic_dir(args.exports_dir) as out:
        for fmt, path in export.export(args.model_dir, out, p.export.formats, calibration).items():
            accuracy = inference.accuracy(inference.load_exported(fmt, path), test.images, test.labels,
                                          p.export.batch_size)
            scores[fmt] = {"accuracy": round(accuracy, 6)}
        for fmt, score in scores.items():
            score["accuracy_change_points"] = round(100 * (score["accuracy"] - scores["keras"]["accuracy"]), 4)
    write_json(args.metrics_file, scores)
    for fmt, score in scores.items():
        print(f"{p.dataset} {fmt}: test accuracy {score['accuracy']:.4f} ({score['accuracy_change_points']:+.2f} points)")


if __name__ == "__main__":
    run_stage(main)
