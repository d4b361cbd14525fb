"""Headline accuracy as mean ± standard deviation over seeds, so README claims only what holds
beyond one run's luck.

    python benchmarks/seeds.py [DATASET ...] [--seeds 43 44] [--dry-run]

The first run of each dataset is the committed one (params.yaml's seed, metrics/ at HEAD), read
again on every call: after a new full run of the same recipe, the command with seeds already run
refreshes it. Each
dataset's entry records its params (the seed left out); when HEAD's differ (or none are
recorded), its runs are of another recipe: they move to the file's `superseded` list, and the dataset starts over. Every
further seed is one `dvc exp run --temp -S datasets.X.seed=S evaluate@X` on the full data of
params.yaml. The seed draws the validation split from the training images, the initial weights,
the augmentation and the batch order; the test split is the source's held-out one and stays the
same, so the spread is that of training, not of which images are scored. Each run records the
machine it trained on (the train summary's environment): runs on different CPUs differ by more than
their seeds, and the table says so when it mixes them.

Rounds go seed by seed across the datasets. The results file is rewritten after every run, and the
runs it holds are not repeated, so a run cut short is continued by running the command again. Writes benchmarks/results/seeds.json and prints the table.
Needs the data where `dvc repro` finds it (IMAGEREC_MIRROR for a mirror). On two cores with
AVX-512, a CIFAR-10 seed takes about 25 minutes (airbench's recipe), MNIST and Cats vs Dogs about
ten minutes each; without AVX-512, several times that.
"""
import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

from common import RESULTS, now, read_at, run_experiment, write_result
from imagerec.params import load_yaml

DATASETS = ["mnist", "cats_vs_dogs", "cifar10"]


def committed_section(dataset: str) -> dict:
    text = subprocess.run(["git", "show", "HEAD:params.yaml"], check=True, capture_output=True, text=True).stdout
    return load_yaml(text)["datasets"][dataset]


def recipe(section: dict) -> dict:
    """What the seeds share: the dataset's params without the seed."""
    return {key: value for key, value in section.items() if key != "seed"}


def run_row(dataset: str, ref: str, seed: int) -> dict:
    summary = read_at(ref, f"plots/{dataset}/train/metrics.json")
    metrics = read_at(ref, f"metrics/{dataset}.json")
    return {"seed": seed, "test_accuracy": metrics["accuracy"], "test_images": metrics["test_images"],
            "last_val_accuracy": round(summary["eval"]["accuracy"], 4), "epochs_run": summary["step"] + 1,
            "train_seconds": summary["train_seconds"], "environment": summary.get("environment"),
            "from": "committed run (HEAD)" if ref == "HEAD" else ref}


def spread(runs: list[dict]) -> dict:
    accuracies = [run["test_accuracy"] for run in runs]
    mean = statistics.fmean(accuracies)
    out = {"runs": len(runs), "mean": round(mean, 5), "min": min(accuracies), "max": max(accuracies),
           # what the test split's size alone would give: one binomial standard error at the mean
           "binomial_se": round(math.sqrt(mean * (1 - mean) / runs[0]["test_images"]), 5)}
    if len(runs) > 1:
        out["sd"] = round(statistics.stdev(accuracies), 5)
    return out


def table(result: dict) -> str:
    lines = ["| dataset | runs | mean ± sd | min – max | binomial SE of one run |", "|---|---:|---:|---:|---:|"]
    for dataset, entry in result["datasets"].items():
        s = entry["spread"]
        sd = f" ± {100 * s['sd']:.2f}" if "sd" in s else ""
        lines.append(f"| {dataset} | {s['runs']} | {100 * s['mean']:.2f}{sd}% | "
                     f"{100 * s['min']:.2f} – {100 * s['max']:.2f}% | {100 * s['binomial_se']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", help=f"some of {DATASETS} (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[43, 44], help="seeds beyond the committed run's")
    parser.add_argument("--results", type=Path, default=RESULTS / "seeds.json")
    parser.add_argument("--dry-run", action="store_true", help="print the experiments only")
    args = parser.parse_args()
    args.datasets = args.datasets or DATASETS
    if set(args.datasets) - set(DATASETS):
        parser.error(f"datasets: choose from {DATASETS}")

    # runs already in the results file are kept, so a run cut short is continued, not repeated
    result = json.loads(args.results.read_text()) if args.results.exists() else {"datasets": {}}
    result["command"] = "python benchmarks/seeds.py " + " ".join(sys.argv[1:])
    result.pop("machine", None)  # write_result stamps this machine's; each run records its own
    for dataset, entry in result["datasets"].items():  # runs recorded before runs recorded their machine
        for run in entry["runs"]:
            if run.get("environment") is None:
                ref = "HEAD" if run["from"].startswith("committed") else run["from"]
                run["environment"] = read_at(ref, f"plots/{dataset}/train/metrics.json").get("environment")
    for dataset in args.datasets:
        section = committed_section(dataset)
        params = recipe(section)
        entry = result["datasets"].get(dataset)
        if entry is not None and entry.get("params") != params:
            # another recipe's seeds (or seeds of an unrecorded one) say nothing of this one's: they
            # start over, and the old ones are kept aside
            print(f"{dataset}: params.yaml's recipe changed since its seeds ran; starting over from the committed run")
            result.setdefault("superseded", []).append({"dataset": dataset, "until": now(), **entry})
            entry = None
        # The committed run is read again every time: a later full run of the same recipe (another
        # machine, a change of code) replaces it at HEAD.
        committed = run_row(dataset, "HEAD", section.get("seed", 42))
        if entry is None:
            result["datasets"][dataset] = {"params": params, "runs": [committed], "spread": spread([committed])}
        else:
            entry["runs"] = [committed] + [run for run in entry["runs"] if not run["from"].startswith("committed")]
            entry["spread"] = spread(entry["runs"])
    for seed in args.seeds:
        for dataset in args.datasets:
            if any(run["seed"] == seed for run in result["datasets"][dataset]["runs"]):
                continue
            if args.dry_run:
                print(f"dvc exp run --temp -n seed-{dataset}-{seed} -S datasets.{dataset}.seed={seed} evaluate@{dataset}")
                continue
            ref = run_experiment(f"seed-{dataset}-{seed}", [f"datasets.{dataset}.seed={seed}"], f"evaluate@{dataset}")
            entry = result["datasets"][dataset]
            entry["runs"].append(run_row(dataset, ref, seed))
            entry["spread"] = spread(entry["runs"])
            write_result(args.results, result)
    if not args.dry_run:
        write_result(args.results, result)
    print(table(result))
    machines = {json.dumps(run["environment"], sort_keys=True) for entry in result["datasets"].values()
                for run in entry["runs"]}
    if len(machines) > 1:
        print(f"note: these runs trained on {len(machines)} different machines (see each run's environment)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
