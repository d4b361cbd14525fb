"""`imagerec predict` on a folder of photos, beside the same model's offline batch throughput.

    python benchmarks/predict_folder.py MODEL_DIR PHOTOS [--images 1000] [--format auto] [--results FILE]

PHOTOS is a folder (searched recursively, sorted) or a zip of photos, e.g. the Cats vs Dogs
tutorial zip; its first --images image files are copied into one flat temporary folder, as a
user's folder of photos. A source with fewer photos is copied again in turn until there are
--images (25,000 from the tutorial's 3,000: a Kaggle-sized folder, to see memory stay bounded).
Measured in one run:
- offline: the model's images/s on the first 1,000 of those photos already decoded and in memory (batches of 32),
  as `imagerec predict --format FORMAT` runs it (the format `auto` picks here, or the one named);
- predict: `imagerec predict MODEL_DIR FOLDER --json` in a child process, its own "N images in X s"
  line (decoding included; start-up and model loading not), and the child's peak RSS.
- decoding alone: the same photos decoded as predict decodes them (two threads), images/s.
predict / offline is what decoding and streaming cost; issue 19's target is 0.8. Decoding alone
also says whether that target can be met: decoding each image and then running it, one after
the other, would give 1 / (1/offline + 1/decoding) images/s, and predict only beats that as far
as decoding and the model overlap on the two cores. Where decoding is as slow as the model (a
TFLite MobileNetV2), 0.8 of offline needs far more overlap than two busy cores have. Writes
benchmarks/results/predict_folder_<dataset>.json.
"""
import argparse
import itertools
import re
import shutil
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import RESULTS, child_env, offline_images_per_second, run_measured, write_result
from imagerec import images, inference, modelcard
from imagerec.cli import decoded


def copy_photos(source: Path, count: int, into: Path) -> list[Path]:
    """The first `count` image files of a folder or zip (cycled through again if it has fewer),
    as into/000000.jpg, ..."""
    made = []
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in images.IMAGE_SUFFIXES)
        for path in itertools.islice(itertools.cycle(paths), count):
            made.append(into / f"{len(made):06d}{path.suffix.lower()}")
            shutil.copyfile(path, made[-1])
    else:
        with zipfile.ZipFile(source) as zf:
            names = sorted(n for n in zf.namelist() if Path(n).suffix.lower() in images.IMAGE_SUFFIXES)
            for name in itertools.islice(itertools.cycle(names), count):
                made.append(into / f"{len(made):06d}{Path(name).suffix.lower()}")
                made[-1].write_bytes(zf.read(name))
    return made


def decode_images_per_second(classifier, files: list[Path]) -> tuple[np.ndarray, float]:
    """The files decoded as `imagerec predict` decodes them (its own function, two threads), and how fast."""
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda path: decoded(classifier, path), files))
    seconds = time.perf_counter() - started
    for path, pixels in results:
        if isinstance(pixels, str):  # predict would skip it; the timing would then be of fewer photos
            sys.exit(f"error: {path.name}: {pixels}")
    return np.stack([pixels for _, pixels in results]), len(files) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model dir: models/X or exports/X")
    parser.add_argument("photos", type=Path, help="a folder or zip of photos")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--format", default="auto")
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()

    classifier = inference.Classifier(args.model)
    if args.format != "keras":
        results = modelcard.Results(classifier.dataset, modelcard.default_results_root(args.model))
        classifier.use(args.format, results.export_accuracy_changes())
    with tempfile.TemporaryDirectory(prefix="imagerec-predict-") as folder:
        files = copy_photos(args.photos, args.images, Path(folder))
        pixels, decoding = decode_images_per_second(classifier, files[:1000])
        offline = offline_images_per_second(classifier.run, pixels)
        del pixels
        print(f"offline ({classifier.format}): {offline:.1f} images/s; decoding alone: {decoding:.1f} images/s",
              flush=True)
        run = run_measured([sys.executable, "-m", "imagerec.cli", "predict", str(args.model), folder, "--json",
                            "--format", classifier.format], env=child_env(), capture=True, capture_stderr=True)
    one_after_other = 1 / (1 / offline + 1 / decoding)
    if run["exit_code"] != 0:
        sys.exit(f"error: imagerec predict failed ({run['exit_code']})")
    lines = run.pop("stdout").splitlines()
    summary = re.search(r"(\d+) images in ([\d.]+) s", run.pop("stderr"))  # predict's own timing
    result = {"model": str(args.model), "format": classifier.format, "photos": str(args.photos),
              "images": len(files), "predicted": len(lines), "offline_images_per_second": round(offline, 1),
              "decode_images_per_second": round(decoding, 1), "one_after_other_images_per_second": round(one_after_other, 1),
              "predict_wall_seconds": run["seconds"], "predict_peak_rss_mib": run["peak_rss_mib"]}
    if summary:
        result["predict_images_per_second"] = round(int(summary[1]) / float(summary[2]), 1)
        result["of_offline"] = round(result["predict_images_per_second"] / offline, 2)
        result["of_one_after_other"] = round(result["predict_images_per_second"] / one_after_other, 2)
    write_result(args.results or RESULTS / f"predict_folder_{classifier.dataset}.json", result)
    print(result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
