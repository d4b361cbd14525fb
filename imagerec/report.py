"""`imagerec report`: the workspace against a base revision (metrics, params, plots) as Markdown.

Everything comes from DVC's CLI (its Python API is not stable): `dvc metrics diff --all --json`,
`dvc params diff --md` and `dvc plots diff --json`, whose data-series plots are Vega-Lite specs
with the data of both revisions inline (rendered here to PNG, offline, with vl-convert) and whose
image plots are one file per revision (copied). Plots identical in both revisions are folded
into a <details> block.
"""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from .errors import ImagerecError

NEW = "workspace"  # DVC's name for the checked-out tree, which is what gets compared with the base
DVC = [sys.executable, "-m", "dvc"]  # the DVC installed beside imagerec, whether or not its bin/ is on PATH


def _run(*command: str) -> str:
    result = subprocess.run([*DVC, *command[1:]] if command[0] == "dvc" else command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()] or [f"exit code {result.returncode}"]
        raise ImagerecError(f"`{' '.join(command[:4])}` failed: {lines[-1].removeprefix('ERROR: ')}")
    return result.stdout


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")


def _number(value) -> str:
    return "—" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def _dataset_of(name: str, datasets: list[str]) -> str:
    """The dataset a metrics file or plot belongs to: the params.yaml section its name mentions."""
    for dataset in datasets:
        if re.search(rf"(^|[/ ]){re.escape(dataset)}([/_. ]|$)", name):
            return dataset
    return "other"


def spread_verdict(old: float, new: float, test_images: int) -> str:
    """Whether a change of test accuracy is beyond what a rerun elsewhere gives.

    The same code, data and seed give other weights on another CPU or with other library
    versions, and those move test accuracy by a few test images (docs/results.md). Two binomial
    standard errors of the base accuracy, 2 * sqrt(p * (1 - p) / n), bound every such drift
    measured so far; a rule of thumb, not a significance test."""
    band = 2 * (old * (1 - old) / test_images) ** 0.5
    images = round((new - old) * test_images)
    verdict = "within the expected spread: drift, not evidence" if abs(new - old) <= band else \
        "**beyond the expected spread**"
    return (f"Test accuracy {old:.2%} → {new:.2%} ({images:+d} of {test_images:,} test images); reruns on "
            f"another machine or seed vary by up to ±{band:.2%} (two binomial standard errors): {verdict}.")


def _metrics_section(diff: dict, base: str, files: list[str]) -> list[str]:
    lines = []
    for path in sorted(files):
        accuracy, images = diff[path].get("accuracy", {}), diff[path].get("test_images", {})
        if all(isinstance(v, (int, float)) for v in (accuracy.get("old"), accuracy.get("new"), images.get("new"))) \
                and accuracy["old"] != accuracy["new"]:
            lines += [spread_verdict(accuracy["old"], accuracy["new"], images["new"]), ""]
        rows = sorted(diff[path].items(), key=lambda item: (item[0].count("."), item[0]))  # headline numbers first
        changed = {k: v for k, v in rows if v.get("old") != v.get("new")}
        if not changed:
            lines += [f"`{path}`: no change.", ""]
            continue
        lines += [f"`{path}`", "", f"| metric | {base} | {NEW} | change |", "|---|---:|---:|---:|"]
        for key, v in changed.items():
            change = f"{v['diff']:+.6g}" if isinstance(v.get("diff"), (int, float)) else "—"
            lines.append(f"| {key} | {_number(v.get('old'))} | {_number(v.get('new'))} | {change} |")
        lines.append("")
    return lines


def _revisions_equal(entries: list[dict]) -> bool:
    """Whether every revision of a plot shows the same thing (same image bytes, same data rows)."""
    if entries[0]["type"] == "image":
        return len(entries) > 1 and len({Path(e["url"]).read_bytes() for e in entries}) == 1
    rows = entries[0]["content"].get("data", {}).get("values", [])
    by_rev = {}
    for row in rows:
        by_rev.setdefault(row.get("rev"), []).append(json.dumps({k: v for k, v in row.items() if k != "rev"}, sort_keys=True))
    return len(by_rev) > 1 and len({tuple(sorted(v)) for v in by_rev.values()}) == 1


