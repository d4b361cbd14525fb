"""The whole pipeline through the real `dvc` CLI, on the tiny profile."""
import json
import math

import pytest
from conftest import changed_stages, copy_repo, make_pipeline_repo, real_mirror, stages_run

DATASETS = ["mnist", "cifar10", "cats_vs_dogs"]
STAGES = ["configure", "fetch", "preprocess", "augment", "train", "evaluate", "export"]

pytestmark = pytest.mark.slow


def _reject_nan(value):
    raise ValueError(f"{value} is not valid JSON for Vega-Lite")


def assert_plot_data_is_finite_json(repo):
    files = list((repo.path / "plots").rglob("*.json")) + list((repo.path / "metrics").glob("*.json"))
    assert files
    for path in files:
        json.loads(path.read_text(), parse_constant=_reject_nan)


def test_tiny_pipeline_runs_end_to_end_and_caches_every_stage(reproduced_repo, tmp_path):
    repo = copy_repo(reproduced_repo, tmp_path / "repo")  # after one full `dvc repro`
    stage_names = repo.dvc("stage", "list", "--names-only").stdout.split()
    assert sorted(stage_names) == sorted(f"{stage}@{ds}" for stage in STAGES for ds in DATASETS)

    for dataset in DATASETS:
        metrics = repo.metrics(dataset)
        for key in ("accuracy", "loss", "roc_auc_micro", "roc_auc_macro"):
            assert math.isfinite(metrics[key])
        assert 0 <= metrics["accuracy"] <= 1
        classes = json.loads((repo.path / "data/prepared" / dataset / "classes.json").read_text())
        assert sorted(metrics["per_class"]) == sorted(classes)
        for png in ("explore/samples.png", "explore/class_balance.png", "augment/preview.png",
                    "evaluate/predictions.png", "evaluate/misclassified.png", "evaluate/confidently_wrong.png",
                    "evaluate/gradcam.png"):
            assert (repo.path / "plots" / dataset / png).stat().st_size > 1000
        for drawn_from_data in ("roc", "pr", "reliability", "confusion_matrix"):  # by DVC and the page, not Matplotlib
            assert not (repo.path / "plots" / dataset / "evaluate" / f"{drawn_from_data}.png").exists()
        curves = repo.path / "plots" / dataset / "train/plots/metrics"
        fine_tune = repo.params[dataset]["train"].get("fine_tune")
        epochs = 2 + (fine_tune["epochs"] if fine_tune else 0)  # both phases of transfer learning in one curve
        assert (curves / "train/loss.tsv").read_text().count("\n") == 1 + epochs  # header + epochs
        summary = json.loads((repo.path / "plots" / dataset / "train/metrics.json").read_text())
        assert summary["step"] == epochs - 1 and summary["train_seconds"] > 0  # the last epoch's step, from 0
        assert 0 <= summary["eval"]["accuracy"] <= 1
        assert (repo.path / "models" / dataset / "model.keras").is_file()
        exported = json.loads((repo.path / "metrics" / f"{dataset}_export.json").read_text())
        assert exported["tflite_float32"]["accuracy"] == exported["keras"]["accuracy"]
        if repo.params[dataset]["evaluate"]["tta"] == "none":  # export scores the model alone, without TTA
            assert exported["keras"]["accuracy"] == metrics["accuracy"]
        assert (repo.path / "exports" / dataset / "model_int8.tflite").is_file()
    assert json.loads((repo.path / "data/pretrained/cats_vs_dogs/manifest.json").read_text())["files"]
    assert json.loads((repo.path / "data/pretrained/mnist/manifest.json").read_text())["files"] == []
    assert_plot_data_is_finite_json(repo)
    shown = repo.dvc("plots", "show", "--json").stdout
    assert "Infinity" not in shown and "NaN" not in shown

    # Metrics and plot data belong to git; the data and models to DVC's cache.
    assert repo.run("git", "check-ignore", "-q", "metrics/mnist.json", check=False).returncode == 1
    assert repo.run("git", "check-ignore", "-q", "plots/mnist/evaluate/roc.json", check=False).returncode == 1
    assert repo.run("git", "check-ignore", "-q", "models/mnist", check=False).returncode == 0
    assert repo.run("git", "check-ignore", "-q", "exports/mnist", check=False).returncode == 0

    # Nothing changed: nothing runs.
    assert stages_run(repo.dvc("repro").stdout) == set()
    assert changed_stages(repo) == set()

    # A train knob of one dataset changes that dataset's train config only. (That its evaluate and
    # export follow, and nothing else, is test_compare's branch: MNIST's learning rate.)
    params = repo.params
    params["cifar10"]["train"]["learning_rate"] = 0.01
    repo.params = params
    assert stages_run(repo.dvc("repro", "configure@cifar10").stdout) == set()  # writes the new train.json
    assert changed_stages(repo) == {"train@cifar10"}


