"""Run `dvc repro` and record the wall time of every stage it runs.

    python benchmarks/repro_timed.py [dvc repro args...]   # e.g. --force, or a stage name; -h: this text

Streams dvc's output as it comes and records in benchmarks/results/stage_times.json, per
stage, the seconds from its "Running stage" line to the end of its run. Stages
this run did not execute keep their earlier figure, so partial runs (e.g. `--force -s STAGE`)
fill in the table. The configure@<dataset> stages (always_changed) run on every repro, so
every run records them too.
"""
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "stage_times.json"


def main() -> int:
    if {"-h", "--help"} & set(sys.argv[1:]):  # this script's help; a `dvc repro --help` run would be recorded
        print(__doc__)
        return 0
    command = ["dvc", "repro", *sys.argv[1:]]
    started = time.monotonic()
    times, current, current_start = {}, None, None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        now = time.monotonic()
        match = re.match(r"Running stage '([^']+)'", line)
        # A stage ends at its lock-file update or, when the lock does not change (--force on an
        # unchanged stage, configure on every run), at DVC's next line about a stage (the next one
        # starts, is unchanged or comes from the run cache) or at the end of the whole run.
        skipped = re.match(r"(Stage )?'[^']+' (didn't change, skipping|is cached)", line)
        if current and (match or skipped or line.startswith("Updating lock file")):
            times[current] = round(now - current_start, 1)
            current = None
        if match:
            current, current_start = match.group(1), now
    code = process.wait()
    if current:
        times[current] = round(time.monotonic() - current_start, 1)
    result = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": [], "stage_seconds": {}}
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    result["runs"].append({
        "command": " ".join(command),
        "exit_code": code,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "total_seconds": round(time.monotonic() - started, 1),
        "stages_run": sorted(times),
    })
    if code == 0:  # a failed run's times describe no finished pipeline
        result["stage_seconds"].update(times)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"stage times written to {RESULTS}")
    return code


if __name__ == "__main__":
    sys.exit(main())
