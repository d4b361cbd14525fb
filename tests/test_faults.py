"""Faults around the pipeline: reruns are deterministic, a killed run leaves nothing half-written,
and a restart reaches the same result."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import copy_repo

from imagerec.datasets import Split
from imagerec.errors import ImagerecError

DATASETS = ["mnist", "cifar10", "cats_vs_dogs"]


def metrics_files(repo) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted((repo.path / "metrics").glob("*.json"))}


def start_repro(repo, *args: str) -> subprocess.Popen:
    # A session of its own, so that the signal reaches dvc and the stage it runs, as a
    # terminal's Ctrl-C or a job scheduler's kill would.
    return subprocess.Popen([sys.executable, "-m", "dvc", "repro", *args], cwd=repo.path, env=repo.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def wait_for_training(repo, process: subprocess.Popen, dataset: str, timeout: float = 180) -> None:
    """Until train@<dataset> has opened its temporary output, i.e. is inside model.fit."""
    deadline = time.monotonic() + timeout
    while not list((repo.path / "models").glob(f".{dataset}.*.tmp")):
        assert process.poll() is None, "dvc repro ended before training started"
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def finished_repo(tmp_path_factory, reproduced_repo):
    return copy_repo(reproduced_repo, tmp_path_factory.mktemp("faults") / "repo")


@pytest.mark.slow
@pytest.mark.extended
def test_forced_rerun_on_the_same_machine_gives_identical_metrics(finished_repo):
    before = metrics_files(finished_repo)
    assert len(before) == 2 * len(DATASETS)
    # Training is where nondeterminism would come from; export only converts the model it is given.
    # MNIST's rerun is the restart after SIGKILL below; CIFAR-10 trains the same CNN code.
    targets = [f"{stage}@cats_vs_dogs" for stage in ("train", "evaluate")]
    output = finished_repo.dvc("repro", "--force", "--single-item", *targets).stdout
    assert all(f"Running stage '{target}'" in output for target in targets)
    assert metrics_files(finished_repo) == before


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_run_killed_during_training_leaves_no_model_and_a_restart_reproduces_the_result(finished_repo, kill):
    repo = finished_repo
    before = metrics_files(repo)
    process = start_repro(repo, "--force", "-s", "train@mnist")
    try:
        wait_for_training(repo, process, "mnist")
        os.killpg(process.pid, kill)
        assert process.wait(timeout=60) != 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    time.sleep(0.5)  # let the killed stage finish unwinding
    assert not (repo.path / "models/mnist").exists()  # nothing half-trained for evaluate to score
    if kill == signal.SIGTERM:  # SIGTERM unwinds and cleans up; SIGKILL's leftovers go on the next run
        assert not list((repo.path / "models").glob(".mnist.*.tmp"))
    assert "train@mnist" in repo.dvc("status").stdout
    if kill == signal.SIGTERM:
        return  # the restart is the same after either signal: it runs once, after SIGKILL's leftovers

    # The restart is the killed command again. (A plain `dvc repro` would check the model out of
    # DVC's cache without training, leaving SIGKILL's leftovers for the next real training run.)
    repo.dvc("repro", "--force", "-s", "train@mnist")
    assert not list((repo.path / "models").glob(".mnist.*.tmp"))
    repo.dvc("repro", "evaluate@mnist")  # the new model.keras (it records its save time) is evaluated again
    assert metrics_files(repo) == before  # restarted from scratch, same seed: the same model


def test_model_whose_input_does_not_match_the_data_is_refused_before_training():
    from imagerec import models, training

    model = models.cnn((28, 28, 1), 10, [4], 1, False, 0, 0.0)
    data = Split(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int64))
    with pytest.raises(ImagerecError, match=r"expects images of shape \(28, 28, 1\).*\(32, 32, 3\)"):
        training.fit(model, data, data, 10, None, None, 0, curves_dir=None)
    assert not model.compiled