@pytest.mark.extended
@pytest.mark.skipif(real_mirror() is None, reason="no mirror of the real datasets (../shared/data) on this machine")
def test_tiny_pipeline_on_the_real_mirror(tmp_path):
    repo = make_pipeline_repo(tmp_path / "repo", real_mirror())
    params = repo.params
    # Enough photos and steps for the frozen ImageNet features to show: 40 per class, 96x96.
    params["cats_vs_dogs"]["preprocess"].update(max_per_class=40, image_size=96)
    params["cats_vs_dogs"]["train"].update(epochs=3, learning_rate=0.01)
    repo.params = params
    # Reading the real files is what this test adds; the tiny pipeline's later stages are tested above.
    repo.dvc("repro", "preprocess@mnist", "preprocess@cifar10", "evaluate@cats_vs_dogs")
    stats = {ds: json.loads((repo.path / "plots" / ds / "explore/stats.json").read_text()) for ds in DATASETS}
    assert stats["cifar10"]["classes"][:2] == ["airplane", "automobile"]
    assert stats["cats_vs_dogs"]["classes"] == ["cats", "dogs"]
    assert stats["mnist"]["image_shape"] == [28, 28, 1]
    assert repo.metrics("cats_vs_dogs")["roc_auc_macro"] >= 0.8
    assert_plot_data_is_finite_json(repo)


def test_bad_params_stop_a_stage_with_one_line_naming_the_key(pipeline_repo):
    repo = pipeline_repo
    params = repo.params
    params["mnist"]["train"]["epochs"] = 0
    repo.params = params
    result = repo.dvc("repro", "fetch@mnist", check=False)
    assert result.returncode != 0
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: params.yaml: datasets.mnist.train.epochs:")
    assert not (repo.path / "data/raw/mnist").exists()
    assert not (repo.path / "data/config/mnist").exists()


def test_fetch_without_network_or_mirror_names_the_url_and_the_mirror_variable(tmp_path):
    repo = make_pipeline_repo(tmp_path / "repo", mirror=None)
    repo.env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")  # nothing listens there
    result = repo.dvc("repro", "fetch@mnist", check=False)
    assert result.returncode != 0
    assert "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz" in result.stderr
    assert "IMAGEREC_MIRROR" in result.stderr
    assert not (repo.path / "data/raw/mnist").exists()
    assert not list((repo.path / "data/raw").glob(".mnist.*"))


def test_tampered_mirror_file_is_refused_and_nothing_is_kept(tmp_path, fixture_mirror):
    import shutil

    mirror = tmp_path / "mirror"
    shutil.copytree(fixture_mirror, mirror)
    with open(mirror / "mnist/mnist.npz", "ab") as f:
        f.write(b"tampered")
    repo = make_pipeline_repo(tmp_path / "repo", mirror)
    result = repo.dvc("repro", "fetch@mnist", check=False)
    assert result.returncode != 0
    assert "sha256 mismatch" in result.stderr
    assert not (repo.path / "data/raw/mnist").exists()
    assert not list((repo.path / "data/raw").iterdir())
