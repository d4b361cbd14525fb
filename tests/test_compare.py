"""Comparing two revisions with DVC's own commands (metrics/params/plots diff, experiments).

One repo for the whole session (tests/two_revisions.py): `main` after a full tiny `dvc repro`,
and branch `experiment`, checked out, with a higher MNIST learning rate.
"""
import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import dataset_plots
from two_revisions import BASE, DATASETS, NEW_LR, at_base

pytestmark = pytest.mark.slow

HEADLINE = ["accuracy", "loss", "roc_auc_micro", "roc_auc_macro"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def repo(two_revision_repo):
    return two_revision_repo


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"per_class": {"0": {"f1-score": x}}} -> {"per_class.0.f1-score": x}, as DVC names metrics."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def mnist_plots(repo) -> tuple[dict, list[str]]:
    """dvc.yaml's MNIST plots: ({path: props} of the data-series plots, [paths] of the image plots)."""
    return dataset_plots(repo, "mnist")


def encoded_fields(spec, channel: str) -> set[str]:
    """The data fields a Vega-Lite spec maps to a channel, in any layer or facet."""
    found = set()
    if isinstance(spec, dict):
        found.add(spec.get("encoding", {}).get(channel, {}).get("field"))
        for value in spec.values():
            found |= encoded_fields(value, channel)
    elif isinstance(spec, list):
        for value in spec:
            found |= encoded_fields(value, channel)
    return found - {None}


def test_the_branch_changes_only_mnist_params_metrics_and_plots(repo):
    changed = repo.run("git", "diff", "--name-only", BASE).stdout.split()
    assert "metrics/mnist.json" in changed and "params.yaml" in changed
    for path in changed:
        assert path in ("params.yaml", "dvc.lock") or path.startswith(("metrics/mnist", "plots/mnist/")), path


def test_metrics_diff_json_gives_old_and_new_mnist_scores_and_per_class_f1(repo):
    old = flatten(json.loads(at_base(repo, "metrics/mnist.json")))
    new = flatten(repo.metrics("mnist"))
    classes = list(repo.metrics("mnist")["per_class"])
    everything = json.loads(repo.dvc("metrics", "diff", BASE, "--all", "--json").stdout)["metrics/mnist.json"]
    for key in HEADLINE + [f"per_class.{c}.f1-score" for c in classes]:
        assert everything[key]["old"] == old[key], key
        assert everything[key]["new"] == new[key], key
        assert math.isfinite(everything[key]["old"]) and math.isfinite(everything[key]["new"])

    changed = json.loads(repo.dvc("metrics", "diff", BASE, "--json").stdout)["metrics/mnist.json"]
    assert "loss" in changed  # another learning rate, another test loss
    for key, entry in changed.items():
        assert entry["old"] == old[key] and entry["new"] == new[key] and entry["old"] != entry["new"], key


def test_metrics_diff_shows_nothing_for_the_datasets_the_branch_did_not_touch(repo):
    changed = json.loads(repo.dvc("metrics", "diff", BASE, "--json").stdout)
    # plots/<ds>/train/metrics.json is the train stage's dvclive summary (last epoch, train_seconds).
    assert set(changed) <= {"metrics/mnist.json", "metrics/mnist_export.json", "plots/mnist/train/metrics.json"}
    everything = json.loads(repo.dvc("metrics", "diff", BASE, "--all", "--json").stdout)
    for dataset in DATASETS[1:]:
        for path in (f"metrics/{dataset}.json", f"metrics/{dataset}_export.json", f"plots/{dataset}/train/metrics.json"):
            assert everything[path], path  # present, with every metric unchanged
            assert all(entry["old"] == entry["new"] for entry in everything[path].values()), path


def test_metrics_diff_markdown_is_a_table_of_the_mnist_changes(repo):
    table = repo.dvc("metrics", "diff", BASE, "--md").stdout.strip().splitlines()
    assert [cell.strip() for cell in table[0].strip("|").split("|")] == ["Path", "Metric", BASE, "workspace", "Change"]
    assert all(line.startswith("|") and line.endswith("|") for line in table)
    assert any(line.split("|")[1].strip() == "metrics/mnist.json" and line.split("|")[2].strip() == "loss"
               for line in table)
    assert "cifar10" not in "\n".join(table) and "cats_vs_dogs" not in "\n".join(table)


