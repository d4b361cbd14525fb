"""Peak memory and time of writing a prepared images file: imagerec's `RowFile` (plain file writes,
then an in-place compaction) against `numpy.lib.format.open_memmap` plus a chunked copy of the kept
rows, the obvious replacement.

    python benchmarks/row_writer.py [--rows 25000] [--size 224] [--drop 0.01] [--dir DIR]

Preprocess decodes photos one by one and writes each to its row of `{split}_images.npy`; photos
that cannot be decoded are dropped, so the kept rows are compacted at the end. This benchmark
writes the same rows both ways, each in a fresh child process (so its peak RSS is its own): a
Cats vs Dogs-sized file by default, 25,000 rows of 224 x 224 x 3 (3.5 GiB), with 1% of the rows
dropped. Decoding is left out; the rows are copies of 64 random images. Both outputs must be
byte-identical to what np.save would write. Writes benchmarks/results/row_writer.json.
"""
import argparse
import hashlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import RESULTS, write_result
from imagerec.datasets import CHUNK_BYTES, RowFile


def rows_and_kept(rows: int, size: int, drop: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (64, size, size, 3), dtype=np.uint8)
    kept = rng.random(rows) >= drop
    return pool, kept


def write_row_file(path: Path, pool: np.ndarray, kept: np.ndarray) -> None:
    out = RowFile(path, len(kept), pool.shape[1:])
    for row in np.flatnonzero(kept):
        out.write(row, pool[row % len(pool)])
    out.finish(kept)


def write_open_memmap(path: Path, pool: np.ndarray, kept: np.ndarray) -> None:
    scratch = path.with_name(path.stem + ".scratch.npy")
    every = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.uint8, shape=(len(kept), *pool.shape[1:]))
    for row in np.flatnonzero(kept):
        every[row] = pool[row % len(pool)]
    keep = np.flatnonzero(kept)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(keep), *pool.shape[1:]))
    chunk = max(1, CHUNK_BYTES // every[0].nbytes)
    for start in range(0, len(keep), chunk):
        out[start:start + chunk] = every[keep[start:start + chunk]]
    out.flush()
    del out, every
    scratch.unlink()


WRITERS = {"RowFile": write_row_file, "open_memmap + chunked copy": write_open_memmap}


def child(writer: str, path: Path, rows: int, size: int, drop: float) -> dict:
    pool, kept = rows_and_kept(rows, size, drop)
    start = time.perf_counter()
    WRITERS[writer](path, pool, kept)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(2**24):
            digest.update(block)
    return {"writer": writer, "seconds": round(seconds, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "file_mib": round(path.stat().st_size / 2**20), "sha256": digest.hexdigest()}


def expected_sha256(rows: int, size: int, drop: float) -> str:
    """What np.save of the kept rows writes, hashed without holding the array."""
    pool, kept = rows_and_kept(rows, size, drop)
    keep = np.flatnonzero(kept)
    digest = hashlib.sha256()
    header = np.lib.format.header_data_from_array_1_0(pool[:0])
    header["shape"] = (len(keep), *pool.shape[1:])
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    digest.update(buffer.getvalue())
    for row in keep:
        digest.update(pool[row % len(pool)].tobytes())
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=25_000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--drop", type=float, default=0.01, help="fraction of rows dropped (default: 0.01)")
    parser.add_argument("--dir", type=Path, help="where the files go (default: a temporary folder)")
    parser.add_argument("--results", type=Path, default=RESULTS / "row_writer.json")
    parser.add_argument("--child", choices=sorted(WRITERS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.out, args.rows, args.size, args.drop)))
        return 0

    expected = expected_sha256(args.rows, args.size, args.drop)
    runs = []
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        for writer in WRITERS:
            out = Path(scratch) / "train_images.npy"
            done = subprocess.run([sys.executable, __file__, "--child", writer, "--out", str(out), "--rows", str(args.rows),
                                   "--size", str(args.size), "--drop", str(args.drop)],
                                  check=True, capture_output=True, text=True)
            run = json.loads(done.stdout.splitlines()[-1])
            run["same_as_np_save"] = run.pop("sha256") == expected
            out.unlink()
            runs.append(run)
            print(f"{writer}: {run['seconds']} s, peak RSS {run['peak_rss_mib']} MiB, {run['file_mib']} MiB file, "
                  f"same bytes as np.save: {run['same_as_np_save']}", flush=True)
    write_result(args.results, {"command": "python benchmarks/row_writer.py " + " ".join(sys.argv[1:]),
                                "rows": args.rows, "row_shape": [args.size, args.size, 3], "drop": args.drop,
                                "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
