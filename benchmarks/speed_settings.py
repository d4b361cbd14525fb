"""What the GPU speed settings (`train.mixed_precision`, `train.jit_compile`) do to a train step
on this machine: each dataset's model (params.yaml) trained on one in-memory batch, repeated, with
each setting off and on.

    python benchmarks/speed_settings.py [dataset ...] [--steps 10] [--epochs 3]

No input pipeline and no augmentation, so only the model's arithmetic is timed. Each variant is a
freshly built and compiled model (pretrained weights are not loaded: the architecture is what
costs) running --epochs epochs of --steps steps; the first epoch (tracing, XLA compilation) is
dropped and the fastest later epoch counts. Reports milliseconds per step and the ratio to the
float32, no-XLA default. As in the train stage, the XLA variants run without TensorFlow's op
determinism (Keras will not XLA-compile under it) and the others with it.
Writes benchmarks/results/speed_settings.json (or --results).
"""
import argparse
import os
import sys
from pathlib import Path

from common import write_result

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from input_pipeline_overhead import SYNTHETIC_CLASSES, step_ms  # noqa: E402

from imagerec import params  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "speed_settings.json"
VARIANTS = {  # name: (mixed_precision, jit_compile)
    "default": (False, False),
    "mixed_precision": (True, False),
    "jit_compile": (False, True),
    "both": (True, True),
}


def memory_step_ms(p, mixed_precision: bool, jit_compile: bool, steps: int, epochs: int) -> list[float]:
    """Milliseconds per step of each epoch after the first, on one random in-memory batch."""
    p = p.model_copy(update={"train": p.train.model_copy(
        update={"mixed_precision": mixed_precision, "jit_compile": jit_compile})})
    size, channels = p.preprocess.image_size, 1 if p.preprocess.color_mode == "grayscale" else 3
    classes = SYNTHETIC_CLASSES[p.name]
    rng = np.random.default_rng(p.seed)
    images = rng.integers(0, 256, size=(p.train.batch_size, size, size, channels)).astype(np.float32)
    labels = tf.one_hot(rng.integers(0, classes, size=p.train.batch_size), classes)
    data = tf.data.Dataset.from_tensors((tf.constant(images), labels)).repeat()
    return step_ms(p, data, images.shape[1:], classes, steps, epochs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", default=["mnist", "cifar10"], choices=sorted(SYNTHETIC_CLASSES))
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch (default: 10)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant; the first is dropped (default: 3)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"JSON written (default: {RESULTS})")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs: at least 2 (the first is dropped)")

    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    results = {}
    for dataset in args.datasets:
        p = params.load(dataset, args.params)
        print(f"{dataset}: batch {p.train.batch_size}, {args.steps} steps x {args.epochs} epochs per variant, "
              f"on the {device}", flush=True)
        timings = {}
        for name, (mixed, jit) in VARIANTS.items():
            per_epoch = memory_step_ms(p, mixed, jit, args.steps, args.epochs)
            timings[name] = {"ms_per_step": min(per_epoch), "epochs_ms_per_step": per_epoch}
        for name, timing in timings.items():
            timing["ratio_to_default"] = round(timing["ms_per_step"] / timings["default"]["ms_per_step"], 2)
            print(f"  {name}: {timing['ms_per_step']:.1f} ms/step, {timing['ratio_to_default']}x the default",
                  flush=True)
        results[dataset] = {"batch_size": p.train.batch_size, "steps": args.steps, "epochs": args.epochs,
                            "variants": timings}
    write_result(args.results, {
        "datasets": results,
        "device": device,
        "tensorflow": tf.__version__,
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
