"""Peak memory of the Cats vs Dogs *train* stage on a Kaggle-sized set: 25,000 photos at 160 px.

    python benchmarks/cats_train_memory.py [--raw DIR] [--workdir DIR] [--image-size 160] [--epochs 1]

--raw is a raw cats_vs_dogs directory as the fetch stage writes it (default: the 25,000-photo
synthetic archive that `python benchmarks/preprocess_throughput.py --kaggle-size` builds and
keeps in $TMPDIR/imagerec-preprocess-bench/raw-25000). The script prepares it once at
--image-size into --workdir with `layouts.prepare` (cats_vs_dogs' split params), writes the
stage configs there (data/config/cats_vs_dogs/, as the configure stage does) from params.yaml's
cats_vs_dogs settings except the image size and --epochs epochs for each phase (head and
fine-tuning), then runs `python -m stages.train data/config/cats_vs_dogs/train.json ...` of
this checkout there: every batch of the training split is read once per epoch, so one epoch of
each phase touches all the data and builds both phases' models. It records the stage process's
peak RSS (wait4's ru_maxrss) and the peaks of its anonymous and file-backed resident memory
(RssAnon, RssFile, sampled from /proc every 0.2 s): the memory-mapped .npy pages the input
pipeline reads count in RSS but are file-backed and can be dropped by the kernel at any time.
Writes benchmarks/results/cats_train_memory.json.
"""
import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from common import REPO as ROOT
from common import RESULTS, child_env, run_measured, write_result

DEFAULT_RAW = Path(tempfile.gettempdir()) / "imagerec-preprocess-bench" / "raw-25000"


def prepare(raw: Path, prepared: Path, p) -> None:
    from imagerec import layouts

    pre = p.preprocess
    prepared.mkdir(parents=True)
    layouts.prepare(raw, prepared, pre.image_size, pre.color_mode, pre.val_fraction, pre.test_fraction, 0, p.seed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=DEFAULT_RAW)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "imagerec-cats-train-memory")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each phase (default: 1)")
    args = parser.parse_args()
    if not (args.raw / "source.json").is_file():
        sys.exit(f"error: {args.raw} is not a raw cats_vs_dogs directory; "
                 "build it with python benchmarks/preprocess_throughput.py --kaggle-size")

    from imagerec import params

    cats = params.read_sections(ROOT / "params.yaml")["cats_vs_dogs"]
    cats["preprocess"]["image_size"] = args.image_size
    cats["train"]["epochs"] = args.epochs
    if cats["train"].get("fine_tune"):
        cats["train"]["fine_tune"]["epochs"] = args.epochs
    p = params.resolve("cats_vs_dogs", cats)
    work = args.workdir
    (work / "data").mkdir(parents=True, exist_ok=True)
    params.write_stage_configs(p, work / "data" / "config" / "cats_vs_dogs")
    prepared = work / "data" / "prepared" / "cats_vs_dogs"
    if not prepared.exists():
        prepare(args.raw, prepared, p)
    for stage_dir in ("augmented", "pretrained"):  # the pipeline's own policy and verified weights
        target = work / "data" / stage_dir / "cats_vs_dogs"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(ROOT / "data" / stage_dir / "cats_vs_dogs")
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "stages.train", "data/config/cats_vs_dogs/train.json",
               "data/prepared/cats_vs_dogs", "data/augmented/cats_vs_dogs", "data/pretrained/cats_vs_dogs",
               "out/model", "out/curves"]
    result = run_measured(command, cwd=work, env=child_env(), sample_every=0.2)
    sampled = result.pop("peak_rss_sampled_mib")
    result.update(peak_rss_anon_mib=sampled.get("RssAnon", 0), peak_rss_file_mib=sampled.get("RssFile", 0))
    if result["exit_code"] != 0:
        sys.exit(f"error: the train stage failed ({result['exit_code']})")

    from imagerec import datasets

    data = datasets.load(prepared)
    result.update(
        images={split: len(s.labels) for split, s in data.splits.items()},
        image_size=args.image_size, epochs_per_phase=args.epochs,
        prepared_bytes=sum(f.stat().st_size for f in prepared.iterdir()),
        command=" ".join(["python", "benchmarks/cats_train_memory.py", *sys.argv[1:]]),
    )
    write_result(RESULTS / "cats_train_memory.json", result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
