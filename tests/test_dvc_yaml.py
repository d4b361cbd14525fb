"""dvc.yaml tells the truth: each stage declares exactly the project modules its script imports,
directly or through other modules, so editing one re-runs every stage that uses it."""
import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def imported_modules(path: Path) -> set[str]:
    """The imagerec modules `path` imports anywhere in it (also inside functions), as repo paths."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside the package
                names = [node.module] if node.module else [alias.name for alias in node.names]
            elif node.module == "imagerec":
                names = [alias.name for alias in node.names]
            elif node.module and node.module.startswith("imagerec."):
                names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [alias.name.split(".")[1] for alias in node.names if alias.name.startswith("imagerec.")]
        found |= {f"imagerec/{name.split('.')[0]}.py" for name in names}
    return {module for module in found if (ROOT / module).is_file()}


def closure(script: str) -> set[str]:
    seen, todo = set(), [script]
    while todo:
        for module in imported_modules(ROOT / todo.pop()) - seen:
            seen.add(module)
            todo.append(module)
    return seen


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_declares_exactly_the_modules_it_imports(stage):
    script = f"stages/{stage}.py"
    declared = {dep for dep in STAGES[stage]["do"]["deps"] if dep.startswith("imagerec/")}
    assert script in STAGES[stage]["do"]["deps"]
    assert declared == closure(script), f"{stage}: missing {sorted(closure(script) - declared)}, " \
                                        f"not imported {sorted(declared - closure(script))}"


def test_every_stage_runs_for_each_dataset_and_names_none():
    text = (ROOT / "dvc.yaml").read_text()
    datasets = yaml.safe_load((ROOT / "params.yaml").read_text())["datasets"]
    for stage in STAGES.values():
        assert stage["foreach"] == "${datasets}"
    for name in datasets:
        assert name not in text


def test_closure_follows_imports_inside_functions():
    assert "imagerec/files.py" in imported_modules(ROOT / "imagerec/models.py")  # imported in save()


def test_no_import_circle_among_the_package_modules():
    """Each module of the package can be read, and changed, knowing only the ones below it:
    the imports (function-level ones too) form no circle. `graphlib` names one if they do."""
    import graphlib

    modules = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "imagerec").glob("*.py"))
    graph = {module: imported_modules(ROOT / module) - {module} for module in modules}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import circle: {' -> '.join(err.args[1])}")
    assert set(order) >= set(modules)
