"""Run `dvc repro` and record the wall time of every stage it runs.

    python benchmarks/repro_timed.py [dvc repro args...]   # e.g. --force, or a stage name; -h: this text

Streams dvc's output as it comes and records in benchmarks/results/stage_times.json, per
stage, the seconds from its "Running stage" line to the end of its run. Stages
this run did not execute keep their earlier figure, so partial runs (e.g. `--force -s STAGE`)
fill in the table. The configure@<dataset> stages (always_changed) run on every repro, so
every run records them too.
"""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from common import now, write_result

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
        at = time.monotonic()
        match = re.match(r"Running stage '([^']+)'", line)
        # A stage ends at its lock-file update or, when the lock does not change (--force on an
        # unchanged stage, configure on every run), at DVC's next line about a stage (the next one
        # starts, is unchanged or comes from the run cache) or at the end of the whole run.
        skipped = re.match(r"(Stage )?'[^']+' (didn't change, skipping|is cached)", line)
        if current and (match or skipped or line.startswith("Updating lock file")):
            times[current] = round(at - current_start, 1)
            current = None
        if match:
            current, current_start = match.group(1), at
    code = process.wait()
    if current:
        times[current] = round(time.monotonic() - current_start, 1)
    result = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": [], "stage_seconds": {}}
    result.pop("machine", None)  # write_result stamps this machine's
    result["runs"].append({
        "command": " ".join(command),
        "exit_code": code,
        "finished": now(),
        "total_seconds": round(time.monotonic() - started, 1),
        "stages_run": sorted(times),
    })
    if code == 0:  # a failed run's times describe no finished pipeline
        result["stage_seconds"].update(times)
    write_result(RESULTS, result)
    return code


if __name__ == "__main__":
    sys.exit(main())
