"""A bounded load test of `imagerec serve` on loopback, beside the same model's offline speed.

    python benchmarks/serve_load.py [--model exports/mnist] [--requests 1000] [--clients 1 8 32]
                                    [--format auto] [--batch-wait-ms 5] [--max-batch 32] [--results FILE]

First measures the model offline in this process, as `imagerec serve --format FORMAT` would run
it (the format that `auto` picks here, or the one named): images per second over 1,024 test
images in batches of 32, the images already decoded. Then starts the server on 127.0.0.1 (a
free port) with that format and, for each client count, sends --requests PNG uploads of
test-split images from that many concurrent clients: throughput, p50 and p99 latency, and the
answers by status (anything but 200 is counted; 503 is the server refusing work when saturated).
The ratio of server to offline throughput is what batching buys back. Results go to
benchmarks/results/serve_load_<dataset>.json.
"""
import argparse
import asyncio
import io
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from common import RESULTS, offline_images_per_second, write_result
from imagerec import inference, modelcard, serve
from imagerec.training import environment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serving import server_process  # noqa: E402  tests/serving.py: test tooling, kept out of the package



def test_images(dataset: str, count: int) -> np.ndarray:
    return np.asarray(np.load(Path("data/prepared") / dataset / "test_images.npy", mmap_mode="r")[:count])


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.squeeze()).save(buffer, "PNG")
    return buffer.getvalue()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, fields 14 and 15, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, uploads: list[bytes], requests_count: int, clients: int, server_pid: int,
         path: str = "/predict") -> dict:
    """`requests_count` requests from `clients` concurrent keep-alive connections: POSTs of the
    uploads in turn to /predict, or GETs of another path (e.g. /health, the HTTP stack alone).
    Also the CPU time per request of this process (the client) and of the server.

    The client is asyncio (aiohttp): on the same two cores as the server, a thread per client with
    `requests` took about 2 ms of CPU per request, as much as the server's own HTTP handling,
    and its load test measured the client as much as the server."""
    import aiohttp

    async def run() -> list[tuple[float, str]]:
        outcomes, next_request = [], iter(range(requests_count))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients),
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:
            async def client() -> None:
                for i in next_request:
                    start = time.perf_counter()
                    try:
                        if path == "/predict":
                            form = aiohttp.FormData()
                            form.add_field("file", uploads[i % len(uploads)], filename="x.png", content_type="image/png")
                            answer = session.post(f"{url}{path}", data=form)
                        else:
                            answer = session.get(f"{url}{path}")
                        async with answer as response:
                            await response.read()
                            status = str(response.status)
                    except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                        status = type(err).__name__
                    outcomes.append(((time.perf_counter() - start) * 1000, status))

            await asyncio.gather(*(client() for _ in range(clients)))
        return outcomes

    client_cpu, server_cpu, started = cpu_seconds(os.getpid()), cpu_seconds(server_pid), time.perf_counter()
    outcomes = asyncio.run(run())
    elapsed = time.perf_counter() - started
    client_cpu, server_cpu = cpu_seconds(os.getpid()) - client_cpu, cpu_seconds(server_pid) - server_cpu
    served = np.array([ms for ms, status in outcomes if status == "200"])
    return {
        "path": path, "clients": clients, "requests": requests_count,
        "answers": dict(Counter(status for _, status in outcomes)),
        "p50_ms": round(float(np.percentile(served, 50)), 1) if len(served) else None,
        "p99_ms": round(float(np.percentile(served, 99)), 1) if len(served) else None,
        "requests_per_second": round(len(served) / elapsed, 1),
        "client_cpu_ms_per_request": round(1000 * client_cpu / requests_count, 2),
        "server_cpu_ms_per_request": round(1000 * server_cpu / requests_count, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("exports/mnist"))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--format", default="auto", choices=("auto", *inference.FORMATS))
    parser.add_argument("--batch-wait-ms", type=float, default=serve.BATCH_WAIT_MS, help="the server's (default: its own)")
    parser.add_argument("--max-batch", type=int, default=serve.MAX_BATCH, help="the server's (default: its own)")
    parser.add_argument("--results", type=Path, help="where to write (default: benchmarks/results/serve_load_<dataset>.json)")
    args = parser.parse_args()

    classifier = inference.Classifier(args.model)
    results = modelcard.Results(classifier.dataset, modelcard.default_results_root(args.model))
    classifier.use(args.format, results.export_accuracy_changes())
    images = test_images(classifier.dataset, 1024)
    offline = offline_images_per_second(classifier.run, images)
    print(f"{args.model} ({classifier.format}) offline: {offline:.1f} images/s", flush=True)
    uploads = [png(image) for image in images[:100]]
    runs = []
    options = ("--format", classifier.format, "--batch-wait-ms", str(args.batch_wait_ms), "--max-batch", str(args.max_batch))
    with server_process(args.model, options=options) as (url, server):
        for clients in args.clients:
            run = load(url, uploads, args.requests, clients, server.pid)
            run["of_offline"] = round(run["requests_per_second"] / offline, 2)
            runs.append(run)
            print(json.dumps(run), flush=True)
    write_result(args.results or RESULTS / f"serve_load_{classifier.dataset}.json", {
        "model": str(args.model), "format": classifier.format,
        "batch_wait_ms": args.batch_wait_ms, "max_batch": args.max_batch,
        "offline_images_per_second": round(offline, 1), "runs": runs,
        "environment": environment(),
    })


if __name__ == "__main__":
    main()
