"""Seconds per training step of the CIFAR-10 CNN, with airbench's levers and with one of them
changed back at a time: where an epoch's time goes.

    python benchmarks/cnn_step_time.py [--steps 8] [--batch-size 1024] [--results FILE]

Each row builds params.yaml's cifar10 model and compiles it with the training's own optimizer
and loss (imagerec.training.compile_model), with the settings of the airbench ladder's last row
(benchmarks/cifar10_ablation.py) and the row's own changes on top, then times --steps training
steps after two warm-up steps, on random 32 x 32 images (a step's cost does not depend on the
pixels). The last row is the AdamW recipe (params.yaml's cifar10 recipe until 2026-12-05) at the
same batch size. The input pipeline, augmentation and validation are left out: this is the
model's step alone. Writes benchmarks/results/cnn_step_time.json and prints the table.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

from cifar10_ablation import ADAMW_RECIPE, C, airbench_settings
from common import RESULTS, write_result
from imagerec import models, params, training

# (row, the model settings changed back from airbench's)
ROWS = [
    ("airbench: every lever", {}),
    ("ReLU instead of GELU", {"activation": "relu"}),
    ("batch norm with its weight, offsets at 1x (no Offset layers)", {"batch_norm_scale": True,
                                                                      "batch_norm_bias_multiplier": 1.0}),
    ("no whitening layer", {"whitening_patch": 0}),
]


def model_and_train(settings: list[str]) -> dict[str, dict]:
    """A ladder's `-S` strings (benchmarks/cifar10_ablation.py) as {section: {key: value}}, for
    the two sections a training step depends on."""
    out: dict[str, dict] = {"model": {}, "train": {}}
    for setting in settings:
        key, value = setting.lstrip("+").split("=", 1)
        section, name = key.removeprefix(C).split(".", 1)
        if section in out:
            out[section][name] = params.load_yaml(value)
    return out


def step_seconds(p, model_settings: dict, train_settings: dict, batch_size: int, steps: int) -> float:
    model_params = type(p.model).model_validate({**p.model.model_dump(), **model_settings})
    train_params = type(p.train).model_validate({**p.train.model_dump(), **train_settings})
    model = models.build(model_params, (32, 32, 3), 10)
    training.compile_model(model, train_params, train_params.learning_rate, train_params.epochs,
                           train_params.warmup_epochs, steps_per_epoch=44)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size, 32, 32, 3)).astype("float32")
    labels = np.eye(10, dtype="float32")[rng.integers(0, 10, batch_size)]
    for _ in range(2):
        model.train_on_batch(images, labels)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, labels)
    return (time.perf_counter() - started) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--results", type=Path, default=RESULTS / "cnn_step_time.json")
    args = parser.parse_args()
    p = params.load("cifar10")
    airbench = model_and_train(airbench_settings(args.batch_size))
    # the ladders leave batch norm's momentum to their budget; the AdamW recipe's was Keras' 0.99
    adamw = model_and_train(ADAMW_RECIPE + [C + "model.batch_norm_momentum=0.99"])
    rows = []
    for label, changes in ROWS:
        seconds = step_seconds(p, {**airbench["model"], **changes}, airbench["train"], args.batch_size, args.steps)
        rows.append({"row": label, "changes": changes, "step_seconds": round(seconds, 3)})
        print(rows[-1], flush=True)
    seconds = step_seconds(p, adamw["model"], {**adamw["train"], "batch_size": args.batch_size}, args.batch_size,
                           args.steps)
    rows.append({"row": "the AdamW recipe (Adam, ReLU, batch norm, no whitening)", "changes": None,
                 "step_seconds": round(seconds, 3)})
    print(rows[-1], flush=True)
    write_result(args.results, {"batch_size": args.batch_size, "steps": args.steps,
                                "environment": training.environment(), "rows": rows})
    print("\n| row | seconds per step | of airbench's |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['row']} | {row['step_seconds']:.2f} s | {row['step_seconds'] / rows[0]['step_seconds']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
