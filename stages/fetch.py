"""fetch: get a dataset's raw files and its model's pretrained weights, checksums verified.

Downloads from the official source, copies a local folder or archive, or copies from a local
mirror when IMAGEREC_MIRROR is set.
"""
import argparse
from pathlib import Path

from imagerec import catalog, params, sources
from imagerec.errors import run_stage
from imagerec.files import atomic_dir, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="data/config/<dataset>/fetch.json")
    parser.add_argument("raw_dir", type=Path, help="output: the source's files and source.json")
    parser.add_argument("pretrained_dir", type=Path, help="output: pretrained weights and manifest.json")
    parser.add_argument("checksums", type=Path, help="output, kept in git: sha256s of first downloads without a published one")
    args = parser.parse_args()
    p = params.load_stage(args.config)
    mirror = sources.mirror_from_env()

    with atomic_dir(args.raw_dir) as out:
        record = sources.fetch_dataset(p.dataset, p.fetch.model_dump(exclude_none=True), out, mirror, args.checksums)
        write_json(out / sources.SOURCE_RECORD, record)

    with atomic_dir(args.pretrained_dir) as out:
        weights = catalog.PRETRAINED_WEIGHTS.get((p.weights.model, p.weights.pretrained))
        files = []
        if weights:
            files.append(sources.fetch_file(weights, catalog.WEIGHTS_MIRROR_FOLDER, out, mirror, args.checksums))
        write_json(out / "manifest.json", {"model": p.weights.model, "pretrained": p.weights.pretrained, "files": files})
    if not args.checksums.exists():  # a declared output, also when nothing needed recording
        write_json(args.checksums, {})


if __name__ == "__main__":
    run_stage(main)
