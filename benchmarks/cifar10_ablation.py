"""The CIFAR-10 ablations: what each lever adds to a CNN of the same shape, one cumulative row
per lever. Two ladders:

- `recipe` (the default): batch norm, augmentation, the schedule, random erasing and test-time
  augmentation, on top of the AdamW recipe (params.yaml's cifar10 recipe until 2026-12-05); the
  last row is that recipe itself.
- `airbench`: issue 18's levers in airbench's order (arXiv:2404.00498, KellerJordan/cifar10-zoo):
  a baseline with Nesterov SGD, flip + 2-pixel shifts and flip TTA, then + the frozen
  patch-whitening layer, + identity initialisation, + batch norm without weights and with 64x
  faster offsets, + weight averaging (lookahead), + multi-crop TTA, + the alternating flip.
  Its hyperparameters are airbench's, translated to Keras (see airbench_base); its last row was
  params.yaml's cifar10 recipe on 2026-12-06 until the triangle schedule replaced its cosine
  (benchmarks/cifar10_variants.py). An extra first row runs the AdamW recipe at the
  same budget, for comparison.

Every row sets each lever explicitly, on or off, so a row means the same whatever params.yaml's
cifar10 section holds.

    python benchmarks/cifar10_ablation.py [--ladder recipe|airbench] [--images-per-class N]
        [--epochs E] [--batch-size B] [--batch-norm-momentum M] [--rows I ...] [--seed S] [--results FILE] [--dry-run]

Each row is one `dvc exp run --temp -n NAME -S ... evaluate@cifar10` on top of params.yaml. The
budget is `preprocess.max_per_class` training images per class (0: all) and `epochs`; the
validation and test splits stay whole (CIFAR-10 has 500 validation and 1,000 test images per
class). The recipe ladder's default budget (500 and 10, 20 minutes on two cores) also needs
batch norm's moving statistics to follow the weights sooner (`--batch-norm-momentum`, 0.9
instead of the AdamW recipe's 0.99): with 0.99 and 200 steps, validation accuracy stayed at
chance in every row with batch norm. The airbench ladder sets airbench's 0.6 itself. A TTA row
changes evaluation only: the recipe ladder's (2026-11-26) trained its own model again, the
airbench ladder's took its predecessor's training from DVC's run cache (the same seconds).

For every row, reads from its experiment's commit: test accuracy (metrics/cifar10.json), the
last epoch's validation accuracy and the training seconds (plots/cifar10/train/metrics.json).
Rows already in the results file with the same settings are kept, not rerun, so `--rows` can
run a ladder a few rows at a time. Writes benchmarks/results/cifar10_ablation.json (recipe) or
cifar10_ablation_airbench.json (with --seed S: ..._seedS.json) and prints the table. --dry-run prints the commands only.
"""
import argparse
import json
import sys
from pathlib import Path

from common import RESULTS as RESULTS_DIR
from common import experiment_command, read_at, run_experiment, write_result

RESULT_FILES = {"recipe": RESULTS_DIR / "cifar10_ablation.json", "airbench": RESULTS_DIR / "cifar10_ablation_airbench.json"}
C = "datasets.cifar10."

# (row label, the overrides that switch this lever off the AdamW recipe below); a row switches
# off its own lever's successors, so row 0 has every lever off and the last row has none.
RECIPE_LEVERS = [
    ("+ batch norm", [C + "model.batch_norm=false"]),
    ("+ augmentation: flips, 4-pixel shifts", [C + "augment.enabled=false"]),
    ("+ schedule: warm-up + cosine, AdamW, label smoothing",
     [C + "train.schedule=constant", C + "train.warmup_epochs=0", C + "train.weight_decay=0",
      C + "train.label_smoothing=0"]),
    ("+ random erasing", [C + "augment.erasing=0"]),
    ("+ test-time augmentation: flips and 1-pixel shifts", [C + "evaluate.tta=none"]),
]


def merged(settings: list[str]) -> list[str]:
    """The settings without those a later one overrides (DVC applies them in order, the last wins)."""
    keys = [setting.lstrip("+").split("=", 1)[0] for setting in settings]
    return [setting for index, setting in enumerate(settings) if keys[index] not in keys[index + 1:]]


