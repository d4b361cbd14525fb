"""README's commands are the ones that are run: CI's, and the first run's benchmark."""
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in README.splitlines()


def test_the_first_run_readme_gives_is_the_one_benchmarks_first_run_times():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from first_run import FIRST_RUN
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert shlex.join(FIRST_RUN) in README
