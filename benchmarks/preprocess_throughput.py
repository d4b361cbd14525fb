"""Preprocess throughput on Cats-vs-Dogs-like photo archives: images decoded+resized per second
and peak memory, as the number of images grows.

    python benchmarks/preprocess_throughput.py [--images 3000 ...] [--kaggle-size] [--image-size 160]

Builds (once, kept in --workdir) a zip of synthetic JPEG photos laid out like
cats_and_dogs_filtered.zip (`top/train/{cats,dogs}/`, `top/validation/{cats,dogs}/`, two thirds
train), 300-500 px on a side, about 22 KB each like the real ones. For each size it runs the
preprocess stage's library code (`imagerec.layouts.prepare` + `statistics`, with cats_vs_dogs'
preprocess params from params.yaml and no max_per_class) in a child process, and records the
child's seconds and its peak RSS (from wait4, the child's own rusage). --kaggle-size adds the
25,000 images of Kaggle's dogs-vs-cats training set (about 0.55 GB of JPEGs, 5-10 minutes to build).
Writes benchmarks/results/preprocess_throughput.json (or --results).
"""
import argparse
import io
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from common import child_env, run_measured, write_result

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "preprocess_throughput.json"
KAGGLE_SIZE = 25_000
TOP = "cats_and_dogs_filtered/"


def photo(rng: np.random.Generator) -> bytes:
    """A JPEG of 300-500 px a side that compresses like a photo: smooth shapes plus grain."""
    from PIL import Image

    width, height = rng.integers(300, 501, size=2)
    coarse = rng.integers(0, 256, size=(int(rng.integers(4, 12)), int(rng.integers(4, 12)), 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((int(width), int(height)), Image.Resampling.BICUBIC), np.int16)
    image = np.clip(image + rng.normal(0, 6, size=image.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=int(rng.integers(65, 90)))
    return buffer.getvalue()


def build_archive(path: Path, count: int, seed: int = 0) -> dict:
    """The synthetic archive (kept: reused when it already exists) and a source.json record."""
    from imagerec.sources import sha256_of

    if not path.exists():
        rng = np.random.default_rng(seed)
        started = time.perf_counter()
        partial = path.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as zf:  # JPEGs do not deflate
            for i in range(count):
                split = "train" if i % 3 else "validation"
                animal = ("cats", "dogs")[(i // 3) % 2]
                zf.writestr(f"{TOP}{split}/{animal}/{animal[:-1]}.{i}.jpg", photo(rng))
                if (i + 1) % 1000 == 0:
                    print(f"  built {i + 1}/{count} photos", flush=True)
        partial.rename(path)
        print(f"built {path} in {time.perf_counter() - started:.0f} s", flush=True)
    return {"file": path.name, "origin": "synthetic (benchmarks/preprocess_throughput.py)", "sha256": sha256_of(path)}


def child(raw_dir: Path, out_dir: Path, params_file: Path) -> None:
    """Runs in the measured process: what preprocess.py does before its figures."""
    from imagerec import datasets, layouts, params

    pre = params.load("cats_vs_dogs", params_file).preprocess
    seed = params.load("cats_vs_dogs", params_file).seed
    started = time.perf_counter()
    # Decodes and resizes every image straight into its row of the output .npy files.
    prepared, bad, ignored = layouts.prepare(raw_dir, out_dir, pre.image_size, pre.color_mode, pre.val_fraction,
                                              pre.test_fraction, 0, seed)
    decoded = time.perf_counter()
    datasets.statistics(prepared, bad, ignored)
    done = time.perf_counter()
    print(json.dumps({
        "images": sum(len(split.labels) for split in prepared.splits.values()),
        "unreadable": len(bad),
        "prepare_seconds": round(decoded - started, 2),
        "statistics_seconds": round(done - decoded, 2),
        "prepared_bytes": sum(f.stat().st_size for f in out_dir.iterdir()),
    }))


def measure(raw_dir: Path, params_file: Path) -> dict:
    with tempfile.TemporaryDirectory(dir=raw_dir.parent) as out:
        command = [sys.executable, __file__, "--child", str(raw_dir), out, str(params_file)]
        run = run_measured(command, env=child_env(), capture=True)  # this child's own rusage
    if run["exit_code"] != 0:
        sys.exit(f"the measured child failed ({run['exit_code']})")
    result = json.loads(run["stdout"].strip().splitlines()[-1])
    result.update(
        child_seconds=run["seconds"],
        images_per_second=round(result["images"] / result["prepare_seconds"], 1),
        peak_rss_mib=run["peak_rss_mib"],
    )
    return result


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
        return 0
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[3000], help="archive sizes (default: 3000)")
    parser.add_argument("--kaggle-size", action="store_true", help=f"also {KAGGLE_SIZE:,} images")
    parser.add_argument("--image-size", type=int, help="preprocess.image_size (default: params.yaml's)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "imagerec-preprocess-bench",
                        help="where the archives are built and kept (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"JSON written (default: {RESULTS})")
    args = parser.parse_args()
    sizes = sorted(set(args.images + ([KAGGLE_SIZE] if args.kaggle_size else [])))
    if min(sizes) < 12:
        parser.error("--images: at least 12 (every split needs both classes)")

    from imagerec.params import load_yaml

    sections = load_yaml((ROOT / "params.yaml").read_text())["datasets"]
    section = sections["cats_vs_dogs"]
    section["preprocess"]["max_per_class"] = 0
    if args.image_size:
        section["preprocess"]["image_size"] = args.image_size
    args.workdir.mkdir(parents=True, exist_ok=True)
    params_file = args.workdir / "params.yaml"
    params_file.write_text(yaml.safe_dump({"datasets": sections}, sort_keys=False))

    runs = []
    for count in sizes:
        raw_dir = args.workdir / f"raw-{count}"
        raw_dir.mkdir(exist_ok=True)
        archive = raw_dir / "cats_and_dogs_filtered.zip"
        (raw_dir / "source.json").write_text(json.dumps(build_archive(archive, count)))
        with zipfile.ZipFile(archive) as zf:
            jpeg_bytes = [info.file_size for info in zf.infolist() if not info.is_dir()]
        run = {"archive_images": count, "archive_bytes": archive.stat().st_size,
               "mean_jpeg_bytes": round(float(np.mean(jpeg_bytes))), **measure(raw_dir, params_file)}
        runs.append(run)
        print(f"{count} images: {run['images_per_second']} images/s decoded+resized, "
              f"peak RSS {run['peak_rss_mib']} MiB, prepare {run['prepare_seconds']} s, statistics {run['statistics_seconds']} s",
              flush=True)
    result = {
        "preprocess": section["preprocess"],
        "runs": runs,
    }
    write_result(args.results, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
