"""preprocess: decode, resize and split a raw dataset into uint8 arrays; explore it.

Unreadable images are skipped and listed in bad_images.csv, never dropped silently. Images
are streamed to disk, so memory does not grow with the number of images.
"""
import argparse
import csv
from pathlib import Path

from imagerec import datasets, figures, layouts, params
from imagerec.errors import run_stage
from imagerec.files import atomic_dir, atomic_file, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="data/config/<dataset>/preprocess.json")
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("prepared_dir", type=Path, help="output: {train,val,test}_{images,labels}.npy, classes.json")
    parser.add_argument("explore_dir", type=Path, help="output: stats.json, bad_images.csv, samples and balance PNGs")
    args = parser.parse_args()
    p = params.load_stage(args.config)
    pre = p.preprocess

    with atomic_dir(args.prepared_dir) as out:  # images are decoded straight into its .npy files
        prepared, bad, ignored = layouts.prepare(args.raw_dir, out, pre.image_size, pre.color_mode,
                                                  pre.val_fraction, pre.test_fraction, pre.max_per_class, p.seed)
        stats = datasets.statistics(prepared, bad, ignored)
    with atomic_dir(args.explore_dir) as out:
        write_json(out / "stats.json", stats)
        with atomic_file(out / "bad_images.csv") as f:
            writer = csv.DictWriter(f, fieldnames=["file", "split", "reason"])
            writer.writeheader()
            writer.writerows(bad)
        train = prepared.splits["train"]
        figures.samples_per_class(train.images, train.labels, prepared.classes, out / "samples.png")
        figures.class_balance(stats["counts"], out / "class_balance.png")
    print(f"{p.dataset}: {stats['totals']} images, {len(bad)} unreadable, {len(ignored)} non-image files ignored")


if __name__ == "__main__":
    run_stage(main)
