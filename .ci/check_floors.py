#!/usr/bin/env python3
"""Check pyproject.toml's dependency floors against PyPI's published vulnerabilities.

    .venv/bin/python .ci/check_floors.py          # per dependency: walk the releases from the floor
                                                  # up, print the first with no published vulnerability
                                                  # and the ids of those skipped
    .venv/bin/python .ci/check_floors.py --check  # exit 1, listing them, if a floor release has any

The data is PyPI's JSON API, https://pypi.org/pypi/<name>/<version>/json, field "vulnerabilities"
(OSV records: id, aliases, fixed_in). Pre-releases and fully yanked releases are not walked. Run it
with the project's venv to see the installed versions next to the floors. Standard library only.
Exit codes: 0 done (--check: every floor clean), 1 (--check) a floor has a known vulnerability,
2 PyPI could not be asked or pyproject.toml could not be read.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PYPI = "https://pypi.org/pypi"
ROOT = Path(__file__).resolve().parent.parent
REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(?:;\s*(.*?))?\s*$")
VERSION = re.compile(
    r"^(?:(\d+)!)?(\d+(?:\.\d+)*)"            # epoch, release
    r"(?:[-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?(\d*))?"  # pre-release
    r"(?:(?:-(\d+))|(?:[-_.]?(post|rev|r)[-_.]?(\d*)))?"       # post-release
    r"(?:[-_.]?(dev)[-_.]?(\d*))?"            # dev release
    r"(?:\+[a-z0-9._-]+)?$",
    re.IGNORECASE,
)


class Unreachable(Exception):
    pass


def version_key(text: str):
    """A sort key for a PEP 440 version, or None for one this parser does not know."""
    m = VERSION.match(text.strip())
    if not m:
        return None
    epoch, release, pre_l, pre_n, post_dash, post_l, post_n, dev_l, dev_n = m.groups()
    rel = tuple(int(p) for p in release.split("."))
    while len(rel) > 1 and rel[-1] == 0:
        rel = rel[:-1]
    if pre_l:
        pre = ({"alpha": "a", "beta": "b", "c": "rc", "pre": "rc", "preview": "rc"}.get(pre_l.lower(), pre_l.lower()), int(pre_n or 0))
    else:
        pre = ("~",) if not dev_l or post_dash or post_l else ("",)  # final sorts after a/b/rc; X.devN before X.a
    post = int(post_dash or post_n or 0) if (post_dash or post_l) else -1
    dev = int(dev_n or 0) if dev_l else float("inf")
    return (int(epoch or 0), rel, pre, post, dev)


def is_final(text: str) -> bool:
    m = VERSION.match(text.strip())
    return bool(m) and not m.group(3) and not m.group(9)


def fetch(index: str, *parts: str) -> dict:
    url = "/".join([index.rstrip("/"), *(urllib.parse.quote(p) for p in parts), "json"])
    req = urllib.request.Request(url, headers={"User-Agent": "imagerec-check-floors", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        raise Unreachable(f"{url} answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise Unreachable(f"{url}: {getattr(e, 'reason', e)}") from None


def requirements(pyproject: Path) -> list[tuple[str, str]]:
    """(group, requirement) for [project] dependencies and every optional group."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    out = [("runtime", r) for r in project.get("dependencies", [])]
    for group, reqs in project.get("optional-dependencies", {}).items():
        out += [(f"[{group}]", r) for r in reqs]
    return out


def floor_of(spec: str) -> str | None:
    floors = [s.strip()[2:].strip() for s in spec.split(",") if s.strip().startswith(">=")]
    return floors[0] if floors else None


def installed(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def releases_from(index: str, name: str, floor: str) -> list[str]:
    """Final, not fully yanked releases >= floor, oldest first."""
    data = fetch(index, name)
    lo = version_key(floor)
    out = []
    for v, files in data.get("releases", {}).items():
        key = version_key(v)
        if key is None or not is_final(v) or key < lo:
            continue
        if not files or all(f.get("yanked") for f in files):
            continue
        out.append(v)
    return sorted(out, key=version_key)


def vulns(index: str, name: str, version: str) -> list[dict]:
    data = fetch(index, name, version)
    return [v for v in data.get("vulnerabilities", []) if not v.get("withdrawn")]


def label(v: dict) -> str:
    cves = [a for a in v.get("aliases", []) if a.startswith("CVE-")]
    fixed = ",".join(v.get("fixed_in") or []) or "none"
    return f"{v.get('id')}{' (' + ', '.join(cves) + ')' if cves else ''} fixed in {fixed}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check each floor release; exit 1 listing any vulnerability")
    ap.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    ap.add_argument("--index", default=PYPI, help=f"PyPI's JSON API root (default {PYPI})")
    args = ap.parse_args(argv)
    try:
        reqs = requirements(args.pyproject)
    except (OSError, tomllib.TOMLDecodeError, KeyError) as e:
        print(f"error: cannot read {args.pyproject}: {e}", file=sys.stderr)
        return 2

    bad = []
    try:
        for group, req in reqs:
            m = REQ.match(req)
            if not m:
                print(f"{group:8} {req}: not understood, skipped")
                continue
            name, _, spec, marker = m.groups()
            floor = floor_of(spec)
            where = f"  ; {marker}" if marker else ""
            head = f"{group:8} {name}{spec}{where}  (installed {installed(name)})"
            if floor is None:
                print(f"{head}: no >= floor, skipped")
                continue
            rels = releases_from(args.index, name, floor)
            if not rels:
                print(f"{head}: no release >= {floor} on PyPI")
                bad.append(f"{name}>={floor}: no release")
                continue
            if args.check:
                found = vulns(args.index, name, rels[0])
                print(f"{head}: floor release {rels[0]}: " + ("; ".join(map(label, found)) if found else "none known"))
                if found:
                    bad.append(f"{name} {rels[0]}: " + ", ".join(v["id"] for v in found))
                continue
            skipped: dict[str, dict] = {}
            first = None
            for v in rels:
                found = vulns(args.index, name, v)
                if not found:
                    first = v
                    break
                for x in found:
                    skipped.setdefault(x["id"], x)
            if first is None:
                print(f"{head}: every release from {rels[0]} to {rels[-1]} has a published vulnerability")
                bad.append(f"{name}: no clean release")
            elif first == rels[0]:
                print(f"{head}: floor release {first} has none known: keep")
            else:
                inst = installed(name)
                note = ""
                if inst != "-" and version_key(inst) < version_key(first):
                    note = f"  NOT satisfied by the installed {inst}"
                print(f"{head}: first release with none known: {first} -> {name}>={first}{note}")
                for x in sorted(skipped.values(), key=lambda x: x["id"]):
                    print(f"         skipped {label(x)}")
    except Unreachable as e:
        print(f"error: cannot ask PyPI: {e}", file=sys.stderr)
        return 2
    if args.check:
        if bad:
            print("floors with a known vulnerability: " + "; ".join(bad))
            return 1
        print(f"ok: {len(reqs)} floors, none with a published vulnerability")
    return 0


if __name__ == "__main__":
    sys.exit(main())
