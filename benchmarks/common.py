"""What the benchmarks share: where results go, how the machine is described, how a result file is
written, and how a DVC experiment is run and its outputs read back.

A benchmark runs as a script from the repository root (`python benchmarks/NAME.py`), so Python puts
this folder on the import path and `from common import ...` finds this file.
"""
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    """The CPU model, core count, memory and Python: what a reader needs to compare a figure."""
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.machine()}, {os.cpu_count()} CPUs ({model or 'model unknown'}), {memory:.0f} GiB RAM, "
            f"Python {platform.python_version()}")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_result(path: Path, result: dict) -> None:
    """Writes one benchmark's result as JSON, stamped with the machine and the time it finished."""
    result = {**result, "machine": result.get("machine", machine()), "finished": now()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path}", flush=True)


def run_experiment(name: str, settings: list[str], target: str) -> str:
    """`dvc exp run --temp -n NAME -S ... TARGET`, replacing an earlier experiment of that name; the
    experiment's git ref, to read its outputs from with `read_at`."""
    subprocess.run(["dvc", "exp", "remove", name], capture_output=True)
    command = ["dvc", "exp", "run", "--temp", "-n", name]
    for setting in settings:
        command += ["-S", setting]
    print(" ".join(command + [target]), flush=True)
    subprocess.run(command + [target], check=True)
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], check=True,
                          capture_output=True, text=True).stdout.split()
    matches = [ref for ref in refs if ref.rsplit("/", 1)[-1] == name]
    if len(matches) != 1:
        raise SystemExit(f"error: expected one experiment named {name}, found {len(matches)}")
    return matches[0]


def read_at(ref: str, path: str) -> dict:
    """A JSON file as committed at a git ref (an experiment's, or a branch's)."""
    return json.loads(subprocess.run(["git", "show", f"{ref}:{path}"], check=True, capture_output=True,
                                     text=True).stdout)
