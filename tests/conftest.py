"""Shared test fixtures: fixture mirrors, and throwaway copies of the pipeline repo."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import fixtures  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_FILES = ["stages", "imagerec", "dvc.yaml", "params.yaml", ".gitignore", ".dvcignore", ".dvc/config", ".dvc/plots"]


def real_mirror() -> Path | None:
    """The offline mirror of the real datasets, where this machine has one (CI has ../shared/data)."""
    candidate = Path(os.environ.get("IMAGEREC_MIRROR") or ROOT.parent / "shared" / "data")
    return candidate if (candidate / "SHA256SUMS").is_file() else None


def tiny_profile(params: dict) -> dict:
    """The tiny profile: a few images per class, one or two epochs, small Cats vs Dogs images, two
    export formats."""
    for section in params.values():
        section["preprocess"]["max_per_class"] = 6
        section["train"].update(epochs=2, batch_size=16)
        if section["train"].get("fine_tune"):
            section["train"]["fine_tune"]["epochs"] = 1
        section["augment"]["preview_images"] = 4
        section["evaluate"].update(samples_shown=8, batch_size=32)
        section["export"].update(formats=["tflite_float32", "tflite_int8"], calibration_images=8)  # the others: test_export
    params["cats_vs_dogs"]["preprocess"]["image_size"] = 64
    return params


@pytest.fixture(scope="session")
def fixture_mirror(tmp_path_factory) -> Path:
    return fixtures.make_mirror(tmp_path_factory.mktemp("mirror"))


class PipelineRepo:
    """A git + DVC repository holding a copy of the pipeline, run through the real CLIs."""

    def __init__(self, path: Path, mirror: Path | None):
        self.path = path
        self.mirror = mirror
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
                    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                    "GIT_COMMITTER_EMAIL": "t@t", "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.env.pop("IMAGEREC_MIRROR", None)
        if mirror is not None:
            self.env["IMAGEREC_MIRROR"] = str(mirror)

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(command, cwd=self.path, env=self.env, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "dvc", *args, check=check)

    @property
    def params(self) -> dict:
        """params.yaml's `datasets:` mapping (dataset name -> section)."""
        return yaml.safe_load((self.path / "params.yaml").read_text())["datasets"]

    @params.setter
    def params(self, value: dict) -> None:
        (self.path / "params.yaml").write_text(yaml.safe_dump({"datasets": value}, sort_keys=False))

    def metrics(self, dataset: str) -> dict:
        return json.loads((self.path / "metrics" / f"{dataset}.json").read_text())


def stages_run(output: str) -> set[str]:
    """The stages a `dvc repro` ran, but configure's, which runs every time (always_changed)."""
    return {stage for stage in re.findall(r"Running stage '([^']+)'", output) if not stage.startswith("configure@")}


def changed_stages(repo: "PipelineRepo") -> set[str]:
    """The stages `dvc status` reports out of date, but configure's (always changed)."""
    return {stage for stage in json.loads(repo.dvc("status", "--json").stdout) if not stage.startswith("configure@")}


def dataset_plots(repo: "PipelineRepo", dataset: str) -> tuple[dict, list[str]]:
    """The plots dvc.yaml declares for `dataset` (stage-level, with ${key}): ({path: props} of the
    data-series plots, [paths] of the image plots). DVC names each plot by its path."""
    series, images = {}, []
    for stage in yaml.safe_load((repo.path / "dvc.yaml").read_text())["stages"].values():
        for entry in stage["do"].get("plots", []):
            [(path, props)] = entry.items()
            path = path.replace("${key}", dataset)
            if path.endswith(".png"):
                images.append(path)
            else:
                series[path] = props
    return series, images


def make_pipeline_repo(path: Path, mirror: Path | None) -> PipelineRepo:
    for name in PIPELINE_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, path / name)
    repo = PipelineRepo(path, mirror)
    repo.params = tiny_profile(repo.params)
    repo.run("git", "init", "-q")
    repo.run("git", "add", "-A")
    # dvclive needs a repository with at least one commit.
    repo.run("git", "commit", "-qm", "tiny profile")
    return repo


@pytest.fixture
def pipeline_repo(tmp_path, fixture_mirror) -> PipelineRepo:
    return make_pipeline_repo(tmp_path / "repo", fixture_mirror)


def copy_repo(repo: PipelineRepo, path: Path) -> PipelineRepo:
    """An independent copy: workspace, git history and DVC cache."""
    shutil.copytree(repo.path, path, symlinks=True)
    return PipelineRepo(path, repo.mirror)


@pytest.fixture(scope="session")
def reproduced_repo(tmp_path_factory, fixture_mirror) -> PipelineRepo:
    """The tiny pipeline after one full `dvc repro` on the fixture mirror, built once per session:
    that repro is most of what the slow tests cost. Tests work on copies (`copy_repo`), never on it."""
    repo = make_pipeline_repo(tmp_path_factory.mktemp("reproduced") / "repo", fixture_mirror)
    repo.dvc("repro")
    return repo


@pytest.fixture(scope="session")
def two_revision_repo(tmp_path_factory, reproduced_repo) -> PipelineRepo:
    """tests/two_revisions.py's repo, shared by test_compare and test_report; on branch `experiment`."""
    from two_revisions import build  # it imports this module

    return build(tmp_path_factory.mktemp("two_revisions") / "repo", reproduced_repo)
