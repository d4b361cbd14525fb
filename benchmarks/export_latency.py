"""Every exported format of each model: single-image latency on one CPU core, batch throughput
on all cores, and file size.

    python benchmarks/export_latency.py [--images 200] [--batch-images 1000] [dataset ...]

Reads exports/<dataset>/ (written by the export stage) and the prepared test split.
- Latency: one image at a time (batch 1) after a warm-up, in a child process held to one core
  (TensorFlow's and TFLite's threads set to 1, and the process pinned to CPU 0 where it can be);
  the median and 90th-percentile milliseconds.
- Throughput: images per second in batches of 32 after a warm-up batch, in a child process with
  every core (common.offline_images_per_second, what serve_load.py and predict_folder.py compare
  against).

Each measurement runs in its own child because TensorFlow's thread counts are fixed for a
process once it has run an op. Writes benchmarks/results/export_latency.json.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS as RESULTS_DIR
from common import REPO, child_env, machine, offline_images_per_second, size_bytes, write_result

RESULTS = RESULTS_DIR / "export_latency.json"


def formats(dataset: str) -> dict[str, Path]:
    from imagerec import export

    files = {"keras": "model.keras", "saved_model": export.SAVED_MODEL_DIR, **export.TFLITE_FILES}
    return {fmt: REPO / "exports" / dataset / name for fmt, name in files.items()
            if (REPO / "exports" / dataset / name).exists()}


def measure(mode: str, dataset: str, images: int) -> dict:
    """In this process (a child): {format: figures} for `mode` latency or throughput."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from imagerec import datasets, inference

    threads = 1 if mode == "latency" else None
    if threads:  # before TensorFlow runs its first op
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    test = datasets.load(REPO / "data/prepared" / dataset, splits=["test"]).splits["test"]
    pixels = np.asarray(test.images[:images], dtype=np.float32)
    out = {}
    for fmt, path in formats(dataset).items():
        run = inference.load_exported(fmt, path, threads=threads)
        if mode == "latency":
            for image in pixels[:10]:
                run(image[None])
            times = []
            for image in pixels:
                started = time.perf_counter()
                run(image[None])
                times.append((time.perf_counter() - started) * 1000)
            out[fmt] = {"median_ms": round(float(np.median(times)), 3), "p90_ms": round(float(np.percentile(times, 90)), 3)}
        else:
            out[fmt] = {"images_per_second": round(offline_images_per_second(run, pixels), 1)}
        print(dataset, mode, fmt, out[fmt], file=sys.stderr, flush=True)
    return out


def in_child(mode: str, dataset: str, images: int) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--images", str(images), dataset]
    if mode == "latency" and hasattr(os, "sched_setaffinity"):
        command = ["taskset", "-c", "0", *command]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=child_env())
    sys.stderr.write(done.stderr[-2000:])
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", default=["mnist", "cifar10", "cats_vs_dogs"])
    parser.add_argument("--images", type=int, default=200, help="images timed one at a time")
    parser.add_argument("--batch-images", type=int, default=1000, help="images timed in batches")
    parser.add_argument("--child", choices=["latency", "throughput"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.datasets[0], args.images)))
        return
    results = {"machine": machine(), "latency_images": args.images, "throughput_images": args.batch_images,
               "latency": "one image at a time, one core", "throughput": "batches of 32, every core", "models": {}}
    for dataset in args.datasets:
        latency = in_child("latency", dataset, args.images)
        throughput = in_child("throughput", dataset, args.batch_images)
        results["models"][dataset] = {fmt: {**latency[fmt], **throughput[fmt], "size_bytes": size_bytes(path)}
                                      for fmt, path in formats(dataset).items()}
    write_result(RESULTS, results)


if __name__ == "__main__":
    main()
