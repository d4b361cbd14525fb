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


def test_gpu_speed_settings_turn_on_exactly_mixed_precision_and_xla(tmp_path):
    """The notebook's params.yaml switch, run on the committed params.yaml: the result is valid,
    both settings are on for every dataset and nothing else changed."""
    from imagerec import params

    cells = [source(cell) for cell in notebook()["cells"] if cell["cell_type"] == "code"]
    definitions = [node for cell in cells for node in ast.parse(python_of({"source": cell})).body
                   if isinstance(node, ast.FunctionDef) and node.name == "with_gpu_speed_settings"]
    assert len(definitions) == 1
    namespace = {}
    module = ast.fix_missing_locations(ast.Module([ast.Import([ast.alias("re")]), *definitions], []))
    exec(compile(module, "notebook", "exec"), namespace)
    committed = NOTEBOOK.parents[1] / "params.yaml"
    switched = tmp_path / "params.yaml"
    switched.write_text(namespace["with_gpu_speed_settings"](committed.read_text()))
    for dataset in ("mnist", "cifar10", "cats_vs_dogs"):
        before, after = params.load(dataset, committed), params.load(dataset, switched)
        assert not before.train.mixed_precision and not before.train.jit_compile
        assert after.train.mixed_precision and after.train.jit_compile
        assert after.model_copy(update={"train": before.train}) == before
