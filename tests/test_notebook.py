"""notebooks/imagerec_gpu.ipynb: a valid nbformat-4 notebook, stored without outputs, whose code
is valid Python once IPython's `!shell` and `%magic` lines are set aside."""
import ast
import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "imagerec_gpu.ipynb"


def notebook() -> dict:
    return json.loads(NOTEBOOK.read_text())


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def python_of(cell: dict) -> str:
    """The cell's code with IPython-only lines (`!cmd`, `%magic`, `%%cell magic`) replaced by `pass`."""
    lines = []
    for line in source(cell).splitlines():
        stripped = line.lstrip()
        lines.append(line[: len(line) - len(stripped)] + "pass" if stripped.startswith(("!", "%")) else line)
    return "\n".join(lines)


def test_notebook_is_nbformat_4_without_outputs():
    nb = notebook()
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["language"] == "python"
    code_cells = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert code_cells
    for cell in code_cells:
        assert cell["outputs"] == [] and cell["execution_count"] is None


def test_notebook_passes_the_nbformat_schema():
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.read(str(NOTEBOOK), as_version=4))


def test_notebook_code_cells_are_valid_python():
    for i, cell in enumerate(notebook()["cells"]):
        if cell["cell_type"] == "code":
            compile(python_of(cell), f"{NOTEBOOK.name} cell {i}", "exec")


def test_notebook_starts_with_the_settings_and_runs_the_pipeline():
    cells = [source(cell) for cell in notebook()["cells"] if cell["cell_type"] == "code"]
    settings = {node.targets[0].id for node in ast.parse(cells[0]).body if isinstance(node, ast.Assign)}
    assert {"REPO_URL", "TARGETS"} <= settings
    code = "\n".join(cells)
    for step in ("git", "clone", "--no-deps", "-e", "!dvc repro", "!dvc metrics show", ".png"):
        assert step in code
