"""Train each dataset's model as the train stage does, with its test accuracy after every epoch,
and a well-known reference model beside it; draw test accuracy against training time.

    python benchmarks/train_benchmark.py [mnist cifar10 cats_vs_dogs] [--reference]
        [--set SETTING ...] [--airbench] [--label NAME]
        [--prepared-root data/prepared] [--pretrained-root data/pretrained] [--params params.yaml]
        [--epochs N] [--limit N] [--results benchmarks/results/train_benchmark.json] [--plot PNG]
    python benchmarks/train_benchmark.py DATASET --pipeline-run NAME=REF [--results ...] [--plot PNG]

Per dataset: test accuracy (with the evaluate stage's test-time augmentation and without),
train wall seconds, epochs, training images/s (train images x epochs / train seconds), peak RSS
and a per-epoch curve of (epoch, seconds since training began, test accuracy[, validation
accuracy without test-time augmentation, where the run has a validation split]); for MNIST also
the seconds to reach 99.2% test accuracy. `--reference` adds each chosen dataset's reference, as
published, on imagerec's prepared images:
- MNIST: the keras.io "Simple MNIST convnet" (https://keras.io/examples/vision/mnist_convnet/),
  15 epochs at batch 128 on the same 60,000 training images (imagerec's train split followed by
  its val split, so the last 10% that the reference's validation_split holds out is imagerec's
  val split), and the comparison: imagerec's time to 99.2% over the reference's;
- CIFAR-10: the TensorFlow CNN tutorial's model (https://www.tensorflow.org/tutorials/images/cnn),
  10 epochs of Adam at Keras' default batch of 32 on the 50,000 training images (train + val).

`--set` changes the dataset's params as `dvc exp run -S` does (`datasets.cifar10.train.epochs=10`;
model, train, augment, evaluate and seed only: the prepared data is read as it is), and
`--airbench` adds the settings of the airbench ladder's last row (benchmarks/cifar10_ablation.py:
every lever, airbench's hyperparameters, batch 1,024). `--label` names such a run in the results
(default: the dataset, or dataset-airbench). `--plot` draws every run of the results file whose
dataset is among the chosen ones, with its reference, as test accuracy against training minutes.

`--pipeline-run NAME=REF` trains nothing: it records a pipeline run of the dataset as committed at a
git ref (a commit, a branch, or a `dvc exp` ref such as benchmarks/seeds.py's) for the plot, as
a dashed curve of validation accuracy after each epoch (dvclive's log; the test split is scored
once, by evaluate, and its accuracy ends the label). dvclive's log keeps no times, so the run's
train seconds are spread evenly over its epochs: every epoch of a run without early stopping has
the same batches, and the first one's tracing is a few seconds.

Each model trains in a child process of its own, so its peak RSS (wait4's ru_maxrss) is that
run's alone. imagerec's model goes through `training.fit` itself, with the train stage's
params, augmentation policy, pretrained weights and distribution strategy; to record test
accuracy after every epoch, the child wraps that model's `fit` to add one callback (training.fit
takes no extra callbacks), so nothing of training.fit is copied. The test set selects nothing
here: early stopping still watches the validation split. The seconds exclude the callback's own
test predictions, and the time to 99.2% is that of the first epoch that ends at or above it.
Both children run under `training.set_seeds` (seeded, deterministic ops). `--epochs` and
`--limit` (a seeded sample of N images of every split) are for smoke runs; such results record them.

Results merge into the JSON by dataset, so partial runs fill it in; each entry keeps the command
that produced it. Benchmarks are run by hand, never asserted in tests.
"""
import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

import cifar10_ablation
from common import child_env, now, read_at, run_measured, text_at, write_result

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "train_benchmark.json"
DATASETS = ("mnist", "cifar10", "cats_vs_dogs")
TARGET = 0.992  # MNIST test accuracy whose time the comparison reports
REFERENCE = {"batch_size": 128, "epochs": 15, "validation_split": 0.1}  # keras.io's MNIST settings
TUTORIAL = {"batch_size": 32, "epochs": 10}  # the TF CNN tutorial's: fit's default batch, 10 epochs
REFERENCES = {"mnist": "keras.io MNIST convnet", "cifar10": "TF CNN tutorial"}
SETTABLE = ("seed", "model", "train", "augment", "evaluate")  # what a run of prepared data can change


