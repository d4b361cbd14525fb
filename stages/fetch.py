"""fetch: get a dataset's raw file and its model's pretrained weights, checksums verified.

Downloads from the official source, or copies from a local mirror when IMAGEREC_MIRROR is set.
"""
import argparse
from pathlib import Path

from imagerec import params, sources
from imagerec.datasets import SOURCE_RECORD
from imagerec.errors import run_stage
from imagerec.files import atomic_dir, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("raw_dir", type=Path, help="output: the source file and source.json")
    parser.add_argument("pretrained_dir", type=Path, help="output: pretrained weights and manifest.json")
    args = parser.parse_args()
    p = params.load(args.dataset)
    mirror = sources.mirror_from_env()

    with atomic_dir(args.raw_dir) as out:
        source = sources.DATASET_SOURCES[args.dataset][p.fetch.source]
        record = sources.fetch_file(source, args.dataset, out, mirror)
        write_json(out / SOURCE_RECORD, {"dataset": args.dataset, "source": p.fetch.source, **record})

    with atomic_dir(args.pretrained_dir) as out:
        weights = sources.PRETRAINED_WEIGHTS.get((p.model.name, p.model.pretrained))
        files = [sources.fetch_file(weights, sources.WEIGHTS_MIRROR_FOLDER, out, mirror)] if weights else []
        write_json(out / "manifest.json", {"model": p.model.name, "pretrained": p.model.pretrained, "files": files})


if __name__ == "__main__":
    run_stage(main)
