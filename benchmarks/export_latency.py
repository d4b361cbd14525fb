"""Per-image latency and file size of every exported format, latency on one CPU core.

    python benchmarks/export_latency.py [--images 200] [dataset ...]

Reads exports/<dataset>/ (written by the export stage) and the prepared test split, predicts
one image at a time (batch 1) after a warm-up, and writes the median and 90th-percentile
milliseconds and the size in bytes per format to benchmarks/results/export_latency.json.
Run it as `taskset -c 0 python benchmarks/export_latency.py` to hold it to one core.
"""
import argparse
import os
import time
from pathlib import Path

from common import RESULTS as RESULTS_DIR
from common import machine, size_bytes, write_result

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

# One core: set before TensorFlow runs its first op.
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import numpy as np  # noqa: E402

from imagerec import datasets, export, inference  # noqa: E402

RESULTS = RESULTS_DIR / "export_latency.json"
FILES = {"keras": "model.keras", "saved_model": export.SAVED_MODEL_DIR, **export.TFLITE_FILES}


def latency_ms(run, images: np.ndarray, warmup: int = 10) -> dict:
    for image in images[:warmup]:
        run(image[None])
    times = []
    for image in images:
        start = time.perf_counter()
        run(image[None])
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(float(np.median(times)), 3), "p90_ms": round(float(np.percentile(times, 90)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", default=["mnist", "cifar10", "cats_vs_dogs"])
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    results = {"machine": f"{machine()}; 1 thread", "images": args.images, "latency": {}}
    for dataset in args.datasets:
        test = datasets.load(Path("data/prepared") / dataset, splits=["test"]).splits["test"]
        images = np.asarray(test.images[: args.images], dtype=np.float32)
        results["latency"][dataset] = {}
        for fmt, name in FILES.items():
            path = Path("exports") / dataset / name
            if path.exists():
                results["latency"][dataset][fmt] = {**latency_ms(inference.load_exported(fmt, path, threads=1), images),
                                                    "size_bytes": size_bytes(path)}
                print(dataset, fmt, results["latency"][dataset][fmt], flush=True)
    write_result(RESULTS, results)


if __name__ == "__main__":
    main()
