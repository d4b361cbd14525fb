"""augment: save the seeded augmentation policy that train applies on the fly, with a preview."""
import argparse
from pathlib import Path

from imagerec import augment, datasets, figures, params
from imagerec.errors import run_stage
from imagerec.files import atomic_dir, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="data/config/<dataset>/augment.json")
    parser.add_argument("prepared_dir", type=Path)
    parser.add_argument("augmented_dir", type=Path, help="output: policy.json")
    parser.add_argument("preview_dir", type=Path, help="output: preview.png")
    args = parser.parse_args()
    p = params.load_stage(args.config)

    policy = augment.policy_from_params(p.augment)
    train = datasets.load(args.prepared_dir, splits=["train"]).splits["train"]
    # A seeded random pick, so the preview shows several classes rather than the first one.
    shown = datasets.seeded_sample(len(train.labels), p.augment.preview_images, p.seed)
    grid = augment.preview(train.images[shown], policy, p.seed)
    with atomic_dir(args.augmented_dir) as out:
        write_json(out / augment.POLICY_FILE, policy)
    with atomic_dir(args.preview_dir) as out:
        figures.augmentation_preview(grid, out / "preview.png")


if __name__ == "__main__":
    run_stage(main)
