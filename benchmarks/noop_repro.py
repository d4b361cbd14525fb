"""Time a no-op `dvc repro`: every stage up to date, so the cost is DVC checking hashes.

    python benchmarks/noop_repro.py [--repo DIR] [--runs 5] [stage ...]   # e.g. evaluate@mnist

In DIR (default: the current directory), checks with `dvc status` that the stages (default: all;
named ones with their upstream stages) are up to date, and stops if not: run the pipeline first.
Then runs `dvc repro [stage ...]` once untimed (a warm-up) and --runs times timed. Prints each run's seconds and the min and
median, and writes them to benchmarks/results/noop_repro.json (or --results). A timed run that executes a stage
is an error: the figure would not be a no-op's.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "noop_repro.json"


def repro(repo: Path, args: list[str]) -> tuple[float, list[str]]:
    """Seconds of one `dvc repro`, and the stages it ran."""
    start = time.perf_counter()
    result = subprocess.run(["dvc", "repro", *args], cwd=repo, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"dvc repro failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return seconds, re.findall(r"Running stage '([^']+)'", result.stdout)


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
    changed = json.loads(subprocess.run(status, cwd=repo, capture_output=True, text=True, check=True).stdout or "{}")
    if changed:
        sys.exit(f"not up to date: {', '.join(changed)}; run the pipeline first (dvc repro), then time it")
    _, ran = repro(repo, repro_args)  # warm-up: file-system caches, DVC's state database
    if ran:
        sys.exit(f"the warm-up run executed {', '.join(ran)}: not a no-op")
    times = []
    for i in range(args.runs):
        seconds, ran = repro(repo, repro_args)
        if ran:
            sys.exit(f"run {i + 1} executed {', '.join(ran)}: something changed between runs")
        times.append(round(seconds, 3))
        print(f"run {i + 1}: {seconds:.3f} s", flush=True)
    stages = subprocess.run(["dvc", "stage", "list", "--names-only"], cwd=repo, capture_output=True, text=True).stdout.split()
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "repo": str(repo),
        "command": " ".join(["dvc", "repro", *repro_args]),
        "stages_in_dvc_yaml": len(stages),
        "seconds": times,
        "min_seconds": min(times),
        "median_seconds": round(statistics.median(times), 3),
    }
    print(f"no-op dvc repro ({len(stages)} stages in dvc.yaml): min {result['min_seconds']:.3f} s, "
          f"median {result['median_seconds']:.3f} s over {args.runs} runs")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
