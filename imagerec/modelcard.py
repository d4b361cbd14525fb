"""What the page's model card shows: a model's card (model.json) and the files the pipeline wrote
for its dataset, found under a results root (the repository the model was trained in).

Only the files named in FILES can be served, by those names: a request never becomes a path.
Anything missing or unreadable is None ("not available" on the page), never an error.
"""
import json
import re
from pathlib import Path

import yaml

# What the page may ask for -> where the pipeline writes it, under the results root ({d}: dataset).
# The evaluate stage's plot data is what `dvc plots` draws, and the page draws it too: each
# picture has one source of numbers.
FILES = {
    "confusion.csv": "plots/{d}/evaluate/confusion.csv",
    "roc.json": "plots/{d}/evaluate/roc.json",
    "pr.json": "plots/{d}/evaluate/pr.json",
    "calibration.json": "plots/{d}/evaluate/calibration.json",
    "gradcam.png": "plots/{d}/evaluate/gradcam.png",
    "samples.png": "plots/{d}/explore/samples.png",
    "class_balance.png": "plots/{d}/explore/class_balance.png",
    "train_loss.tsv": "plots/{d}/train/plots/metrics/train/loss.tsv",
    "train_accuracy.tsv": "plots/{d}/train/plots/metrics/train/accuracy.tsv",
    "eval_loss.tsv": "plots/{d}/train/plots/metrics/eval/loss.tsv",
    "eval_accuracy.tsv": "plots/{d}/train/plots/metrics/eval/accuracy.tsv",
}
METRICS_FILE = "metrics/{d}.json"
EXPORT_METRICS_FILE = "metrics/{d}_export.json"
STATS_FILE = "plots/{d}/explore/stats.json"  # written by stages/preprocess.py
PARAMS_FILE = "params.yaml"

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def safe_name(name) -> bool:
    """A name usable as one path component and URL segment: no slash, no leading dot."""
    return isinstance(name, str) and _SAFE_NAME.fullmatch(name) is not None


def default_results_root(model_dir: Path) -> Path:
    """models/D and exports/D sit in the repository root, where metrics/ and plots/ are."""
    return Path(model_dir).resolve().parent.parent


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _read_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


class Results:
    """The pipeline's outputs for one dataset under one results root."""

    def __init__(self, dataset: str | None, root: Path):
        self.dataset = dataset if safe_name(dataset) else None
        self.root = Path(root)

    def _path(self, template: str) -> Path | None:
        if self.dataset is None:
            return None
        path = self.root / template.format(d=self.dataset)
        return path if path.is_file() else None

    def file(self, name: str) -> Path | None:
        """The file the page calls `name`, if it is one of FILES and exists; else None."""
        template = FILES.get(name)
        return self._path(template) if template else None

    def metrics(self) -> dict | None:
        path = self._path(METRICS_FILE)
        metrics = _read_json(path) if path else None
        return metrics if isinstance(metrics, dict) else None

    def export_accuracy_changes(self) -> dict[str, float]:
        """Each exported format's test accuracy against the Keras model's, in points (the export
        stage's metrics); {} when there are none."""
        path = self._path(EXPORT_METRICS_FILE)
        scores = _read_json(path) if path else None
        if not isinstance(scores, dict):
            return {}
        return {fmt: score["accuracy_change_points"] for fmt, score in scores.items()
                if isinstance(score, dict) and isinstance(score.get("accuracy_change_points"), (int, float))}

    def params_section(self) -> dict | None:
        params = _read_yaml(self.root / PARAMS_FILE) if self.dataset else None
        sections = params.get("datasets") if isinstance(params, dict) else None
        section = sections.get(self.dataset) if isinstance(sections, dict) else None
        return section if isinstance(section, dict) else None

    def statistics(self) -> dict | None:
        path = self._path(STATS_FILE)
        stats = _read_json(path) if path else None
        return stats if isinstance(stats, dict) else None


def _data_from_statistics(stats: dict | None, params: dict | None) -> dict | None:
    """The explore stage's statistics, in the terms of the card's "data" (source and split sizes)."""
    if stats is None:
        return None
    data = {}
    fetch = (params or {}).get("fetch")
    if isinstance(fetch, dict) and "source" in fetch:
        data["source"] = fetch["source"]
    for key in ("totals", "image_shape", "unreadable_images", "ignored_files"):
        if key in stats:
            data["split_sizes" if key == "totals" else key] = stats[key]
    if isinstance(stats.get("counts"), dict):
        data["images_per_class"] = stats["counts"]
    return data or None


def describe(name: str, card: dict, results: Results, file_url) -> dict:
    """The model card the page shows. Each part is None where it is not available; "params" and
    "data" say where they came from (the model card itself, or the pipeline files as they are now).

    file_url(name) -> the URL the page fetches FILES[name] from."""
    params_section = results.params_section()
    if isinstance(card.get("params"), dict):
        params = {"from": "model card", "values": card["params"]}
    elif params_section is not None:
        params = {"from": "params.yaml (now; the model card does not record them)", "values": params_section}
    else:
        params = None
    if isinstance(card.get("data"), dict):
        data = {"from": "model card", "values": card["data"]}
    else:
        fallback = _data_from_statistics(results.statistics(), params_section)
        data = {"from": "explore statistics and params.yaml (now; the model card does not record them)",
                "values": fallback} if fallback else None
    return {
        "name": name,
        "dataset": card.get("dataset"),
        "classes": [str(c) for c in card.get("classes", [])],
        "input_shape": card.get("input_shape"),
        "color_mode": card.get("color_mode"),
        "metrics": results.metrics(),
        "params": params,
        "data": data,
        "files": {key: (file_url(key) if results.file(key) else None) for key in FILES},
    }