# ---- child side: one training run, imports TensorFlow -------------------------------------

def load_splits(prepared_dir: Path, limit: int, seed: int):
    """The train, val and test splits; with `limit`, a seeded sample of that many images of each
    (the prepared splits are ordered by class, so their first images would be one class)."""
    from imagerec import datasets

    data = datasets.load(prepared_dir)
    for name, split in data.splits.items():
        if limit:
            index = datasets.seeded_sample(len(split.labels), limit, seed)
            data.splits[name] = datasets.Split(split.images[index], split.labels[index])
    return data


def test_probe(images, labels, batch_size: int, tta: str, logits: bool = False):
    """A callback scoring the test set after each epoch, with a clock that leaves its own time out.
    logits: the model ends without a softmax (inference.predict expects probabilities)."""
    import keras
    import numpy as np

    from imagerec import inference

    class TestProbe(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.started, self.excluded, self.curve = time.perf_counter(), 0.0, []

        def seconds(self) -> float:
            return time.perf_counter() - self.started - self.excluded

        def accuracy(self, tta_mode: str) -> float:
            run = inference.keras_runner(self.model)
            if logits:
                run = lambda batch, run=run: softmax(run(batch))  # noqa: E731
            predicted = inference.predict(run, images, batch_size, tta_mode).argmax(axis=1)
            return float(np.mean(predicted == labels))

        def on_epoch_end(self, epoch, logs=None):
            at, begun = self.seconds(), time.perf_counter()
            self.curve.append([epoch + 1, round(at, 2), round(self.accuracy(tta), 5)])
            if logs and "val_accuracy" in logs:  # fit's, without test-time augmentation
                self.curve[-1].append(round(float(logs["val_accuracy"]), 5))
            self.excluded += time.perf_counter() - begun
            print(f"  [benchmark] epoch {epoch + 1}: {at:.1f} s, test accuracy {self.curve[-1][2]:.4f}"
                  + (f", validation {self.curve[-1][3]:.4f}" if len(self.curve[-1]) > 3 else ""), flush=True)

    return TestProbe()


def softmax(logits):
    import numpy as np

    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def summary(probe, train_images: int, epochs: int, seconds: float, target: bool) -> dict:
    result = {"train_seconds": round(seconds, 1), "epochs": epochs, "train_images": train_images,
              "images_per_second": round(train_images * epochs / seconds, 1), "curve": probe.curve}
    if target:  # the first epoch that ends at or above 99.2%
        reached = next((point for point in probe.curve if point[2] >= TARGET), [None, None])
        result.update(seconds_to_99_2=reached[1], epoch_to_99_2=reached[0])
    return result


def run_imagerec(dataset: str, args) -> dict:
    from imagerec import augment, models, params, training
    from imagerec.files import read_json

    p = params.load(dataset, args.params)
    if args.epochs:
        fine_tune = p.train.fine_tune and p.train.fine_tune.model_copy(update={"epochs": args.epochs})
        p = p.model_copy(update={"train": p.train.model_copy(update={"epochs": args.epochs, "fine_tune": fine_tune})})
    strategy = training.distribution_strategy(p.train.strategy)  # first, as in stages/train.py
    training.set_seeds(p.seed, deterministic_ops=not p.train.jit_compile)
    data = load_splits(args.prepared_root / dataset, args.limit, p.seed)
    train, val, test = (data.splits[name] for name in ("train", "val", "test"))
    pretrained = args.pretrained_root / dataset
    weights = [pretrained / f["file"] for f in read_json(pretrained / "manifest.json")["files"]]
    policy = augment.policy_from_params(p.augment)
    with strategy.scope():
        model = models.build(p.model, train.images.shape[1:], len(data.classes), weights[0] if weights else None,
                             mixed_precision=p.train.mixed_precision,
                             whitening_images=training.whitening_images(p.model, train.images, p.seed))

    probe = test_probe(test.images, test.labels, p.evaluate.batch_size, p.evaluate.tta)
    fit = model.fit

    def fit_with_probe(*fit_args, callbacks=(), **kwargs):
        return fit(*fit_args, callbacks=[*callbacks, probe], **kwargs)

    model.fit = fit_with_probe
    with tempfile.TemporaryDirectory() as curves:
        probe.started = time.perf_counter()
        histories = training.fit(model, train, val, len(data.classes), p.train, augment.build_layers(policy, p.seed),
                                 p.seed, Path(curves), strategy, alternating_flip=augment.alternating_flip(policy))
        seconds = probe.seconds()
    result = summary(probe, len(train.labels), sum(len(h.epoch) for h in histories), seconds, dataset == "mnist")
    result.update(
        tta=p.evaluate.tta,  # the final model: early stopping's best weights, as the train stage saves it
        test_accuracy=probe.accuracy(p.evaluate.tta),
        test_accuracy_no_tta=probe.accuracy("none"),
        test_images=len(test.labels),
    )
    return result


def run_reference(dataset: str, args) -> dict:
    return {"mnist": run_mnist_convnet, "cifar10": run_tf_tutorial_cnn}[dataset](args)


def run_mnist_convnet(args) -> dict:
    """keras.io's Simple MNIST convnet, as published, on imagerec's prepared MNIST."""
    import keras
    import numpy as np
    from keras import layers

    from imagerec import params, training

    seed = params.load("mnist", args.params).seed
    training.set_seeds(seed)
    data = load_splits(args.prepared_root / "mnist", args.limit, seed)
    x_train = np.concatenate([data.splits["train"].images, data.splits["val"].images]).astype("float32") / 255
    y_train = keras.utils.to_categorical(np.concatenate([data.splits["train"].labels, data.splits["val"].labels]), 10)
    x_test = data.splits["test"].images.astype("float32") / 255
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    probe = test_probe(x_test, data.splits["test"].labels, 500, "none")
    epochs = args.epochs or REFERENCE["epochs"]
    probe.started = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=REFERENCE["batch_size"], epochs=epochs,
                        validation_split=REFERENCE["validation_split"], callbacks=[probe],
                        verbose=1 if sys.stdout.isatty() else 2)
    seconds = probe.seconds()
    fitted = len(x_train) - int(len(x_train) * REFERENCE["validation_split"])  # Keras' split: the last 10%
    result = summary(probe, fitted, len(history.epoch), seconds, True)
    result.update(tta="none", test_accuracy=probe.accuracy("none"), test_images=len(x_test))
    return result