def _image(name: str, entry: dict, rev: str, out: Path) -> str:
    """A Markdown image link to the plot, rendered (Vega-Lite) or copied (image) under out/images."""
    target = out / "images" / (f"{_slug(name)}.png" if entry["type"] == "vega" else f"{_slug(rev)}/{_slug(name)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry["type"] == "vega":
        import vl_convert

        target.write_bytes(vl_convert.vegalite_to_png(vl_spec=entry["content"], scale=1))
    else:
        shutil.copyfile(entry["url"], target)
    return f"![{name}]({target.relative_to(out).as_posix()})"


def _plot_markdown(name: str, entries: list[dict], base: str, out: Path) -> list[str]:
    """A plot of both revisions: one chart (Vega-Lite: the revisions are its colours) or two images."""
    if entries[0]["type"] == "vega":
        return [f"**{name}**", "", _image(name, entries[0], NEW, out), ""]
    links = {rev: _image(name, entry, rev, out) for entry in entries for rev in entry["revisions"]}
    return [f"**{name}**", "", f"| {base} | {NEW} |", "|---|---|",
            f"| {links.get(base, '—')} | {links.get(NEW, '—')} |", ""]


def _check(base: str) -> tuple[str, Path]:
    """The base revision's short hash and the DVC root, or an ImagerecError saying what is missing."""
    if importlib.util.find_spec("dvc") is None:
        raise ImagerecError(f"dvc is not installed for {sys.executable} (pip install dvc)")
    if shutil.which("git") is None:
        raise ImagerecError("git not found on PATH")
    if subprocess.run(["git", "rev-parse", "--git-dir"], capture_output=True).returncode != 0:
        raise ImagerecError(f"{Path.cwd()} is not inside a git repository")
    base_sha = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "--short", f"{base}^{{commit}}"],
                              capture_output=True, text=True).stdout.strip()
    if not base_sha:
        raise ImagerecError(f"unknown base revision {base!r} (in CI, check out with fetch-depth: 0)")
    root = subprocess.run([*DVC, "root"], capture_output=True, text=True)
    if root.returncode != 0:
        raise ImagerecError(f"{Path.cwd()} is not inside a DVC repository")
    return base_sha, Path(root.stdout.strip())


def write(base: str, out: Path) -> Path:
    """Compare the workspace with `base`; write out/report.md and out/images/; return report.md's path."""
    base_sha, root = _check(base)
    head = f"`{_run('git', 'rev-parse', '--abbrev-ref', 'HEAD').strip()}` ({_run('git', 'rev-parse', '--short', 'HEAD').strip()})"
    if _run("git", "status", "--porcelain", "--untracked-files=no").strip():
        head += " with uncommitted changes"
    params_file = root / "params.yaml"
    datasets = list((yaml.safe_load(params_file.read_text()) or {}).get("datasets") or {}) if params_file.is_file() else []
    metrics = json.loads(_run("dvc", "metrics", "diff", base, "--all", "--json") or "{}")
    params_md = _run("dvc", "params", "diff", base, "--md").strip()
    lines = [f"# Pipeline report: `{base}` → {NEW}", "", f"Base `{base}` ({base_sha}); {NEW}: {head}.", "",
             "## Parameters", "", params_md if params_md.count("\n") >= 2 else "No parameter changed.", ""]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:  # dvc writes each revision's image plots there
        plots = json.loads(_run("dvc", "plots", "diff", base, "--json", "-o", tmp) or "{}").get("data", {})
        for dataset in sorted({_dataset_of(name, datasets) for name in [*metrics, *plots]},
                              key=lambda d: datasets.index(d) if d in datasets else len(datasets)):
            files = [f for f in metrics if _dataset_of(f, datasets) == dataset]
            lines += [f"## {dataset}", "", "### Metrics", ""]
            lines += _metrics_section(metrics, base, files) if files else ["No metrics.", ""]
            changed, same = [], []
            for name, entries in plots.items():
                if entries and _dataset_of(name, datasets) == dataset:
                    (same if _revisions_equal(entries) else changed).append((name, entries))
            if changed:
                lines += ["### Plots", ""]
                for name, entries in changed:
                    lines += _plot_markdown(name, entries, base, out)
            if same:
                lines += ["<details><summary>Plots identical in both revisions</summary>", ""]
                for name, entries in same:
                    lines += [f"**{name}**", "", _image(name, entries[0], entries[0]["revisions"][0], out), ""]
                lines += ["</details>", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report
