"""Scale: a DVC remote lets a second clone restore a finished run instead of repeating it, and a
queued sweep runs experiments in parallel workers and compares them with `dvc exp show`.

Both tests share one tiny-profile repository, a copy of the session's reproduced one.
"""
import json
import math
import re
import time

import psutil
import pytest
from conftest import PipelineRepo, copy_repo, stages_run

pytestmark = [pytest.mark.slow, pytest.mark.extended]

TARGET = "evaluate@mnist"  # one dataset's chain keeps these tests short
MNIST_STAGES = [f"{stage}@mnist" for stage in ("fetch", "preprocess", "augment", "train", "evaluate")]
SWEEP_RATES = [0.01, 0.005]  # one run per worker; the tiny baseline trains at 0.002
QUEUE_TIMEOUT = 420  # seconds; the two experiments take about a minute on 2 busy cores


def worker_processes(repo: PipelineRepo) -> list[psutil.Process]:
    """The queue workers this repository's `dvc queue start` spawned that are still alive."""
    alive = []
    for pid_file in (repo.path / ".dvc/tmp/exps/celery").glob("dvc-exp-worker-*.pid"):
        try:
            process = psutil.Process(int(pid_file.read_text().strip()))
            if "queue-worker" in " ".join(process.cmdline()):  # not a recycled pid
                alive.append(process)
        except (ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return alive


def stop_workers(repo: PipelineRepo, grace: float = 30) -> list[int]:
    """Stop the queue and make sure no worker (or anything it started) outlives the test.
    Returns the pids that had to be killed."""
    repo.dvc("queue", "stop", "--kill", check=False)
    workers = worker_processes(repo)
    _, survivors = psutil.wait_procs(workers, timeout=grace)
    killed = []
    for worker in survivors:
        try:
            family = worker.children(recursive=True) + [worker]
        except psutil.NoSuchProcess:
            continue
        for process in family:
            try:
                process.kill()
                killed.append(process.pid)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(family, timeout=10)
    return killed


def queue_tasks(repo: PipelineRepo) -> dict[str, str]:
    """{task name: status} from `dvc queue status` (it has no --json)."""
    tasks = {}
    for line in repo.dvc("queue", "status").stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[-1] in {"Queued", "Running", "Success", "Failed"}:
            tasks[fields[1]] = fields[-1]
    return tasks


def wait_for_queue(repo: PipelineRepo, expected: int, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        tasks = queue_tasks(repo)
        if len(tasks) >= expected and not {"Queued", "Running"} & set(tasks.values()):
            return tasks
        assert time.monotonic() < deadline, f"queue not finished after {timeout} s: {tasks}"
        time.sleep(3)


@pytest.fixture(scope="module")
def mnist_repo(tmp_path_factory, reproduced_repo) -> PipelineRepo:
    """A tiny-profile repository whose pipeline has run and whose dvc.lock is committed."""
    repo = copy_repo(reproduced_repo, tmp_path_factory.mktemp("scale") / "repo")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "tiny run")
    yield repo
    stop_workers(repo)


def test_second_clone_pulls_everything_from_a_local_remote_and_runs_nothing(mnist_repo, tmp_path):
    repo = mnist_repo
    remote = tmp_path / "remote"
    repo.dvc("remote", "add", "-d", "storage", str(remote))
    repo.run("git", "commit", "-qam", "a shared DVC remote")
    assert "pushed" in repo.dvc("push", TARGET, "--with-deps").stdout
    assert any(remote.rglob("*"))

    repo.run("git", "clone", "-q", str(repo.path), str(tmp_path / "clone"))
    clone = PipelineRepo(tmp_path / "clone", mirror=None)
    # No mirror and no network: were any stage to run, fetch would fail.
    clone.env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    assert not (clone.path / "models/mnist").exists()
    assert "fetched" in clone.dvc("pull", TARGET, "--with-deps").stdout
    assert (clone.path / "models/mnist/model.keras").is_file()
    assert (clone.path / "data/prepared/mnist/train_images.npy").is_file()

    output = clone.dvc("repro", TARGET).stdout
    assert stages_run(output) == set()
    for stage in MNIST_STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in output
    assert json.loads(clone.dvc("status", "--json", TARGET, "--with-deps").stdout) == {"configure@mnist": ["always changed"]}
    assert clone.metrics("mnist") == repo.metrics("mnist")


def test_queued_sweep_runs_in_two_workers_and_exp_show_compares_the_results(mnist_repo):
    repo = mnist_repo
    names = []
    for rate in SWEEP_RATES:
        output = repo.dvc("exp", "run", "--queue", "-S", f"datasets.mnist.train.learning_rate={rate}", TARGET).stdout
        names.append(re.search(r"Queued experiment '([^']+)'", output).group(1))
    assert queue_tasks(repo) == {name: "Queued" for name in names}

    try:
        repo.dvc("queue", "start", "-j", "2")
        tasks = wait_for_queue(repo, len(names), QUEUE_TIMEOUT)
        failed = [name for name, status in tasks.items() if status != "Success"]
        logs = {name: repo.dvc("queue", "logs", name, check=False).stdout[-3000:] for name in failed}
        assert not failed, f"experiments failed: {logs}"
    finally:
        killed = stop_workers(repo)
    assert killed == [], "queue workers did not shut down by themselves once the queue was empty"
    for name in names:  # upstream stages came from the cache; only what the param feeds re-ran
        assert stages_run(repo.dvc("queue", "logs", name).stdout) == {"train@mnist", "evaluate@mnist"}

    # The queue leaves the workspace alone: results live in experiment refs.
    assert repo.run("git", "status", "--porcelain").stdout == ""
    assert repo.params["mnist"]["train"]["learning_rate"] == 0.002

    baseline = next(row for row in json.loads(repo.dvc("exp", "show", "--json").stdout) if row["rev"] != "workspace")
    experiments = {rev["name"]: rev["data"] for exp in baseline["experiments"] or [] for rev in exp["revs"]}
    assert set(names) <= set(experiments)
    losses = set()
    for name, rate in zip(names, SWEEP_RATES):
        data = experiments[name]
        assert data["params"]["params.yaml"]["data"]["datasets"]["mnist"]["train"]["learning_rate"] == rate
        metrics = data["metrics"]["metrics/mnist.json"]["data"]
        assert 0 <= metrics["accuracy"] <= 1 and math.isfinite(metrics["loss"])
        losses.add(metrics["loss"])
    assert len(losses) == len(SWEEP_RATES)  # each run trained its own model