def run_tf_tutorial_cnn(args) -> dict:
    """The TensorFlow CNN tutorial's model, as published, on imagerec's prepared CIFAR-10. The
    tutorial passes the test images as validation_data, which only reports; here the probe does."""
    import keras
    import numpy as np
    from keras import layers

    from imagerec import params, training

    seed = params.load("cifar10", args.params).seed
    training.set_seeds(seed)
    data = load_splits(args.prepared_root / "cifar10", args.limit, seed)
    x_train = np.concatenate([data.splits["train"].images, data.splits["val"].images]).astype("float32") / 255
    y_train = np.concatenate([data.splits["train"].labels, data.splits["val"].labels])
    x_test = data.splits["test"].images.astype("float32") / 255
    model = keras.Sequential([
        keras.Input(shape=(32, 32, 3)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10),
    ])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    probe = test_probe(x_test, data.splits["test"].labels, 500, "none", logits=True)
    probe.started = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=TUTORIAL["batch_size"], epochs=args.epochs or TUTORIAL["epochs"],
                        callbacks=[probe], verbose=1 if sys.stdout.isatty() else 2)
    result = summary(probe, len(x_train), len(history.epoch), probe.seconds(), False)
    result.update(tta="none", test_accuracy=probe.accuracy("none"), test_images=len(x_test))
    return result


