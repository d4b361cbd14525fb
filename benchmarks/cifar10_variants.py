"""CIFAR-10's recipe with one thing changed, against the committed run (issue 18): the parts of
airbench94 that the first translation to Keras left out, each tried on its own.

    python benchmarks/cifar10_variants.py [VARIANT ...] [--results FILE] [--dry-run]

Variants (each on top of params.yaml's cifar10 section; not cumulative):
- triangle: airbench's schedule, the rate rising from 0.2x to its peak at 23% of the steps and
  falling to 0.07x at the end (train.schedule: triangle), instead of one warm-up epoch and cosine
  decay to 0;
- pytorch_init: the convolutions and the classifier start as PyTorch's do, uniform within
  1/sqrt(fan_in) (model.kernel_init: pytorch), instead of Keras' Glorot (2.4x wider for the head).

Each is one `dvc exp run --temp -n cifar10-variant-NAME -S ... evaluate@cifar10` on the full data
(20 to 35 minutes on two cores, by host). The first row is the committed run (HEAD), read, not run. Decide
on validation accuracy, on the same kind of CPU as the committed run: each row records its
environment. Rows already in the results file with the same command are kept, not rerun. Writes
benchmarks/results/cifar10_variants.json and prints the table.
"""
import argparse
import json
import sys
from pathlib import Path

from cifar10_ablation import C
from common import RESULTS, experiment_command, run_experiment, write_result
from seeds import run_row  # benchmarks/seeds.py: one run's scores, read at a git ref

VARIANTS = {
    "triangle": ("airbench's triangle schedule (0.2x, peak at 23% of the steps, 0.07x)", [C + "train.schedule=triangle"]),
    "pytorch_init": ("PyTorch's initialisation (uniform within 1/sqrt(fan_in))", ["++" + C + "model.kernel_init=pytorch"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help=f"some of {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--results", type=Path, default=RESULTS / "cifar10_variants.json")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    if unknown := set(args.variants) - set(VARIANTS):
        parser.error(f"unknown variant {', '.join(sorted(unknown))} (known: {', '.join(VARIANTS)})")
    previous = json.loads(args.results.read_text())["rows"] if args.results.exists() else []
    done = {row["command"]: row for row in previous if "command" in row}
    rows = [{"row": "params.yaml's recipe (the committed run)", **run_row("cifar10", "HEAD", None)}]
    for variant in args.variants or VARIANTS:
        label, settings = VARIANTS[variant]
        name = f"cifar10-variant-{variant.replace('_', '-')}"
        row = {"row": label, "command": experiment_command(name, settings, "evaluate@cifar10")}
        if args.dry_run:
            print(row["command"])
            continue
        if row["command"] not in done:
            done[row["command"]] = {**row, **run_row("cifar10", run_experiment(name, settings, "evaluate@cifar10"), None)}
        rows.append(done[row["command"]])
        write_result(args.results, {"rows": rows + [r for r in done.values() if r not in rows]})  # after every run
    if args.dry_run:
        return 0
    print("\n| variant | test accuracy | val accuracy (last epoch) | train time |\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['row']} | {100 * row['test_accuracy']:.2f}% | {100 * row['last_val_accuracy']:.2f}% "
              f"| {row['train_seconds'] / 60:.1f} min |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
