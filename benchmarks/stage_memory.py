"""Peak memory (RSS) and wall time of each pipeline stage, measured one stage at a time.

    python benchmarks/stage_memory.py [stage ...] [--no-deps]   # e.g. train@mnist; default: every stage

`dvc repro` runs every stage inside its own process, so its rusage mixes DVC's memory with the
stages'. This script instead reads the stages and their commands from dvc.yaml (through DVC's
API), orders them upstream first, and runs each command itself, as DVC would (a shell in the
repository root), taking the peak RSS of the command and everything it started from wait4.
Named stages bring their upstream stages along unless --no-deps. The configure@<dataset>
stages, upstream of all others, run and are measured like any stage: they write the config
files the other stages read.

The commands run outside DVC, so dvc.lock is not updated: afterwards the script asks
`dvc status` which stages' outputs now differ from dvc.lock (a stage that is not bit-for-bit
reproducible, or a lock that was already stale) and prints them, leaving out the "always
changed" that configure's stages (always_changed) report every time; `dvc commit STAGE` records the
new outputs, `dvc checkout STAGE` restores the cached ones. Results go to
benchmarks/results/stage_memory.json (or --results); stages not run keep their earlier figures.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import RESULTS as RESULTS_DIR
from common import now, run_measured, write_result
from noop_repro import out_of_date  # benchmarks/noop_repro.py, beside this script

RESULTS = RESULTS_DIR / "stage_memory.json"


def stages_in_order(repo_dir: Path, targets: list[str], with_deps: bool) -> list[tuple[str, str]]:
    """[(stage name, command)], upstream stages first."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(repo_dir)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        if targets:
            wanted = {stage for target in targets for stage in repo.stage.collect(target, with_deps=with_deps)}
        else:
            wanted = set(repo.index.stages)
        return [(stage.addressing, stage.cmd) for stage in reversed(list(nx.topological_sort(graph)))
                if stage in wanted and stage.cmd]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stages", nargs="*", help="stages to measure (default: all)")
    parser.add_argument("--no-deps", action="store_true", help="only the named stages, not their upstream ones")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the DVC repository (default: .)")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"JSON written (default: {RESULTS})")
    args = parser.parse_args()
    repo_dir = args.repo.resolve()

    plan = stages_in_order(repo_dir, args.stages, with_deps=not args.no_deps)
    result = json.loads(args.results.read_text()) if args.results.exists() else {
        "runs": [], "stage_peak_rss_mib": {}, "stage_seconds": {}}
    measured, failed = {}, None
    for name, command in plan:
        print(f"== {name}: {command}", flush=True)
        run = run_measured(command, cwd=repo_dir)  # ru_maxrss: the stage's, under its shell
        code, seconds, peak = run["exit_code"], run["seconds"], run["peak_rss_mib"]
        if code != 0:
            failed = name
            print(f"== {name} failed ({code}); stopping", flush=True)
            break
        measured[name] = (round(peak, 1), round(seconds, 1))
        print(f"== {name}: peak RSS {peak:.0f} MiB, {seconds:.1f} s", flush=True)

    changed = []
    if measured:
        status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", *measured],
                                cwd=repo_dir, capture_output=True, text=True)
        changed = sorted(out_of_date(json.loads(status.stdout or "{}"))[0]) if status.returncode == 0 else [
            "(dvc status failed)"]
    if changed:
        print(f"outputs now differ from dvc.lock for: {', '.join(changed)} "
              "(dvc commit STAGE records them, dvc checkout STAGE restores the cached ones)")

    result.pop("machine", None)  # write_result stamps this machine's
    result["runs"].append({
        "stages": [name for name, _ in plan],
        "failed": failed,
        "finished": now(),
        "differ_from_dvc_lock": changed,
    })
    for name, (peak, seconds) in measured.items():
        result["stage_peak_rss_mib"][name] = peak
        result["stage_seconds"][name] = seconds
    write_result(args.results, result)
    for name, (peak, seconds) in measured.items():
        print(f"{name:24s} {peak:8.0f} MiB {seconds:8.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