def child(args) -> None:
    import tensorflow as tf

    kind, _, dataset = args.child.partition(":")
    result = run_reference(dataset, args) if kind == "reference" else run_imagerec(kind, args)
    result["tensorflow"] = tf.__version__
    Path(args.child_result).write_text(json.dumps(result))


# ---- parent side: no TensorFlow, one child per run ----------------------------------------

def measured_child(name: str, args, params_file: Path) -> dict | None:
    """Run one training in a child process; its result plus the child's peak RSS, or None."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--child-result", str(out),
                   "--prepared-root", str(args.prepared_root), "--pretrained-root", str(args.pretrained_root),
                   "--params", str(params_file), "--epochs", str(args.epochs or 0), "--limit", str(args.limit or 0)]
        load = os.getloadavg()[0]
        print(f"== {name}", flush=True)
        # cwd outside the repository: dvclive (inside training.fit) then finds no DVC repo to open
        run = run_measured(command, cwd=scratch, env=child_env())
        if run["exit_code"] != 0:
            print(f"== {name} failed (exit {run['exit_code']})", flush=True)
            return None
        result = json.loads(out.read_text())
    result["peak_rss_mib"] = run["peak_rss_mib"]
    result["load_average_at_start"] = round(load, 2)  # other work on the machine slows the run
    return result


def with_settings(params_file: Path, settings: list[str], out: Path) -> Path:
    """A copy of the params file with `dvc exp run -S` settings applied (`++KEY=VALUE` too)."""
    from imagerec.params import load_yaml

    tree = load_yaml(params_file.read_text())
    for setting in settings:
        key, equals, value = setting.lstrip("+").partition("=")
        parts = key.split(".")
        if not equals or len(parts) < 3 or parts[0] != "datasets" or parts[2] not in SETTABLE:
            raise SystemExit(f"error: --set {setting!r}: expected datasets.DATASET.SECTION...=VALUE, "
                             f"SECTION one of {', '.join(SETTABLE)}")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = load_yaml(value)
    out.write_text(yaml.safe_dump(tree, sort_keys=False))
    return out


def airbench_full_budget() -> list[str]:
    """The ladder's last row at its full budget: every lever, batch 1,024, 10 epochs (the epochs
    belong to the recipe: its schedule decays over them). params.yaml's cifar10 recipe on
    2026-12-06 before its triangle schedule, set explicitly so that `--airbench` means the same on
    any params.yaml."""
    return cifar10_ablation.airbench_settings(1024) + [cifar10_ablation.C + "train.epochs=10"]


def comparison(mnist: dict | None, reference: dict | None) -> dict | None:
    if not (mnist and reference):
        return None
    mine, theirs = mnist.get("seconds_to_99_2"), reference.get("seconds_to_99_2")
    ratio = round(mine / theirs, 2) if mine and theirs else None
    return {
        "target_accuracy": TARGET,
        "imagerec_seconds_to_99_2": mine,
        "reference_seconds_to_99_2": theirs,
        "time_ratio": ratio,  # null when either never reached 99.2%
        "imagerec_final_accuracy": mnist["test_accuracy"],
        "reference_final_accuracy": reference["test_accuracy"],
        "same_run": mnist["command"] == reference["command"] and mnist["run_started"] == reference["run_started"],
        "sentence": (f"imagerec reaches 99.2% in {ratio}x the time of the reference and ends at "
                     f"{100 * mnist['test_accuracy']:.2f}%" if ratio else None),
    }


def pipeline_run(dataset: str, ref: str) -> dict:
    """A pipeline run's validation accuracy after each epoch, at evenly spread train seconds."""
    summary = read_at(ref, f"plots/{dataset}/train/metrics.json")
    log = text_at(ref, f"plots/{dataset}/train/plots/metrics/eval/accuracy.tsv")
    validation = [line.split("\t") for line in log.splitlines()[1:] if line]  # step, accuracy
    seconds_per_epoch = summary["train_seconds"] / len(validation)
    commit = subprocess.run(["git", "rev-parse", ref], check=True, capture_output=True, text=True).stdout.strip()
    return {"dataset": dataset, "ref": ref, "commit": commit,
            "test_accuracy": read_at(ref, f"metrics/{dataset}.json")["accuracy"], "train_seconds": summary["train_seconds"],
            "epochs": len(validation), "curve_of": "validation",
            "curve": [[int(step) + 1, round((int(step) + 1) * seconds_per_epoch, 1), round(float(accuracy), 5)]
                      for step, accuracy in validation],
            "environment": summary.get("environment")}


