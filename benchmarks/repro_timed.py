"""Run `dvc repro` and record the wall time of every stage it runs.

    python benchmarks/repro_timed.py [dvc repro args...]   # e.g. --force, or a stage name

Streams dvc's output as it comes and writes benchmarks/results/stage_times.json: per stage,
seconds from its "Running stage" line to the lock-file update that ends it.
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
    command = ["dvc", "repro", *sys.argv[1:]]
    started = time.monotonic()
    times, current, current_start = {}, None, None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        now = time.monotonic()
        match = re.match(r"Running stage '([^']+)'", line)
        if match:
            current, current_start = match.group(1), now
        elif current and line.startswith("Updating lock file"):
            times[current] = round(now - current_start, 1)
            current = None
    code = process.wait()
    result = {
        "command": " ".join(command),
        "exit_code": code,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "total_seconds": round(time.monotonic() - started, 1),
        "stage_seconds": times,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"stage times written to {RESULTS}")
    return code


if __name__ == "__main__":
    sys.exit(main())
