"""Atomic outputs: whole or absent, with ordinary permissions, also when a stage is killed."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from imagerec.files import atomic_dir, atomic_file, write_json


def test_atomic_dir_replaces_the_old_output_only_on_success(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "new").write_text("half")
            raise RuntimeError("stage failed")
    assert [p.name for p in out.iterdir()] == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary left behind
    with atomic_dir(out) as tmp:
        (tmp / "new").write_text("whole")
    assert [p.name for p in out.iterdir()] == ["new"]


def test_atomic_file_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"accuracy": 0.5})
    with pytest.raises(ValueError):
        write_json(path, {"accuracy": float("nan")})  # not valid JSON for DVC plots
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_outputs_get_ordinary_permissions_not_those_of_temporary_files(tmp_path):
    mask = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "f.txt") as f:
            f.write("x")
        with atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_a_stage_killed_with_sigterm_leaves_no_partial_output(tmp_path):
    script = textwrap.dedent("""
        import time
        from imagerec.errors import run_stage
        from imagerec.files import atomic_dir

        def main():
            with atomic_dir("out") as tmp:
                (tmp / "part").write_text("half written")
                print("writing", flush=True)
                time.sleep(60)

        run_stage(main)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "writing"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 130
    finally:
        process.kill()
    assert process.stderr.read().strip() == "error: interrupted"
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_a_killed_run_are_removed_by_the_next(tmp_path):
    out = tmp_path / "out"
    stale = tmp_path / ".out.abc123.tmp"  # what SIGKILL leaves: no chance to clean up
    stale.mkdir()
    (stale / "part").write_text("half written")
    with atomic_dir(out) as tmp:
        (tmp / "whole").write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
