"""tf.distribute on the CPU: `mirrored` over two logical CPU devices, `multi_worker` as two
worker processes on 127.0.0.1 running the real train stage, and the `strategy` param's check.

Every TensorFlow run happens in a subprocess: logical devices and TF_CONFIG must be set before
TensorFlow initialises, and a worker that hangs in a collective must not hang the test run.
Each subprocess gets its own process group, killed in a `finally` whatever happens.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import fixtures
from conftest import ROOT, tiny_profile

PYTHON = sys.executable
CLASSES = ["a", "b", "c", "d"]  # four patterns: chance is 0.25, learnt is 0.75 and above
LEARNT = 0.75  # the accuracy band's floor
BAND = 0.25  # how far a distributed run's accuracy may fall from the one-device run's


def env(**extra) -> dict:
    out = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    out.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    out.update(extra)
    return out


def start(command: list[str], cwd: Path, log: Path, **extra_env) -> subprocess.Popen:
    """A subprocess in a process group of its own, its output in `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(command, cwd=cwd, env=env(**extra_env), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def kill(processes: list[subprocess.Popen]) -> None:
    """SIGKILL each process group (a no-op for one that has exited), then reap the processes."""
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for process in processes:
        process.wait()


def wait_all(processes: list[subprocess.Popen], logs: list[Path], deadline: float) -> None:
    for process, log in zip(processes, logs):
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{log.stem} still running at the deadline:\n{tail(log)}") from None
    for process, log in zip(processes, logs):
        assert process.returncode == 0, f"{log.stem} exited with {process.returncode}:\n{tail(log)}"


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def pattern_split(per_class: int, size: int, seed: int):
    from imagerec import datasets

    labels = np.repeat(np.arange(len(CLASSES)), per_class).astype(np.int64)
    return datasets.Split(fixtures.pattern_images(labels, size, 1, seed=seed), labels)


# --- mirrored ------------------------------------------------------------------------------

MIRRORED_SCRIPT = r"""
import json, sys
from pathlib import Path
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]  # two logical devices, before TF initialises
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
sys.path.insert(0, sys.argv[1])
from test_distributed import pattern_split
from imagerec import models, params, training

out_dir = Path(sys.argv[2])
train, val = pattern_split(32, 16, seed=0), pattern_split(8, 16, seed=1)
train_params = params.load("mnist", Path(sys.argv[3])).train.model_copy(update=dict(
    epochs=4, batch_size=16, learning_rate=0.005, schedule="constant", warmup_epochs=0,
    weight_decay=0.0, label_smoothing=0.0, early_stopping_patience=0))
results = {}
for name in ("default", "mirrored"):
    strategy = training.distribution_strategy(name)
    training.set_seeds(0)
    with strategy.scope():
        model = models.cnn((16, 16, 1), 4, [8], 1, False, 16, 0.0)
    history = training.fit(model, train, val, 4, train_params, keras.Sequential([]), 0, out_dir / name, strategy)[-1]
    results[name] = {
        "replicas": strategy.num_replicas_in_sync,
        "steps": history.params["steps"],
        "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
        "val_accuracy": history.history["val_accuracy"][-1],
        "variable_type": type(model.weights[0].value).__name__,
    }
print("RESULTS " + json.dumps(results))
"""


@pytest.mark.slow
@pytest.mark.extended
def test_mirrored_over_two_logical_cpus_scales_batch_and_rate_and_learns(tmp_path):
    log = tmp_path / "mirrored.log"
    process = start([PYTHON, "-c", MIRRORED_SCRIPT, str(Path(__file__).parent), str(tmp_path),
                     str(ROOT / "params.yaml")], tmp_path, log)
    try:
        wait_all([process], [log], time.monotonic() + 150)
    finally:
        kill([process])
    line = next(line for line in log.read_text().splitlines() if line.startswith("RESULTS "))
    default, mirrored = json.loads(line.removeprefix("RESULTS ")).values()

    assert default["replicas"] == 1 and mirrored["replicas"] == 2
    # 128 images, 16 per replica: 8 steps of 16 on one device, 4 steps of 32 on two.
    assert (default["steps"], mirrored["steps"]) == (8, 4)
    assert default["learning_rate"] == pytest.approx(0.005)
    assert mirrored["learning_rate"] == pytest.approx(0.010)  # the linear scaling rule
    assert mirrored["variable_type"] != default["variable_type"]  # the weights are mirrored variables
    assert default["val_accuracy"] >= LEARNT, default
    assert mirrored["val_accuracy"] >= LEARNT, mirrored
    assert abs(mirrored["val_accuracy"] - default["val_accuracy"]) <= BAND
    # Each run wrote its curves (dvclive's layout).
    for name in ("default", "mirrored"):
        assert (tmp_path / name / "plots" / "metrics" / "eval" / "accuracy.tsv").is_file()


# --- multi_worker ----------------------------------------------------------------------------

def write_stage_inputs(work: Path, strategy: str) -> None:
    """A tiny prepared dataset, a disabled augmentation policy, no pretrained weights, and the
    repo's params.yaml in the tiny profile with a small, quick CNN for mnist."""
    from imagerec import datasets, params

    settings = tiny_profile(yaml.safe_load((ROOT / "params.yaml").read_text())["datasets"])
    settings["mnist"]["train"].update(strategy=strategy, epochs=3, batch_size=8, learning_rate=0.005,
                                      schedule="constant", warmup_epochs=0, label_smoothing=0.0,
                                      early_stopping_patience=0)
    settings["mnist"]["model"].update(filters=[8], convs_per_block=1, batch_norm=False, dense_units=16, dropout=0.0)
    (work / "params.yaml").write_text(yaml.safe_dump({"datasets": settings}, sort_keys=False))
    params.write_stage_configs(params.load("mnist", work / "params.yaml"), work / "config")
    prepared = work / "data" / "prepared"
    prepared.mkdir(parents=True)
    fixtures.save_prepared(datasets.Prepared(CLASSES, {"train": pattern_split(24, 28, seed=0), "val": pattern_split(8, 28, seed=1),
                                              "test": pattern_split(8, 28, seed=2)}), prepared)
    (work / "data" / "augmented").mkdir()
    (work / "data" / "augmented" / "policy.json").write_text(json.dumps(
        {"enabled": False, "fill_mode": "constant", "interpolation": "nearest", "ops": []}))
    (work / "data" / "pretrained").mkdir()
    (work / "data" / "pretrained" / "manifest.json").write_text(json.dumps(
        {"model": "cnn", "pretrained": "none", "files": []}))


def train_command(out: str) -> list[str]:
    return [PYTHON, str(ROOT / "stages" / "train.py"), "config/train.json", "data/prepared", "data/augmented", "data/pretrained",
            f"{out}/model", f"{out}/curves"]


def val_accuracy(model_dir: Path, prepared: Path) -> float:
    from imagerec import datasets, inference

    model, _ = inference.load(model_dir)
    val = datasets.load(prepared, splits=["val"]).splits["val"]
    return float((inference.predict(inference.keras_runner(model), val.images, 64).argmax(axis=1) == val.labels).mean())


@pytest.mark.slow
@pytest.mark.extended
def test_two_workers_on_loopback_train_like_one_and_only_the_chief_writes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for work, strategy in ((one, "default"), (two, "multi_worker")):
        work.mkdir()
        write_stage_inputs(work, strategy)
    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    try:
        # The one-worker reference first, then the two workers side by side (the machine has 2 cores).
        logs = [tmp_path / "single.log"]
        processes.append(start(train_command("out"), one, logs[0]))
        wait_all(processes, logs, time.monotonic() + 90)
        workers, worker_logs = [], []
        for index in range(2):
            tf_config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
            (tmp_path / f"tmp{index}").mkdir()
            worker_logs.append(tmp_path / f"worker{index}.log")
            workers.append(start(train_command(f"out{index}"), two, worker_logs[-1],
                                 TF_CONFIG=json.dumps(tf_config), TMPDIR=str(tmp_path / f"tmp{index}")))
        processes += workers
        wait_all(workers, worker_logs, time.monotonic() + 120)
    finally:
        kill(processes)

    # The chief (worker 0) wrote the model and the curves; worker 1 wrote nothing at all.
    chief = two / "out0"
    assert sorted(p.name for p in (chief / "model").iterdir()) == ["model.json", "model.keras"]
    assert (chief / "curves" / "plots" / "metrics" / "eval" / "accuracy.tsv").is_file()
    assert not (two / "out1").exists()
    assert sorted(p.name for p in two.iterdir()) == ["config", "data", "out0", "params.yaml"]
    assert not any((tmp_path / "tmp1").iterdir())  # its throwaway outputs were removed
    card = json.loads((chief / "model" / "model.json").read_text())
    assert card["params"]["train"]["strategy"] == "multi_worker"
    # Both workers ran every epoch: 96 images in global batches of 2 x 8 make 6 steps, not 12.
    for log in worker_logs:
        assert "Epoch 3/3" in log.read_text() and "6/6" in log.read_text(), tail(log)
    assert "12/12" in (tmp_path / "single.log").read_text()

    single = val_accuracy(one / "out" / "model", one / "data" / "prepared")
    distributed = val_accuracy(chief / "model", two / "data" / "prepared")
    assert single >= LEARNT and distributed >= LEARNT, (single, distributed)
    assert abs(distributed - single) <= BAND, (single, distributed)


# --- params ----------------------------------------------------------------------------------

def test_unknown_strategy_is_refused_in_one_line_naming_the_key(tmp_path):
    from imagerec import params
    from imagerec.errors import ImagerecError

    settings = yaml.safe_load((ROOT / "params.yaml").read_text())
    settings["datasets"]["mnist"]["train"]["strategy"] = "typo"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(settings))
    with pytest.raises(ImagerecError) as info:
        params.load("mnist", path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: datasets.mnist.train.strategy:")
    assert "'default'" in message and "'mirrored'" in message and "'multi_worker'" in message
    assert "(got 'typo')" in message


@pytest.mark.parametrize("strategy", ["default", "mirrored", "multi_worker"])
def test_each_strategy_value_is_accepted(tmp_path, strategy):
    from imagerec import params

    settings = yaml.safe_load((ROOT / "params.yaml").read_text())
    settings["datasets"]["mnist"]["train"]["strategy"] = strategy
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(settings))
    assert params.load("mnist", path).train.strategy == strategy