def test_params_diff_shows_exactly_the_changed_learning_rate(repo):
    old = yaml.safe_load(at_base(repo, "params.yaml"))["datasets"]["mnist"]["train"]["learning_rate"]
    diff = json.loads(repo.dvc("params", "diff", BASE, "--json").stdout)
    assert diff == {"params.yaml": {"datasets.mnist.train.learning_rate": {"old": old, "new": NEW_LR, "diff": pytest.approx(NEW_LR - old)}}}


def test_plots_diff_json_holds_every_mnist_plot_for_both_revisions(repo, tmp_path):
    output = repo.dvc("plots", "diff", BASE, "--json", "-o", str(tmp_path)).stdout
    assert "Infinity" not in output and "NaN" not in output
    plots = json.loads(output)["data"]
    series, images = mnist_plots(repo)
    templates = {name: spec.get("template") for name, spec in series.items()}
    assert "confusion" in templates.values() and "curves_by_class" in templates.values()
    fields_seen = set()
    for name, spec in series.items():
        [entry] = plots[name]  # one Vega-Lite spec holding the data of both revisions
        assert entry["type"] == "vega" and set(entry["revisions"]) == {BASE, "workspace"}
        content = entry["content"]
        rows = content["data"]["values"]
        assert {row["rev"] for row in rows} == {BASE, "workspace"}, name
        fields = (spec["x"], spec["y"])  # as dvc.yaml asks
        assert fields[0] in encoded_fields(content, "x") and fields[1] in encoded_fields(content, "y"), name
        assert all(fields[0] in row and fields[1] in row for row in rows), name
        fields_seen.add(fields)
        if spec.get("template") == "confusion":
            assert content["facet"]["column"]["field"] == "rev"
    assert {("fpr", "tpr"), ("actual", "predicted"), ("step", "loss"), ("step", "accuracy")} <= fields_seen

    assert len(images) >= 7
    for path in images:
        by_revision = {rev: entry["url"] for entry in plots[path] for rev in entry["revisions"]}
        assert set(by_revision) == {BASE, "workspace"}, path
        for url in by_revision.values():
            with open(url, "rb") as f:
                assert f.read(8) == PNG_MAGIC, url
    gradcam = {rev: Path(entry["url"]).read_bytes() for entry in plots["plots/mnist/evaluate/gradcam.png"]
               for rev in entry["revisions"]}
    assert gradcam[BASE] == at_base(repo, "plots/mnist/evaluate/gradcam.png")
    assert gradcam["workspace"] == (repo.path / "plots/mnist/evaluate/gradcam.png").read_bytes()


@pytest.mark.extended
def test_exp_run_with_one_epoch_shows_up_in_exp_show_and_exp_diff_with_mnist_metrics(repo):
    branch = repo.run("git", "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    try:
        repo.dvc("exp", "run", "-n", "one-epoch", "-S", "datasets.mnist.train.epochs=1")
        shown = json.loads(repo.dvc("exp", "show", "--json").stdout)
        [baseline] = [row for row in shown if row["name"] == branch]
        [experiment] = [rev for exp in baseline["experiments"] for rev in exp["revs"] if rev["name"] == "one-epoch"]
        for row, epochs in ((baseline, 2), (experiment, 1)):
            assert row["data"]["params"]["params.yaml"]["data"]["datasets"]["mnist"]["train"]["epochs"] == epochs
            scores = row["data"]["metrics"]["metrics/mnist.json"]["data"]
            assert all(math.isfinite(scores[key]) for key in HEADLINE)
        assert experiment["data"]["metrics"]["metrics/mnist.json"]["data"] == repo.metrics("mnist")  # applied

        diff = json.loads(repo.dvc("exp", "diff", branch, "one-epoch", "--json").stdout)
        assert diff["params"] == {"params.yaml": {"datasets.mnist.train.epochs": {"old": 2, "new": 1, "diff": -1}}}
        assert "loss" in diff["metrics"]["metrics/mnist.json"]
        assert not {"metrics/cifar10.json", "metrics/cats_vs_dogs.json"} & set(diff["metrics"])

        table = repo.dvc("exp", "show", "--md").stdout
        assert "one-epoch" in table and "metrics/mnist.json:accuracy" in table
    finally:  # `dvc exp run` applied the experiment to the workspace: back to the branch as committed
        repo.run("git", "reset", "--hard", "-q")
        repo.dvc("checkout", "-q")
        repo.dvc("exp", "remove", "one-epoch", check=False)
    status = json.loads(repo.dvc("status", "--json").stdout)
    assert {stage: why for stage, why in status.items() if not stage.startswith("configure@")} == {}  # configure: always
