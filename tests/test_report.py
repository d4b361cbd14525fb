"""`imagerec report`: the workspace against a base revision, as Markdown with PNG plots."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import dataset_plots, make_pipeline_repo
from PIL import Image
from two_revisions import BASE, DATASETS, NEW_LR, at_base
from imagerec import report as report_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
IMAGEREC = str(Path(sys.executable).parent / "imagerec")


@pytest.fixture(scope="module")
def report(tmp_path_factory, two_revision_repo):
    """(repo, out dir, report.md text) of `imagerec report --base main` on the two-revision repo."""
    repo = two_revision_repo
    out = tmp_path_factory.mktemp("report") / "report"
    result = repo.run("imagerec", "report", "--base", BASE, "--out", str(out))
    assert result.stdout.strip() == str(out / "report.md")
    return repo, out, (out / "report.md").read_text()


def section(text: str, heading: str) -> str:
    """The text under a `## heading`, up to the next `## `."""
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def table_row(text: str, first_cell: str) -> list[str]:
    """The cells of the first Markdown table row starting with first_cell."""
    row = next(line for line in text.splitlines() if line.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def run_report(cwd: Path, *args: str, prelude: str = "") -> subprocess.CompletedProcess:
    """`imagerec report ARGS` in cwd; prelude is Python run first in the same process."""
    command = ([sys.executable, "-c", f"{prelude}; from imagerec.cli import main; main()", "report", *args]
               if prelude else [IMAGEREC, "report", *args])
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(cwd.parent), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_report_has_a_section_per_dataset_and_the_changed_param(report):
    _, _, text = report
    for dataset in DATASETS:
        assert f"\n## {dataset}\n" in text
    params = section(text, "Parameters")
    old = yaml.safe_load(at_base(report[0], "params.yaml"))["datasets"]["mnist"]["train"]["learning_rate"]
    assert table_row(params, "params.yaml") == ["params.yaml", "datasets.mnist.train.learning_rate", str(old), str(NEW_LR)]


@pytest.mark.slow
def test_report_shows_both_revisions_numbers_and_the_change_of_a_changed_metric(report):
    repo, _, text = report
    old = json.loads(at_base(repo, "metrics/mnist.json"))["loss"]
    new = repo.metrics("mnist")["loss"]
    mnist = section(text, "mnist")
    assert table_row(mnist, "metric") == ["metric", BASE, "workspace", "change"]
    name, shown_old, shown_new, change = table_row(mnist, "loss")
    assert float(shown_old) == pytest.approx(old, rel=1e-5)
    assert float(shown_new) == pytest.approx(new, rel=1e-5)
    assert float(change) == pytest.approx(new - old, rel=1e-5)
    for dataset in DATASETS[1:]:
        assert f"`metrics/{dataset}.json`: no change." in section(text, dataset)


@pytest.mark.slow
def test_report_embeds_valid_pngs_of_every_mnist_plot_and_both_revisions_of_changed_images(report):
    repo, out, text = report
    links = IMAGE_LINK.findall(section(text, "mnist"))
    for _, link in links:
        data = (out / link).read_bytes()
        assert data[:8] == PNG_MAGIC, link
    shown = {alt for alt, _ in links}
    series, images = dataset_plots(repo, "mnist")
    for name in [*series, *images]:
        assert name in shown, name

    [roc_chart] = [link for alt, link in links if alt == "plots/mnist/evaluate/roc.json"]
    with Image.open(out / roc_chart) as image:
        assert min(image.size) >= 200  # a rendered chart, not an empty canvas

    image = "plots/mnist/evaluate/gradcam.png"  # Matplotlib's heat maps: new model, new picture
    assert at_base(repo, image) != (repo.path / image).read_bytes()
    copies = {link.split("/")[1]: (out / link).read_bytes() for alt, link in links if alt == image}
    assert copies == {BASE: at_base(repo, image), "workspace": (repo.path / image).read_bytes()}


def test_report_outside_a_git_repository_is_a_one_line_error(tmp_path):
    result = run_report(tmp_path, "--base", "main", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path} is not inside a git repository\n"
    assert not (tmp_path / "out").exists()


def test_report_with_an_unknown_base_revision_is_a_one_line_error(tmp_path):
    repo = make_pipeline_repo(tmp_path / "repo", mirror=None)  # git + DVC files, nothing run
    result = run_report(repo.path, "--base", "no-such-branch", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown base revision 'no-such-branch'")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_report_in_a_git_repository_without_dvc_is_a_one_line_error(tmp_path):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "empty"], cwd=tmp_path, env=env, check=True)
    result = run_report(tmp_path, "--base", "HEAD", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path} is not inside a DVC repository\n"
    assert not (tmp_path / "out").exists()


def test_report_without_dvc_installed_is_a_one_line_error(tmp_path):
    # sys.modules["dvc"] = None makes `import dvc` fail as it would were dvc not installed.
    result = run_report(tmp_path, "--base", "main", prelude="import sys; sys.modules['dvc'] = None")
    assert result.returncode == 2
    assert result.stderr == f"error: dvc is not installed for {sys.executable} (pip install dvc)\n"


@pytest.mark.parametrize("old, new, images, within", [
    (0.9966, 0.9968, 10_000, True),   # MNIST on another CPU, 2026-12-01: +2 images
    (0.9005, 0.8984, 10_000, True),   # CIFAR-10 on another CPU: -21 images
    (0.9005, 0.8905, 10_000, False),  # a real loss of a point
    (0.98, 0.97, 1_000, False),       # Cats vs Dogs losing 10 of 1,000
])
def test_spread_verdict_tells_drift_from_a_real_change(old, new, images, within):
    verdict = report_module.spread_verdict(old, new, images)
    assert ("within the expected spread" in verdict) is within
    assert f"({round((new - old) * images):+d} of {images:,} test images)" in verdict
