"""A bounded load test of `imagerec serve` on loopback.

    python benchmarks/serve_load.py [--model models/mnist] [--requests 1000] [--clients 8]

Starts the server on 127.0.0.1 (a free port), sends --requests image uploads from --clients
concurrent clients (test-split images of the model's dataset, encoded as PNG), and writes
p50/p99 latency, throughput and the error count to benchmarks/results/serve_load_<dataset>.json.
"""
import argparse
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from imagerec import serve

RESULTS = Path(__file__).parent / "results"


def png_uploads(dataset: str, count: int) -> list[bytes]:
    images = np.load(Path("data/prepared") / dataset / "test_images.npy", mmap_mode="r")[:count]
    uploads = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(image).squeeze()).save(buffer, "PNG")
        uploads.append(buffer.getvalue())
    return uploads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/mnist"))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    dataset = json.loads((args.model / "model.json").read_text())["dataset"]
    uploads = png_uploads(dataset, 100)
    with serve.serving(args.model) as url:
        local = threading.local()

        def one(i: int) -> tuple[float, bool]:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            start = time.perf_counter()
            try:
                response = session.post(f"{url}/predict", files={"file": ("x.png", uploads[i % len(uploads)], "image/png")},
                                        timeout=30)
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            return (time.perf_counter() - start) * 1000, ok

        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            outcomes = list(pool.map(one, range(args.requests)))
        elapsed = time.perf_counter() - started
    latencies = np.array([ms for ms, _ in outcomes])
    result = {
        "model": str(args.model), "requests": args.requests, "clients": args.clients,
        "errors": sum(not ok for _, ok in outcomes),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "requests_per_second": round(args.requests / elapsed, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"serve_load_{dataset}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
