"""Peak memory and speed of the preprocess stage on a Kaggle-sized Cats vs Dogs archive.

    python benchmarks/cats_memory.py [--images 25000] [--archive PATH] [--repo PATH] [--label NAME]

Builds (once; kept at --archive) a synthetic stand-in for Kaggle's `train.zip`: 25,000 JPEG
photos of 350-500 px with varied content, named `train/cat.N.jpg` / `train/dog.N.jpg`, plus a
few dozen bad files of each kind (corrupt, truncated, zero-byte, text, grayscale, CMYK,
PNG-disguised, EXIF-rotated). Then runs the preprocess stage of --repo (this checkout by
default) on it in a subprocess with --repo's params.yaml's cats_vs_dogs settings (its image
size and colour mode): `stages/configure.py cats_vs_dogs config` first writes the stage's
config, then `stages/preprocess.py config/preprocess.json raw prepared explore` runs; a
checkout older than the configure stage runs `stages/preprocess.py cats_vs_dogs raw prepared
explore`. It records in benchmarks/results/cats_memory.json, under --label:

- peak RSS of the stage process (wait4's ru_maxrss), and the peaks of its
  anonymous and file-backed resident memory (RssAnon, RssFile, sampled from /proc every
  0.1 s). ru_maxrss counts resident pages of memory-mapped files too; the stage writes and
  reads its .npy files with plain file I/O, so what it reports is memory the process holds.
- wall time, images decoded per second, what was kept and skipped, the sha256 of every output
  .npy (so runs of two code versions can be compared byte for byte), the command, the machine.
"""
import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from common import machine as common_machine
from common import now, run_measured
from imagerec.sources import sha256_of

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "cats_memory.json"
BAD_KINDS = ["corrupt", "truncated", "zero-byte", "text", "grayscale", "cmyk", "png-disguised", "exif-rotated"]
SKIPPED_KINDS = {"corrupt", "truncated", "zero-byte", "text"}


def synthetic_photo(rng: np.random.Generator) -> Image.Image:
    """A photo-like RGB image: smooth colour fields, a few blurred shapes, sensor noise."""
    width, height = (int(v) for v in rng.integers(350, 501, 2))
    field = rng.integers(0, 256, (int(rng.integers(3, 8)), int(rng.integers(3, 8)), 3), dtype=np.uint8)
    image = Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.5))))
    noisy = np.asarray(image, np.int16) + rng.normal(0, rng.uniform(2, 8), (height, width, 1)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, rng: np.random.Generator, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(75, 95)), **options)
    return buffer.getvalue()


def bad_file(kind: str, rng: np.random.Generator) -> bytes:
    image = synthetic_photo(rng)
    good = jpeg(image, rng)
    if kind == "corrupt":  # intact header, garbage where the picture should be
        return good[:len(good) // 2] + rng.bytes(len(good) - len(good) // 2)
    if kind == "truncated":  # a download cut off
        return good[:int(len(good) * rng.uniform(0.3, 0.9))]
    if kind == "zero-byte":
        return b""
    if kind == "text":  # an HTML error page saved under the photo's name
        return b"<html><body>404 Not Found</body></html>\n" * 4
    if kind == "grayscale":
        return jpeg(image.convert("L"), rng)
    if kind == "cmyk":
        return jpeg(image.convert("CMYK"), rng)
    if kind == "png-disguised":
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=1)
        return buffer.getvalue()
    if kind == "exif-rotated":
        exif = Image.Exif()
        exif[0x0112] = int(rng.choice([3, 6, 8]))
        return jpeg(image, rng, exif=exif)
    raise ValueError(kind)