def entries(result: dict) -> list[tuple[str, str, dict]]:
    """(name, dataset, entry) of every run: imagerec's by label, then the references."""
    return [*((label, entry.get("dataset", label), entry) for label, entry in result["datasets"].items()),
            *((f"{REFERENCES[dataset]} (reference)", dataset, entry) for dataset, entry in result["references"].items())]


def table(result: dict) -> str:
    rows = [("run", "test acc", "no TTA", "epochs", "train s", "img/s", "peak RSS", "to 99.2%")]
    for name, _, e in entries(result):
        to_target = e.get("seconds_to_99_2")
        rows.append((name, f"{100 * e['test_accuracy']:.2f}%",
                     f"{100 * e['test_accuracy_no_tta']:.2f}%" if "test_accuracy_no_tta" in e else "",
                     str(e["epochs"]), f"{e['train_seconds']:.1f}", f"{e['images_per_second']:.0f}",
                     f"{e['peak_rss_mib']:.0f} MiB",
                     "" if "seconds_to_99_2" not in e else "never" if to_target is None else f"{to_target:.1f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    if result.get("comparison") and result["comparison"]["sentence"]:
        lines.append(result["comparison"]["sentence"])
    return "\n".join(lines)


def plot(result: dict, datasets: list[str], path: Path) -> None:
    """Test accuracy after each epoch against training minutes, one line per run of `datasets`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, dataset, e in entries(result):
        if dataset not in datasets:
            continue
        axes.plot([point[1] / 60 for point in e["curve"]], [100 * point[2] for point in e["curve"]], marker="o", markersize=3,
                  label=f"{name}: {100 * e['test_accuracy']:.2f}% in {e['train_seconds'] / 60:.1f} min")
    for name, e in result.get("pipeline_runs", {}).items():
        if e["dataset"] in datasets:
            axes.plot([point[1] / 60 for point in e["curve"]], [100 * point[2] for point in e["curve"]], linestyle="--",
                      label=f"{name}: validation per epoch; {100 * e['test_accuracy']:.2f}% test "
                            f"in {e['train_seconds'] / 60:.1f} min")
    dashed = any(e["dataset"] in datasets for e in result.get("pipeline_runs", {}).values())
    axes.set(xlabel="training minutes (2 CPU cores; scoring excluded)",
             ylabel="accuracy (%): test, dashed validation" if dashed else "test accuracy (%)",
             title=f"Time to accuracy: {', '.join(datasets)}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")  # accuracy curves rise: the corner they leave empty
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"wrote {path}")


def load_results(path: Path) -> dict:
    result = json.loads(path.read_text()) if path.exists() else {"datasets": {}}
    if "reference" in result:  # the file's layout before CIFAR-10 had a reference
        result["references"] = {"mnist": result.pop("reference")} if result["reference"] else {}
    result.setdefault("references", {})
    return result


def record_pipeline_runs(dataset: str, args) -> int:
    result = load_results(args.results)
    for named in args.pipeline_runs:
        name, equals, ref = named.partition("=")
        if not (name and equals and ref):
            raise SystemExit(f"error: --pipeline-run {named!r}: expected NAME=REF")
        try:
            run = pipeline_run(dataset, ref)
        except subprocess.CalledProcessError as error:
            raise SystemExit(f"error: --pipeline-run {named!r}: {error.stderr.strip().splitlines()[-1]}") from None
        result.setdefault("pipeline_runs", {})[name] = {**run, "command": shlex.join(["python", *sys.argv]),
                                                         "finished": now()}
        print(f"{name}: {len(run['curve'])} epochs, {run['train_seconds']:.0f} s, test {100 * run['test_accuracy']:.2f}%")
    write_result(args.results, result)
    if args.plot:
        plot(result, [dataset], args.plot)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", help=f"of {', '.join(DATASETS)} (default: all three)")
    parser.add_argument("--reference", action="store_true",
                        help="also train each chosen dataset's reference (MNIST: keras.io's convnet; CIFAR-10: the TF tutorial's CNN)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="SETTING",
                        help="a params change, as dvc exp run -S: datasets.cifar10.train.epochs=10")
    parser.add_argument("--airbench", action="store_true", help="the airbench ladder's last row's settings (CIFAR-10)")
    parser.add_argument("--label", help="the run's name in the results (default: the dataset[-airbench])")
    parser.add_argument("--prepared-root", type=Path, default=Path("data/prepared"))
    parser.add_argument("--pretrained-root", type=Path, default=Path("data/pretrained"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--epochs", type=int, default=0, help="override every phase's epochs (smoke runs)")
    parser.add_argument("--limit", type=int, default=0, help="a seeded sample of N images of every split (smoke runs)")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"JSON written (default: {RESULTS})")
    parser.add_argument("--plot", type=Path, help="also draw the chosen datasets' runs (a PNG)")
    parser.add_argument("--pipeline-run", dest="pipeline_runs", action="append", default=[], metavar="NAME=REF",
                        help="record, without training, the dataset's pipeline run committed at a git ref")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    unknown = sorted(set(args.datasets) - set(DATASETS))
    if unknown:
        parser.error(f"unknown datasets {', '.join(unknown)} (choose from {', '.join(DATASETS)})")
    datasets = args.datasets or list(DATASETS)
    if args.label and len(datasets) > 1:
        parser.error("--label names one run: give one dataset")
    if args.pipeline_runs:
        if len(datasets) != 1 or args.reference or args.airbench or args.settings or args.label:
            parser.error("--pipeline-run records one dataset's runs and trains nothing: give one dataset and no "
                         "--reference, --airbench, --set or --label")
        return record_pipeline_runs(datasets[0], args)
    for name in ("prepared_root", "pretrained_root", "params"):  # the children run elsewhere
        setattr(args, name, getattr(args, name).resolve())

    started = datetime.now(UTC).isoformat(timespec="seconds")
    command = shlex.join(["python", *sys.argv])
    suffix = "-airbench" if args.airbench else ""
    runs = [(args.label or dataset + suffix, dataset) for dataset in datasets]
    runs += [(f"reference:{dataset}", dataset) for dataset in datasets if args.reference and dataset in REFERENCES]
    measured, failed = {}, []
    with tempfile.TemporaryDirectory() as scratch:
        # --set comes last, so it changes what --airbench sets
        params_file = with_settings(args.params, (airbench_full_budget() if args.airbench else []) + args.settings,
                                    Path(scratch) / "params.yaml")
        for name, dataset in runs:
            result = measured_child(name if name.startswith("reference:") else dataset, args, params_file)
            if result is None:
                failed.append(name)
                continue
            result.update(dataset=dataset, command=command, run_started=started, limit=args.limit or None,
                          epochs_override=args.epochs or None, finished=now())
            if not name.startswith("reference:"):
                result["settings"] = args.settings + (["--airbench"] if args.airbench else [])
            measured[name] = result

    result = load_results(args.results)
    tensorflow = [entry.pop("tensorflow") for entry in measured.values()]
    result.update(command=command, machine={
        "platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "tensorflow": tensorflow[0] if tensorflow else result.get("machine", {}).get("tensorflow")})
    for name, entry in measured.items():
        if name.startswith("reference:"):
            result["references"][entry["dataset"]] = entry
        else:
            result["datasets"][name] = entry
    result["comparison"] = comparison(result["datasets"].get("mnist"), result["references"].get("mnist"))
    write_result(args.results, result)
    print(table(result))
    if args.plot:
        plot(result, datasets, args.plot)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
