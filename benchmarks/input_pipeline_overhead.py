"""What the tf.data input pipeline costs a training step: the train step time fed by
`imagerec.training.input_pipeline` against the same model fed one in-memory batch, repeated.

    python benchmarks/input_pipeline_overhead.py [dataset] [--prepared DIR] [--steps N] [--epochs 3]

Trains the dataset's model (params.yaml: model, train; pretrained weights are not loaded, the
architecture is what costs) on its prepared training split (default data/prepared/<dataset>;
synthetic uint8 images of the right shape when that does not exist) three ways:
- `memory`: `tf.data.Dataset.from_tensors(batch).repeat()`, the floor: no input work at all;
- `pipeline`: `training.input_pipeline` as train uses it (seeded shuffle, cast, one-hot,
  prefetch), augmentation off;
- `pipeline+augment`: the same with the dataset's augmentation policy, as train runs it.
Each runs --epochs epochs of --steps steps (default: one full pass over the split, whole batches
only); the first epoch (tracing) is dropped and the fastest later epoch counts. Every epoch
refills the pipeline's shuffle buffer (the whole split), so a --steps below one pass overstates
that cost. Reports milliseconds per step and the ratio to `memory`: `pipeline` is the pipeline's
overhead (target <= 1.05); `pipeline+augment` adds the augmentation's own compute. Writes
benchmarks/results/input_pipeline_overhead.json (or --results), one entry per dataset.
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from common import machine, now, write_result

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from imagerec import augment, datasets, models, params, training  # noqa: E402
from imagerec.datasets import Split  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "input_pipeline_overhead.json"
SYNTHETIC_CLASSES = {"mnist": 10, "cifar10": 10, "cats_vs_dogs": 2}


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def training_data(p, prepared: Path, images: int) -> tuple[Split, int, str]:
    if (prepared / "classes.json").exists():
        data = datasets.load(prepared, splits=["train"])
        return data.splits["train"], len(data.classes), str(prepared)
    size, channels = p.preprocess.image_size, 1 if p.preprocess.color_mode == "grayscale" else 3
    classes = SYNTHETIC_CLASSES[p.name]
    rng = np.random.default_rng(p.seed)
    split = Split(rng.integers(0, 256, size=(images, size, size, channels), dtype=np.uint8),
                  rng.integers(0, classes, size=images).astype(np.int64))
    return split, classes, f"synthetic: {images} random images"


def step_ms(p, data: tf.data.Dataset, shape, classes: int, steps: int, epochs: int) -> list[float]:
    """Milliseconds per step of each epoch after the first, for a freshly built and compiled model."""
    training.set_seeds(p.seed, deterministic_ops=not p.train.jit_compile)
    model = models.build(p.model, shape, classes, weights=None, mixed_precision=p.train.mixed_precision)
    training.compile_model(model, p.train, p.train.learning_rate, epochs, p.train.warmup_epochs, steps)
    timer = EpochTimer()
    model.fit(data, epochs=epochs, steps_per_epoch=steps, callbacks=[timer], shuffle=False, verbose=0)
    return [round(seconds / steps * 1000, 2) for seconds in timer.seconds[1:]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default="mnist", choices=sorted(SYNTHETIC_CLASSES))
    parser.add_argument("--prepared", type=Path, help="prepared dir (default: data/prepared/<dataset>)")
    parser.add_argument("--steps", type=int, help="steps per epoch (default: one pass over the split)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant; the first is dropped (default: 3)")
    parser.add_argument("--synthetic-images", type=int, default=4096, help="when no prepared dir exists")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"JSON written (default: {RESULTS})")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs: at least 2 (the first is dropped)")

    p = params.load(args.dataset, args.params)
    train, classes, source = training_data(p, args.prepared or Path("data/prepared") / args.dataset, args.synthetic_images)
    batch_size = p.train.batch_size
    full_batches = len(train.labels) // batch_size
    if full_batches < 1:
        sys.exit(f"{source}: {len(train.labels)} images, fewer than one batch of {batch_size}")
    steps = min(args.steps or full_batches, full_batches)
    shape = train.images.shape[1:]
    print(f"{args.dataset}: {source}, {len(train.labels)} images {shape}, batch {batch_size}, "
          f"{steps} steps x {args.epochs} epochs per variant", flush=True)

    first = np.asarray(train.images[:batch_size], dtype=np.float32)
    batch = (tf.constant(first), tf.one_hot(train.labels[:batch_size], classes))
    policy = augment.policy_from_params(p.augment)
    variants = {
        "memory": lambda: tf.data.Dataset.from_tensors(batch).repeat(),
        "pipeline": lambda: training.input_pipeline(train, classes, batch_size, shuffle_seed=p.seed).take(steps),
        "pipeline+augment": lambda: training.input_pipeline(
            train, classes, batch_size, shuffle_seed=p.seed,
            augmentation=augment.build_layers(policy, p.seed)).take(steps),
    }
    timings = {}
    for name, make in variants.items():
        per_epoch = step_ms(p, make(), shape, classes, steps, args.epochs)
        timings[name] = {"ms_per_step": min(per_epoch), "epochs_ms_per_step": per_epoch}
        print(f"  {name}: {min(per_epoch):.2f} ms/step (epochs after the first: {per_epoch})", flush=True)
    floor = timings["memory"]["ms_per_step"]
    for name in ("pipeline", "pipeline+augment"):
        timings[name]["ratio_to_memory"] = round(timings[name]["ms_per_step"] / floor, 3)
        print(f"  {name} / memory = {timings[name]['ratio_to_memory']}", flush=True)

    result = json.loads(args.results.read_text()) if args.results.exists() else {"datasets": {}}
    result["machine"] = f"{machine()}, TF {tf.__version__}"
    result["datasets"][args.dataset] = {
        "finished": now(),
        "data": source,
        "images": len(train.labels),
        "image_shape": list(shape),
        "batch_size": batch_size,
        "steps_per_epoch": steps,
        "epochs": args.epochs,
        "augmentation_ops": [op["op"] for op in policy["ops"]],
        "target_pipeline_ratio": 1.05,
        **timings,
    }
    write_result(args.results, result)
    return 0 if math.isfinite(floor) else 1


if __name__ == "__main__":
    sys.exit(main())
