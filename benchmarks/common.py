"""What the benchmarks share: where results go, how the machine is described, how a result file is
written, and how a DVC experiment is run and its outputs read back.

A benchmark runs as a script from the repository root (`python benchmarks/NAME.py`), so Python puts
this folder on the import path and `from common import ...` finds this file.
"""
import json
import os
import platform
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]


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


def size_bytes(path: Path) -> int:
    """A file's size, or the total of a folder's files (a SavedModel)."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def offline_images_per_second(run, images, batch_size: int = 32) -> float:
    """A model's throughput (`run`: a batch of pixels -> probabilities) on images already decoded
    and in memory, in batches of 32, after a warm-up batch: what serving and predicting are
    measured against."""
    from imagerec import inference

    inference.predict(run, images[:batch_size], batch_size)
    started = time.perf_counter()
    inference.predict(run, images, batch_size)
    return len(images) / (time.perf_counter() - started)


def child_env(**extra: str) -> dict:
    """This environment with the repository on PYTHONPATH, for a child that imports imagerec or a
    stage from another working directory."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


class ProcSampler(threading.Thread):
    """Peak VmRSS / RssAnon / RssFile / RssShmem of one process, read from /proc/<pid>/status.

    ru_maxrss counts the resident pages of memory-mapped files too; the split tells a process
    that holds memory (anon) from one whose file pages the kernel may drop at will (file)."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peaks, self.done = pid, interval, {}, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                        self.peaks[key] = max(self.peaks.get(key, 0), int(value.split()[0]))
            except (FileNotFoundError, ProcessLookupError):
                break
            self.done.wait(self.interval)


def run_measured(command: list[str] | str, cwd: Path | None = None, env: dict | None = None,
                 capture: bool = False, capture_stderr: bool = False, sample_every: float | None = None) -> dict:
    """Runs a command (a string goes through the shell) in a child process and measures it: exit
    code, wall seconds and peak RSS (wait4's ru_maxrss: the child's own, or its largest waited-for
    descendant's). With `sample_every` seconds, also the peaks /proc shows (ProcSampler); with
    `capture`, its stdout; with `capture_stderr`, its stderr (through a file: no pipe to fill)."""
    with tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, shell=isinstance(command, str), cwd=cwd, env=env, text=True,
                                   stdout=subprocess.PIPE if capture else None,
                                   stderr=errors if capture_stderr else None)
        sampler = ProcSampler(process.pid, sample_every) if sample_every else None
        if sampler:
            sampler.start()
        stdout = process.stdout.read() if capture else None
        if capture:
            process.stdout.close()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out = {"exit_code": process.returncode, "seconds": round(time.perf_counter() - started, 2),
               "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}  # Linux reports KiB
        if sampler:
            sampler.done.set()
            sampler.join()
            out["peak_rss_sampled_mib"] = {key: round(value / 1024, 1) for key, value in sampler.peaks.items()}
        if capture:
            out["stdout"] = stdout
        if capture_stderr:
            errors.seek(0)
            out["stderr"] = errors.read()
    return out


def experiment_command(name: str, settings: list[str], target: str) -> str:
    """The shell line run_experiment runs, as results files record it (and match rows by)."""
    return " ".join(["dvc", "exp", "run", "--temp", "-n", name, *(f"-S '{s}'" for s in settings), target])


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


def text_at(ref: str, path: str) -> str:
    """A file as committed at a git ref (an experiment's, or a branch's)."""
    return subprocess.run(["git", "show", f"{ref}:{path}"], check=True, capture_output=True, text=True).stdout


def read_at(ref: str, path: str) -> dict:
    return json.loads(text_at(ref, path))
