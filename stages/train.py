"""train: fit the dataset's model on the train split, selecting on the validation split."""
import argparse
import tempfile
from pathlib import Path

from imagerec import augment, datasets, models, params, training
from imagerec.errors import run_stage
from imagerec.files import atomic_dir, read_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="data/config/<dataset>/train.json")
    parser.add_argument("prepared_dir", type=Path)
    parser.add_argument("augmented_dir", type=Path)
    parser.add_argument("pretrained_dir", type=Path)
    parser.add_argument("model_dir", type=Path, help="output: model.keras, model.json")
    parser.add_argument("curves_dir", type=Path, help="output: per-epoch training curves (dvclive)")
    args = parser.parse_args()
    p = params.load_stage(args.config)

    strategy = training.distribution_strategy(p.train.strategy)  # first: multi_worker must precede other TF work
    training.set_seeds(p.seed, deterministic_ops=not p.train.jit_compile)  # XLA or bit-for-bit reruns
    data = datasets.load(args.prepared_dir, splits=["train", "val"])
    policy = read_json(args.augmented_dir / augment.POLICY_FILE)
    weights = [args.pretrained_dir / f["file"] for f in read_json(args.pretrained_dir / "manifest.json")["files"]]
    image_shape = data.splits["train"].images.shape[1:]
    with strategy.scope():
        model = models.build(p.model, image_shape, len(data.classes), weights[0] if weights else None,
                             mixed_precision=p.train.mixed_precision,
                             whitening_images=training.whitening_images(p.model, data.splits["train"].images, p.seed))
    model.summary(print_fn=print)

    def output(path):  # the other workers of multi_worker train alongside the chief but write nothing
        return atomic_dir(path) if training.is_chief(strategy) else tempfile.TemporaryDirectory()

    with output(args.curves_dir) as curves, output(args.model_dir) as out:
        training.fit(model, data.splits["train"], data.splits["val"], len(data.classes), p.train,
                     augment.build_layers(policy, p.seed), p.seed, Path(curves), strategy,
                     alternating_flip=augment.alternating_flip(policy))
        models.save(models.as_float32(model, p.model), Path(out), {
            "dataset": p.dataset,
            "classes": data.classes,
            "input_shape": list(image_shape),
            "color_mode": "grayscale" if image_shape[-1] == 1 else "rgb",
            "input_scaling": "uint8 pixels 0..255, resized to input_shape; the model rescales itself",
            "data": {"images": {split: len(data.splits[split].labels) for split in ("train", "val")}},
            "params": p.model_dump(mode="json", include={"seed", "model", "train"}),
            "environment": training.environment(),
        })


if __name__ == "__main__":
    run_stage(main)
