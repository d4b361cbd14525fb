"""A pipeline repo with two committed revisions, shared by test_compare.py and test_report.py.

`main` holds one full tiny `dvc repro` (a copy of the session's `reproduced_repo`); branch
`experiment` changes MNIST's learning rate and re-runs only MNIST's train, evaluate and export.
Built once per test session by conftest's `two_revision_repo` fixture.
"""
import subprocess
from pathlib import Path

from conftest import PipelineRepo, copy_repo

BASE, BRANCH = "main", "experiment"
DATASETS = ["mnist", "cifar10", "cats_vs_dogs"]
NEW_LR = 0.05  # mnist.train.learning_rate on the branch (the tiny profile keeps params.yaml's 0.002)


def build(path: Path, reproduced: PipelineRepo) -> PipelineRepo:
    repo = copy_repo(reproduced, path)
    repo.run("git", "branch", "-M", BASE)
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "tiny run")
    repo.run("git", "checkout", "-qb", BRANCH)
    params = repo.params
    params["mnist"]["train"]["learning_rate"] = NEW_LR
    repo.params = params
    repo.dvc("repro")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "mnist: higher learning rate")
    return repo


def at_base(repo: PipelineRepo, path: str) -> bytes:
    """A file's bytes as committed on the base branch."""
    return subprocess.run(["git", "show", f"{BASE}:{path}"], cwd=repo.path, capture_output=True, check=True).stdout