# params.yaml's cifar10 recipe until 2026-12-05 (AdamW, 30 epochs of batch 256), as overrides of
# any params.yaml: the recipe ladder's last row and the airbench ladder's first. Each ladder sets
# its own budget (epochs, images per class) and batch norm momentum.
ADAMW_RECIPE = [C + setting for setting in (
    "augment.flip=horizontal", "augment.translation=0.125", "augment.erasing=0.5",
    "model.dropout=0.1", "model.activation=relu", "model.whitening_patch=0", "model.dirac_init=false",
    "model.batch_norm_scale=true", "model.batch_norm_bias_multiplier=1.0", "model.logit_scale=1.0",
    "train.batch_size=256", "train.learning_rate=0.003", "train.schedule=cosine", "train.warmup_epochs=1",
    "train.weight_decay=0.05", "train.label_smoothing=0.1", "train.optimizer=adam", "train.momentum=0.9",
    "train.lookahead=null", "train.early_stopping_patience=10", "evaluate.tta=flip_translate")]


def airbench_base(batch_size: int) -> list[str]:
    """airbench94's hyperparameters in Keras' terms. Its learning rate, 11.5 per 1,024 examples
    in "decoupled" form, is 11.5 / (1 + 1 / (1 - momentum)) = 1.5 for a mean loss over a batch of
    1,024, and scales with the batch. Its weight decay takes 0.0133 of each weight per step at
    the peak rate (0.0153 per 1,024 examples, through Nesterov momentum of 0.85); Keras' SGD
    decays by learning_rate x weight_decay, so 0.009. Its schedule (a triangle peaking at 23%)
    becomes one warm-up epoch and cosine decay. Its head scales the logits by 1/9 (which slows
    the head's learning, as the rate expects); it has no bias, Keras' dense layer keeps one."""
    return [C + "train.optimizer=sgd_nesterov", C + "train.momentum=0.85",
            C + f"train.learning_rate={1.5 * batch_size / 1024:g}", C + f"train.batch_size={batch_size}",
            C + "train.weight_decay=0.009", C + "train.label_smoothing=0.2", C + "train.schedule=cosine",
            C + "train.warmup_epochs=1", C + "train.early_stopping_patience=0",
            C + "model.batch_norm_momentum=0.6", C + "model.activation=gelu", C + "model.dropout=0.0",
            C + "model.logit_scale=0.1111", C + "augment.translation=0.0625", C + "augment.erasing=0"]


# (row label, the overrides that switch this lever on, those that switch it off): cumulative from
# the baseline, which has every lever off. Both are explicit, so a row means the same whatever
# params.yaml's cifar10 recipe is (the last row with cosine decay for airbench's triangle).
AIRBENCH_LEVERS = [
    ("+ frozen patch-whitening first layer (2x2)", [C + "model.whitening_patch=2"], [C + "model.whitening_patch=0"]),
    ("+ identity (dirac) initialisation", [C + "model.dirac_init=true"], [C + "model.dirac_init=false"]),
    ("+ batch norm offsets at 64x the learning rate, no batch norm weights",
     [C + "model.batch_norm_scale=false", C + "model.batch_norm_bias_multiplier=8"],
     [C + "model.batch_norm_scale=true", C + "model.batch_norm_bias_multiplier=1.0"]),
    ("+ weight averaging (lookahead, every 5 steps from epoch 3)",
     ["++" + C + "train.lookahead={every_steps: 5, start_epochs: 3, decay: 0.95}"], [C + "train.lookahead=null"]),
    ("+ multi-crop test-time augmentation (flips and 1-pixel shifts)", [C + "evaluate.tta=flip_translate"],
     [C + "evaluate.tta=flip"]),
    ("+ alternating flip", [C + "augment.flip=horizontal_alternating"], [C + "augment.flip=horizontal"]),
]


def airbench_settings(batch_size: int) -> list[str]:
    """airbench's recipe: its hyperparameters with every lever on (params.yaml's cifar10 recipe but
    for its triangle schedule)."""
    return airbench_base(batch_size) + [setting for _, on, _ in AIRBENCH_LEVERS for setting in on]


