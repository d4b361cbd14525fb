"""configure: resolve a dataset's params.yaml section (defaults filled in) into one file per stage.

Runs on every `dvc repro` (always_changed): it is cheap, and it is what notices a change in a
folder outside the repository, whose files' names, sizes and times go into fetch.json. A stage
whose file is unchanged does not re-run.
"""
import argparse
from pathlib import Path

from imagerec import params, sources
from imagerec.errors import run_stage
from imagerec.files import atomic_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("config_dir", type=Path, help="output: <stage>.json for fetch, preprocess, ... export")
    args = parser.parse_args()
    fetch = params.read_sections().get(args.dataset, {}).get("fetch")
    folder = fetch.get("path") if isinstance(fetch, dict) and fetch.get("source") == "folder" else None
    # Only a local folder can be looked at before fetch: it alone lets the images choose the model.
    survey = (lambda: _survey(Path(folder))) if isinstance(folder, str) else None
    p = params.load(args.dataset, survey=survey)
    fingerprint = sources.folder_fingerprint(Path(p.fetch.path)) if p.fetch.source == "folder" else None

    with atomic_dir(args.config_dir) as out:
        params.write_stage_configs(p, out, fingerprint)
    print(f"{args.dataset}: {p.fetch.source} source, {p.model.name} model at {p.preprocess.image_size} px "
          f"({p.preprocess.color_mode}), {p.train.epochs} epochs"
          + (f" + {p.train.fine_tune.epochs} fine-tuning" if p.train.fine_tune else ""))


def _survey(folder: Path) -> dict:
    # Imported here: datasets brings scikit-learn (seconds), and configure runs on every `dvc repro`.
    from imagerec import layouts

    return layouts.survey(folder)


if __name__ == "__main__":
    run_stage(main)
