"""Time a no-op `dvc repro`: every stage up to date, so the cost is DVC checking hashes.

    python benchmarks/noop_repro.py [--repo DIR] [--runs 5] [stage ...]   # e.g. evaluate@mnist

In DIR (default: the current directory), checks with `dvc status` that the stages (default: all;
named ones with their upstream stages) are up to date, and stops if not: run the pipeline first.
Stages marked always_changed in dvc.yaml (configure@<dataset>) are the exception: they run on
every `dvc repro` by design, so they count as up to date and their runs are part of the timed figure.
Then runs `dvc repro [stage ...]` once untimed (a warm-up) and --runs times timed. Prints each run's seconds and the min and
median, and writes them to benchmarks/results/noop_repro.json (or --results). A timed run that executes any
other stage is an error: the figure would not be a no-op's.
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import write_result

RESULTS = Path(__file__).parent / "results" / "noop_repro.json"
ALWAYS_CHANGED = "always changed"  # what `dvc status` says of an always_changed stage, every time


def out_of_date(status: dict) -> tuple[dict, set[str]]:
    """`dvc status --json`'s stages that need a run, leaving out the "always changed" that an
    always_changed stage (configure@*) reports every time; and the names of those stages."""
    always = {name for name, states in status.items() if ALWAYS_CHANGED in states}
    changed = {name: rest for name, states in status.items() if (rest := [s for s in states if s != ALWAYS_CHANGED])}
    return changed, always


def repro(repo: Path, args: list[str], always: set[str]) -> tuple[float, list[str]]:
    """Seconds of one `dvc repro`, and the stages it ran other than the always_changed ones."""
    start = time.perf_counter()
    result = subprocess.run(["dvc", "repro", *args], cwd=repo, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"dvc repro failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return seconds, [stage for stage in re.findall(r"Running stage '([^']+)'", result.stdout) if stage not in always]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the DVC repository (default: .)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"JSON written (default: {RESULTS})")
    parser.add_argument("stages", nargs="*", help="stages to reproduce (default: all)")
    args = parser.parse_args()
    repro_args = args.stages
    repo = args.repo.resolve()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    status = ["dvc", "status", "--json", *(["--with-deps", *args.stages] if args.stages else [])]
    changed, always = out_of_date(
        json.loads(subprocess.run(status, cwd=repo, capture_output=True, text=True, check=True).stdout or "{}"))
    if changed:
        sys.exit(f"not up to date: {', '.join(changed)}; run the pipeline first (dvc repro), then time it")
    _, ran = repro(repo, repro_args, always)  # warm-up: file-system caches, DVC's state database
    if ran:
        sys.exit(f"the warm-up run executed {', '.join(ran)}: not a no-op")
    times = []
    for i in range(args.runs):
        seconds, ran = repro(repo, repro_args, always)
        if ran:
            sys.exit(f"run {i + 1} executed {', '.join(ran)}: something changed between runs")
        times.append(round(seconds, 3))
        print(f"run {i + 1}: {seconds:.3f} s", flush=True)
    stages = subprocess.run(["dvc", "stage", "list", "--names-only"], cwd=repo, capture_output=True, text=True).stdout.split()
    result = {
        "repo": str(repo),
        "command": " ".join(["dvc", "repro", *repro_args]),
        "stages_in_dvc_yaml": len(stages),
        "seconds": times,
        "min_seconds": min(times),
        "median_seconds": round(statistics.median(times), 3),
    }
    print(f"no-op dvc repro ({len(stages)} stages in dvc.yaml): min {result['min_seconds']:.3f} s, "
          f"median {result['median_seconds']:.3f} s over {args.runs} runs")
    write_result(args.results, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