def rows(ladder: str, images_per_class: int, epochs: int, batch_size: int, batch_norm_momentum: float,
         seed: int | None = None) -> list[dict]:
    budget = [C + f"preprocess.max_per_class={images_per_class}", C + f"train.epochs={epochs}"]
    suffix = ""
    if seed is not None:  # another seed of the same ladder: its own settings, names and results file
        budget.append(C + f"seed={seed}")
        suffix = f"-seed{seed}"
    adamw = ADAMW_RECIPE + budget + [C + f"model.batch_norm_momentum={batch_norm_momentum}"]
    out = []
    if ladder == "recipe":
        for index, label in enumerate(["baseline CNN"] + [label for label, _ in RECIPE_LEVERS]):
            off = [setting for _, settings in RECIPE_LEVERS[index:] for setting in settings]
            out.append({"row": label, "name": f"cifar10-ablation-{index}{suffix}", "settings": merged(adamw + off)})
        return out
    out.append({"row": "the AdamW recipe (params.yaml's until 2026-12-05), same budget",
                "name": f"cifar10-airbench-recipe{suffix}", "settings": merged(adamw)})
    for index, label in enumerate(["baseline: Nesterov SGD, flip + 2-pixel shifts, flip TTA"]
                                  + [label for label, _, _ in AIRBENCH_LEVERS]):
        on = [setting for _, settings, _ in AIRBENCH_LEVERS[:index] for setting in settings]
        off = [setting for _, _, settings in AIRBENCH_LEVERS[index:] for setting in settings]
        out.append({"row": label, "name": f"cifar10-airbench-{index}{suffix}",
                    "settings": merged(budget + airbench_base(batch_size) + on + off)})
    return out


def seed_file(results: Path, seed: int | None) -> Path:
    """The ladder's results file, or for another seed its own file beside it."""
    return results if seed is None else results.with_name(f"{results.stem}_seed{seed}{results.suffix}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ladder", choices=sorted(RESULT_FILES), default="recipe")
    parser.add_argument("--images-per-class", type=int, default=None, help="0: all (default: 500 recipe, 0 airbench)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024, help="airbench ladder only")
    parser.add_argument("--batch-norm-momentum", type=float, default=0.9,
                        help="the recipe rows' (the airbench rows set airbench's 0.6)")
    parser.add_argument("--rows", type=int, nargs="+", help="run only these rows (by index)")
    parser.add_argument("--seed", type=int, help="another seed than params.yaml's; its rows go to a file of their "
                        "own (default: the ladder's file name with _seedS), so they never replace the first seed's")
    parser.add_argument("--results", type=Path, help="where to write (default: by ladder, below); a ladder at "
                        "another budget belongs in a file of its own, as the small one in cifar10_ablation_airbench_small.json")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    if args.images_per_class is None:
        args.images_per_class = 500 if args.ladder == "recipe" else 0
    results = args.results or seed_file(RESULT_FILES[args.ladder], args.seed)

    table = rows(args.ladder, args.images_per_class, args.epochs, args.batch_size, args.batch_norm_momentum, args.seed)
    previous = json.loads(results.read_text())["rows"] if results.exists() and not args.dry_run else []
    done = {row["command"]: row for row in previous if "test_accuracy" in row}
    for row in table:  # every row first, so the write after each run keeps the rows that come later
        row["command"] = experiment_command(row["name"], row["settings"], "evaluate@cifar10")
        if row["command"] in done:
            row.update(done[row["command"]])
    for index, row in enumerate(table):
        if args.dry_run and (not args.rows or index in args.rows):
            print(row["command"])
        if args.dry_run or row["command"] in done or (args.rows and index not in args.rows):
            continue
        ref = run_experiment(row["name"], row["settings"], "evaluate@cifar10")
        summary = read_at(ref, "plots/cifar10/train/metrics.json")
        row.update(test_accuracy=read_at(ref, "metrics/cifar10.json")["accuracy"],
                   last_val_accuracy=round(summary["eval"]["accuracy"], 4),
                   epochs_run=summary["step"] + 1,  # the summary's step is the last epoch's, from 0
                   train_seconds=summary["train_seconds"], environment=summary.get("environment"))
        write_result(results, {"ladder": args.ladder, "budget": budget(args), "rows": table})  # after every row
    if args.dry_run:
        return 0
    write_result(results, {"ladder": args.ladder, "budget": budget(args), "rows": table})
    print("\n| row | test accuracy | val accuracy (last epoch) | train time |\n|---|---:|---:|---:|")
    for row in table:
        if "test_accuracy" in row:
            print(f"| {row['row']} | {100 * row['test_accuracy']:.2f}% | {100 * row['last_val_accuracy']:.2f}% "
                  f"| {row['train_seconds'] / 60:.1f} min |")
    return 0


def budget(args) -> dict:
    out = {"images_per_class": args.images_per_class, "epochs": args.epochs}
    out["batch_norm_momentum"] = args.batch_norm_momentum
    if args.ladder == "airbench":
        out["batch_size"] = args.batch_size
    if args.seed is not None:
        out["seed"] = args.seed
    return out


if __name__ == "__main__":
    sys.exit(main())