def build_archive(path: Path, count: int, bad_per_kind: int, seed: int = 0) -> dict:
    """Kaggle's train.zip layout; the bad files are spread among the good ones."""
    rng = np.random.default_rng(seed)
    kinds = {int(i): BAD_KINDS[k // bad_per_kind]
             for k, i in enumerate(rng.choice(count, len(BAD_KINDS) * bad_per_kind, replace=False))}
    tmp = path.with_name(path.name + ".part")
    started = time.monotonic()
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:  # JPEGs do not compress
        for i in range(count):
            name = f"train/{'cat' if i % 2 == 0 else 'dog'}.{i // 2}.jpg"
            data = bad_file(kinds[i], rng) if i in kinds else jpeg(synthetic_photo(rng), rng)
            zf.writestr(name, data)
            if i % 1000 == 999:
                print(f"  {i + 1}/{count} photos written ({time.monotonic() - started:.0f} s)", flush=True)
    os.replace(tmp, path)
    return {"images": count, "bad_files_per_kind": bad_per_kind, "kinds": sorted(set(kinds.values())),
            "bytes": path.stat().st_size, "build_seconds": round(time.monotonic() - started, 1)}


def machine() -> str:
    return f"{common_machine()}, numpy {np.__version__}, Pillow {Image.__version__}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=25000)
    parser.add_argument("--bad-per-kind", type=int, default=30)
    parser.add_argument("--archive", type=Path, default=Path(tempfile.gettempdir()) / "imagerec-cats-25000.zip",
                        help="the synthetic train.zip; built when missing, reused otherwise")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout whose preprocess stage runs")
    parser.add_argument("--label", default="current", help="key of this run in the results file")
    parser.add_argument("--keep", type=Path, help="keep the stage's outputs in this directory")
    args = parser.parse_args()

    built = None
    if not args.archive.is_file():
        print(f"building {args.archive} ({args.images} photos)", flush=True)
        args.archive.parent.mkdir(parents=True, exist_ok=True)
        built = build_archive(args.archive, args.images, args.bad_per_kind)

    work = Path(tempfile.mkdtemp(prefix="cats-memory-"))
    try:
        shutil.copy(args.repo / "params.yaml", work / "params.yaml")
        raw = work / "raw"
        raw.mkdir()
        (raw / "dogs-vs-cats-train.zip").symlink_to(args.archive.resolve())
        (raw / "source.json").write_text(json.dumps({"dataset": "cats_vs_dogs", "source": "kaggle",
                                                     "file": "dogs-vs-cats-train.zip", "sha256": "not checked"}))
        env = {**os.environ, "PYTHONPATH": str(args.repo), "TQDM_MININTERVAL": "10"}
        stages = args.repo / "stages"
        config = "cats_vs_dogs"  # what an older checkout's stages take: the dataset's name
        if (stages / "configure.py").is_file():  # stages read the config files configure writes
            configure = [sys.executable, str(stages / "configure.py"), "cats_vs_dogs", "config"]
            print("running:", " ".join(configure), flush=True)
            code = subprocess.run(configure, cwd=work, env=env).returncode
            if code != 0:
                print(f"configure failed with exit code {code}", file=sys.stderr)
                return code
            config = "config/preprocess.json"
        command = [sys.executable, str(stages / "preprocess.py"), config, "raw", "prepared", "explore"]
        print("running:", " ".join(command), flush=True)
        # this process's own rusage, not configure's too
        measured = run_measured(command, cwd=work, env=env, sample_every=0.1)
        code, wall = measured["exit_code"], measured["seconds"]
        if code != 0:
            print(f"preprocess failed with exit code {code}", file=sys.stderr)
            return code
        stats = json.loads((work / "explore" / "stats.json").read_text())
        with open(work / "explore" / "bad_images.csv") as f:
            skipped = sum(1 for _ in f) - 1
        outputs = {path.name: {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
                   for path in sorted((work / "prepared").glob("*.npy"))}
        if args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            shutil.copytree(work, args.keep, symlinks=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    decoded = sum(stats["totals"].values()) + skipped
    run = {
        "command": " ".join([sys.executable, *sys.argv]),
        "stage_command": " ".join(command[1:]),
        "repo": str(args.repo),
        "finished": now(),
        "machine": machine(),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "archive": {"path": str(args.archive), "bytes": args.archive.stat().st_size, **(built or {})},
        "image_shape": stats["image_shape"],
        "images_in_archive": decoded,
        "kept": stats["totals"],
        "skipped_unreadable": skipped,
        "wall_seconds": round(wall, 1),
        "images_per_second": round(decoded / wall, 1),
        "peak_rss_mib": measured["peak_rss_mib"],
        "peak_rss_sampled_mib": measured["peak_rss_sampled_mib"],
        "uint8_dataset_mib": round(sum(o["bytes"] for name, o in outputs.items() if "_images" in name) / 2**20, 1),
        "outputs": outputs,
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[args.label] = run
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in run.items() if k != "outputs"}, indent=2))
    print(f"written to {RESULTS} under {args.label!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
