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
import io
import json
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from common import RESULTS, offline_images_per_second, write_result
from imagerec import inference, modelcard, serve
from imagerec.training import environment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serving import serving  # noqa: E402  tests/serving.py: test tooling, kept out of the package



def test_images(dataset: str, count: int) -> np.ndarray:
    return np.asarray(np.load(Path("data/prepared") / dataset / "test_images.npy", mmap_mode="r")[:count])


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.squeeze()).save(buffer, "PNG")
    return buffer.getvalue()


def load(url: str, uploads: list[bytes], requests_count: int, clients: int) -> dict:
    local = threading.local()

    def one(i: int) -> tuple[float, str]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        start = time.perf_counter()
        try:
            response = session.post(f"{url}/predict", files={"file": ("x.png", uploads[i % len(uploads)], "image/png")},
                                    timeout=60)
            status = str(response.status_code)
        except requests.RequestException as err:
            status = type(err).__name__
        return (time.perf_counter() - start) * 1000, status

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(one, range(requests_count)))
    elapsed = time.perf_counter() - started
    served = np.array([ms for ms, status in outcomes if status == "200"])
    return {
        "clients": clients, "requests": requests_count,
        "answers": dict(Counter(status for _, status in outcomes)),
        "p50_ms": round(float(np.percentile(served, 50)), 1) if len(served) else None,
        "p99_ms": round(float(np.percentile(served, 99)), 1) if len(served) else None,
        "requests_per_second": round(len(served) / elapsed, 1),
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
    with serving(args.model, options=options) as url:
        for clients in args.clients:
            run = load(url, uploads, args.requests, clients)
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
