"""`imagerec serve` as a child process, for the tests, benchmarks/serve_load.py and
docs/make_screenshot.py: tooling around the package, not part of it."""
import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


@contextlib.contextmanager
def serving(model_dirs: Path | list[Path], log_path: Path | None = None, start_timeout: float = 120,
            results_root: Path | None = None, options: tuple[str, ...] = ()):
    """`imagerec serve` in a child process on a free loopback port; yields its base URL once
    /health answers, and stops it on exit."""
    with server_process(model_dirs, log_path, start_timeout, results_root, options) as (url, _):
        yield url


@contextlib.contextmanager
def server_process(model_dirs: Path | list[Path], log_path: Path | None = None, start_timeout: float = 120,
                   results_root: Path | None = None, options: tuple[str, ...] = ()):
    """As `serving`, yielding (base URL, the server's Popen): for a benchmark that reads the
    server's own CPU time."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    if isinstance(model_dirs, (str, Path)):
        model_dirs = [model_dirs]
    command = [sys.executable, "-m", "imagerec.cli", "serve", *map(str, model_dirs), "--port", str(port)]
    if results_root is not None:
        command += ["--results", str(results_root)]
    command += list(options)  # more `imagerec serve` flags
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (exit code {server.poll()}); log: {log_path}")
            try:
                requests.get(f"{url}/health", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield url, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        if log_path:
            log.close()
