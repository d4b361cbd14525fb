"""Property-based tests (Hypothesis) of every parser of outside bytes: params.yaml, the stage
configs, a mirror's SHA256SUMS, archives, raw datasets (image folders, csvs, npz), image files
and model.json.

Whatever the bytes, a parser returns normally or raises an ImagerecError of one line of at most
MAX_MESSAGE characters, never another exception, and writes nothing outside the output and
temporary folders it is given (each input is read in a sandbox: in/ holds it, out/ and tmp/
may be written, and the working directory and tempfile's folder point into it meanwhile).

The inputs are drawn as small recipes (what to build, which bytes to flip), so that a failing
example prints short. The default profile is small and derandomized, for CI; a long run:
IMAGEREC_FUZZ=long python -m pytest tests/test_fuzz.py
"""
import contextlib
import copy
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import shade_image, write_7z  # noqa: E402

from imagerec import archives, images, layouts, params, sources  # noqa: E402
from imagerec.catalog import DATASET_SOURCES  # noqa: E402
from imagerec.errors import ImagerecError  # noqa: E402

# Not Hypothesis' own "ci" profile, which other test modules may rely on.
settings.register_profile(
    "imagerec-ci", max_examples=40, derandomize=True, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
settings.register_profile("imagerec-long", settings.get_profile("imagerec-ci"), max_examples=5000, derandomize=False)
FUZZ = settings.get_profile(f"imagerec-{os.environ.get('IMAGEREC_FUZZ', 'ci')}")

MAX_MESSAGE = 400
ROOT = Path(__file__).resolve().parents[1]
COMMITTED_PARAMS = (ROOT / "params.yaml").read_bytes()
REAL_SECTIONS = yaml.safe_load(COMMITTED_PARAMS)["datasets"]


# --- the property ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def boxes(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@contextlib.contextmanager
def sandbox(boxes: Path):
    """A fresh folder holding in/ (the inputs), out/ and tmp/ (where the code may write)."""
    base = Path(tempfile.mkdtemp(dir=boxes))
    for name in ("in", "out", "tmp"):
        (base / name).mkdir()
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _state(base: Path) -> dict:
    """What must not change: the folder the sandbox is in, and everything in it but out/ and tmp/."""
    seen = {"..": sorted(os.listdir(base.parent))}
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        if here == base:
            dirnames[:] = [name for name in dirnames if name not in ("out", "tmp")]
        for name in dirnames + filenames:
            info = os.lstat(here / name)
            seen[(here / name).relative_to(base).as_posix()] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return seen


def outcome(base: Path, call):
    """call()'s result, or the ImagerecError it raised, once checked: any other exception
    propagates, the message is one line of at most MAX_MESSAGE characters, and nothing outside
    out/ and tmp/ changed."""
    before, cwd, tempdir = _state(base), os.getcwd(), tempfile.tempdir
    os.chdir(base)  # a relative path written lands in the sandbox, where it is seen
    tempfile.tempdir = str(base / "tmp")
    try:
        result = call()
    except ImagerecError as err:
        result = err
    finally:
        os.chdir(cwd)
        tempfile.tempdir = tempdir
    after = _state(base)
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    assert not changed, f"wrote outside out/ and tmp/: {changed}"
    if isinstance(result, ImagerecError):
        message = str(result)
        assert "\n" not in message and "\r" not in message, f"message of several lines: {message[:MAX_MESSAGE]!r}"
        assert len(message) <= MAX_MESSAGE, f"message of {len(message)} characters: {message[:MAX_MESSAGE]!r}..."
    return result


# --- shared recipes: damaged bytes, awkward encodings, JSON values --------------------------------

MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 2**16)),
    st.tuples(st.just("put"), st.integers(0, 2**16), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("insert"), st.integers(0, 2**16), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 2**16), st.integers(1, 64)),
)
MUTATIONS = st.lists(MUTATION, max_size=4)


def mutate(data: bytes, mutations) -> bytes:
    """Apply ("flip", at, mask), ("cut", at), ("put"/"insert", at, bytes), ("delete", at, count);
    `at` is taken modulo the length, so any number names a place."""
    data = bytearray(data)
    for op, where, *arg in mutations:
        at = where % (len(data) + 1)
        if op == "flip" and at < len(data):
            data[at] ^= arg[0]
        elif op == "cut":
            del data[at:]
        elif op == "put":
            data[at:at + len(arg[0])] = arg[0]
        elif op == "insert":
            data[at:at] = arg[0]
        elif op == "delete":
            del data[at:at + arg[0]]
    return bytes(data)


# Text written in an encoding the reader may not expect, or behind a stray byte-order mark.
ENCODINGS = st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32", "latin-1",
                             "prefix ff fe", "prefix fe ff", "prefix 80"])


def encode(text: str, how: str) -> bytes:
    if how.startswith("prefix "):
        return bytes.fromhex(how.removeprefix("prefix ")) + text.encode()
    return text.encode(how, "replace")


class Raw:
    """A token written into JSON text as it is (json.dumps cannot write it), named in RAW_JSON."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"Raw({self.name!r})"


RAW_JSON = {"Infinity": "Infinity", "-Infinity": "-Infinity", "NaN": "NaN", "1e999": "1e999",
            "5000 digits": "9" * 5000, "-1e-999": "-1e-999", "deep [": "[" * 100_000 + "]" * 100_000,
            "deep {": '{"a":' * 50_000 + "1" + "}" * 50_000, "lone surrogate": '"\\ud800"', "NUL": '"\\u0000"'}


def to_json(value) -> str:
    text = json.dumps(value, default=lambda raw: f"@@{raw.name}@@")
    for name, token in RAW_JSON.items():
        text = text.replace(f'"@@{name}@@"', token)
    return text


def json_values(keys):
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(), st.text(max_size=8),
                        st.sampled_from(sorted(RAW_JSON)).map(Raw))
    return st.recursive(scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(keys, kids, max_size=3),
                        max_leaves=8)


def key_paths(tree: dict, prefix=()) -> list[tuple]:
    paths = []
    for key, value in tree.items():
        paths.append(prefix + (key,))
        if isinstance(value, dict):
            paths += key_paths(value, prefix + (key,))
    return paths


def edits(paths: list[tuple], keys, values):
    """("set", path, value) and ("del", path) edits of a tree: its own keys, or a new key below one."""
    path = st.sampled_from(paths) | st.tuples(st.sampled_from(paths), keys).map(lambda p: p[0] + (p[1],))
    return st.lists(st.tuples(st.just("set"), path, values) | st.tuples(st.just("del"), path), min_size=1, max_size=3)


def edit(tree: dict, changes) -> dict:
    tree = copy.deepcopy(tree)
    for op, path, *value in changes:
        node = tree
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if op == "set":
            node[path[-1]] = value[0]
        else:
            node.pop(path[-1], None)
    return tree


# --- params.yaml ---------------------------------------------------------------------------------

PARAMS_TREE = {"datasets": REAL_SECTIONS}
PARAMS_PATHS = key_paths(PARAMS_TREE)
PARAMS_KEYS = st.sampled_from(sorted({str(path[-1]) for path in PARAMS_PATHS})) | st.text(max_size=8) | st.integers()
YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12), st.binary(max_size=6),
              st.dates(), st.sampled_from(["cnn", "rgb", "grayscale", "folder", "url", "kaggle", "keras", "imagenet"])),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(PARAMS_KEYS, kids, max_size=3), max_leaves=8)
# Scalars and lines that trip YAML's constructors; long ones by name (LONG_YAML), to print short.
YAML_TOKENS = ["2001-13-45", "2001-02-29", "!!int x", "!!float x", "!!int 0x", "!!timestamp 1", "!!binary ===",
               "!!python/object:os.system", "!!set {a, b}", "!!omap [a]", "!!str", "&a x", "*a", "*nope", "<<: 1",
               "<<: [1]", "? [a]\n: 1", "{[a]: 1}", "0b102", "0o9", "1_000", ".nan", "-.inf", "1e400", "0x_", "~",
               "'open", '"\\x"', "|", ">-", "\t", "%YAML 1.1", "---", "...", "@", "`", "- a", "a: b: c", "\x00", "\x85",
               "\u2028", "\ufeff", "\x1b[2J", "5000 digits", "deep [", "deep -", "long key"]
# The committed file's `key: value` lines (a retouched recipe names one by its place in this list).
VALUE_LINES = [i for i, line in enumerate(COMMITTED_PARAMS.decode().split("\n"))
               if re.match(r"\s*[A-Za-z_]+:\s*[^\s#]", line)]
LONG_YAML = {"5000 digits": "9" * 5000, "deep [": "[" * 5000 + "]" * 5000,
             "deep -": "\n".join("  " * i + "-" for i in range(2000)), "long key": "k" * 5000 + ": 1"}


@st.composite
def params_recipes(draw):
    kind = draw(st.sampled_from(["committed", "edited", "retouched", "laughs", "text", "bytes"]))
    if kind == "committed":
        return kind, draw(ENCODINGS), draw(MUTATIONS)
    if kind == "edited":
        return kind, draw(edits(PARAMS_PATHS, PARAMS_KEYS, YAML_VALUES)), draw(ENCODINGS)
    if kind == "retouched":  # the value of a `key: value` line, or a line put in before it, made a token
        line = st.integers(0, len(VALUE_LINES) - 1)
        token = st.sampled_from(YAML_TOKENS) | st.text(max_size=10)
        where = st.sampled_from(["value", "line"])
        return kind, draw(st.lists(st.tuples(line, token, where), min_size=1, max_size=3)), draw(ENCODINGS)
    if kind == "laughs":  # "billion laughs": each level an alias list of the one before
        leaf = draw(st.sampled_from([path for path in PARAMS_PATHS if len(path) > 2]))
        return kind, leaf, draw(st.integers(1, 6)), draw(st.integers(2, 5))
    if kind == "text":
        return kind, draw(st.text(max_size=200)), draw(ENCODINGS)
    return kind, draw(st.binary(max_size=200))


def params_bytes(recipe) -> bytes:
    kind, *rest = recipe
    if kind == "committed":
        how, mutations = rest
        return mutate(encode(COMMITTED_PARAMS.decode(), how), mutations)
    if kind == "edited":
        changes, how = rest
        return encode(yaml.safe_dump(edit(PARAMS_TREE, changes), sort_keys=False), how)
    if kind == "retouched":
        changes, how = rest
        lines = COMMITTED_PARAMS.decode().split("\n")
        for k, token, where in changes:
            at = VALUE_LINES[k]
            key, token = lines[at].split(":", 1)[0], LONG_YAML.get(token, token)
            if where == "value":
                lines[at] = f"{key}: {token}"
            else:
                lines[at] = f"{key[:len(key) - len(key.lstrip())]}{token}\n{lines[at]}"
        return encode("\n".join(lines), how)
    if kind == "laughs":
        leaf, depth, width = rest
        levels = [f"&l0 [{', '.join(['lol'] * width)}]"]
        levels += [f"&l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, depth + 1)]
        text = yaml.safe_dump(edit(PARAMS_TREE, [("set", leaf, "LAUGHS")]), sort_keys=False)
        return text.replace("LAUGHS", f"[{', '.join(levels)}]").encode()
    if kind == "text":
        text, how = rest
        return encode(text, how)
    return rest[0]


@FUZZ
@given(recipe=params_recipes())
@example(recipe=("committed", "utf-16", []))
@example(recipe=("laughs", ("datasets", "mnist", "model", "name"), 6, 5))
@example(recipe=("laughs", ("datasets", "mnist", "model", "name"), 2, 3))
@example(recipe=("retouched", [(0, "2001-13-45", "value")], "utf-8"))
@example(recipe=("retouched", [(0, "deep [", "value")], "utf-8"))
@example(recipe=("retouched", [(0, "!!timestamp 1", "value")], "utf-8"))
@example(recipe=("edited", [("set", ("datasets", "cifar10", "augment", "contrast"),  # an excerpt of 300 characters
                              {"a" * 70: 4.8e204, "b" * 70: {"c" * 70: "d" * 70, 10 ** 33: 1.0e16}})], "utf-8"))
def test_params_yaml_gives_settings_or_a_one_line_error(boxes, recipe):
    with sandbox(boxes) as base:
        path = base / "in" / "params.yaml"
        path.write_bytes(params_bytes(recipe))
        sections = outcome(base, lambda: params.read_sections(path))
        if not isinstance(sections, ImagerecError):
            for name, section in sections.items():
                outcome(base, lambda name=name, section=section: params.resolve(name, section, path=path))


def _stage_configs() -> list[dict]:
    configs = []
    for name, section in REAL_SECTIONS.items():
        configs += params.stage_configs(params.resolve(name, section), fingerprint="0" * 64).values()
    return configs


STAGE_CONFIGS = _stage_configs()
STAGE_PATHS = sorted({path for config in STAGE_CONFIGS for path in key_paths(config)}, key=str)
STAGE_KEYS = st.sampled_from(sorted({str(path[-1]) for path in STAGE_PATHS})) | st.text(max_size=8)


@st.composite
def stage_recipes(draw):
    kind = draw(st.sampled_from(["edited", "mutated", "json", "bytes"]))
    config = st.integers(0, len(STAGE_CONFIGS) - 1)
    if kind == "edited":
        return kind, draw(config), draw(edits(STAGE_PATHS, STAGE_KEYS, json_values(STAGE_KEYS))), draw(ENCODINGS)
    if kind == "mutated":
        return kind, draw(config), draw(MUTATIONS)
    if kind == "json":
        return kind, draw(json_values(STAGE_KEYS)), draw(ENCODINGS)
    return kind, draw(st.binary(max_size=200))


def stage_bytes(recipe) -> bytes:
    kind, *rest = recipe
    if kind == "edited":
        config, changes, how = rest
        return encode(to_json(edit(STAGE_CONFIGS[config], changes)), how)
    if kind == "mutated":
        config, mutations = rest
        return mutate(json.dumps(STAGE_CONFIGS[config], indent=2).encode(), mutations)
    if kind == "json":
        value, how = rest
        return encode(to_json(value), how)
    return rest[0]


@FUZZ
@given(recipe=stage_recipes())
@example(recipe=("bytes", b"\xff\xfe{"))
@example(recipe=("json", Raw("deep ["), "utf-8"))
def test_stage_config_gives_settings_or_a_one_line_error(boxes, recipe):
    with sandbox(boxes) as base:
        path = base / "in" / "train.json"
        path.write_bytes(stage_bytes(recipe))
        outcome(base, lambda: params.load_stage(path))


# --- a mirror's SHA256SUMS -------------------------------------------------------------------------

MIRRORED = DATASET_SOURCES["mnist"]["keras"]
MIRRORED_BYTES = b"a mirror's copy of mnist.npz\n"
SHA256 = hashlib.sha256(MIRRORED_BYTES).hexdigest()
DIGESTS = {"sha256": SHA256, "SHA256": SHA256.upper(), "md5": hashlib.md5(MIRRORED_BYTES).hexdigest(),
           "other sha256": "0" * 64}
MIRROR_PATHS = ["mnist/mnist.npz", "*mnist/mnist.npz", "./mnist/mnist.npz", "mnist//mnist.npz", "mnist/mnist.npz\x00",
                "../mnist/mnist.npz", "/etc/passwd", "mnist/../../x", "mnist/mnist.npz  extra"]


@st.composite
def sums_recipes(draw):
    kind = draw(st.sampled_from(["lines", "mutated", "bytes"]))
    if kind == "lines":
        hexadecimal = st.text("0123456789abcdefABCDEF", max_size=600)
        digest = st.sampled_from(sorted(DIGESTS)) | hexadecimal | st.text(max_size=20)
        path = st.sampled_from(MIRROR_PATHS) | st.text(max_size=20)
        entry = st.tuples(digest, st.sampled_from(["  ", " *", " ", "\t", ""]), path)
        line = entry | st.text(max_size=30)
        newline = st.sampled_from(["\n", "\r\n", "\r", "\x85", "\u2028", "\x0c"])
        return kind, draw(st.lists(line, max_size=5)), draw(newline), draw(ENCODINGS)
    if kind == "mutated":
        return kind, draw(MUTATIONS)
    return kind, draw(st.binary(max_size=200))


def sums_bytes(recipe) -> bytes:
    kind, *rest = recipe
    if kind == "lines":
        lines, newline, how = rest
        text = newline.join(line if isinstance(line, str) else DIGESTS.get(line[0], line[0]) + line[1] + line[2]
                            for line in lines)
        return encode(text, how)
    if kind == "mutated":
        return mutate(f"{DIGESTS['sha256']}  mnist/mnist.npz\n".encode(), rest[0])
    return rest[0]


@FUZZ
@given(recipe=sums_recipes())
@example(recipe=("lines", [("sha256", "  ", "mnist/mnist.npz")], "\n", "utf-16"))
@example(recipe=("lines", [("f" * 600, "  ", "mnist/mnist.npz")], "\n", "utf-8"))
def test_mirror_sha256sums_gives_a_checked_copy_or_a_one_line_error(boxes, recipe):
    with sandbox(boxes) as base:
        root = base / "in" / "mirror"
        (root / "mnist").mkdir(parents=True)
        (root / "mnist" / "mnist.npz").write_bytes(MIRRORED_BYTES)
        (root / "SHA256SUMS").write_bytes(sums_bytes(recipe))
        record = outcome(base, lambda: sources.fetch_file(MIRRORED, "mnist", base / "out", sources.Mirror(root)))
        if not isinstance(record, ImagerecError):
            assert (base / "out" / record["file"]).read_bytes() == MIRRORED_BYTES


# --- archives and raw datasets ----------------------------------------------------------------------

CLASSES = ["cats", "dogs"]
# Four images a class: the fewest that a 0.25/0.25 stratified split of two classes accepts.
GOOD_MEMBERS = [(f"pets/{name}/{k}.png", f"png{c}", "file") for c, name in enumerate(CLASSES) for k in range(4)]
HOSTILE_NAMES = ["../x.png", "../../x.png", "../../../x.png", "/abs.png", "{base}/escaped.png", "cats/../../x.png",
                 "..\\x.png", "C:/x.png", "C:x.png", "\\\\server\\share\\x.png", "cats/x\x00.png",
                 "cats/x\x00/../../y.png", "cats/" + "a" * 300 + ".png", "a/" * 150 + "x.png", "", ".", "./cats/x.png",
                 "cats//x.png", "cats/x\n.png", "cats/x\r.png", "cats/\u202egnp.png", "cats/x.png/", "~/x.png",
                 "__MACOSX/cats/x.png", "cats/.x.png", "pets/cats/0.png", "x:y/z.png", "pets/cats.zip",
                 "pets/birds.zip", "cats/\udcff.png", "train/cat.1.png", "test1/1.png", "cifar-10-batches-py/x"]
NAMES = st.sampled_from(HOSTILE_NAMES) | st.sampled_from([name for name, _, _ in GOOD_MEMBERS]) | st.text(max_size=12)
MEMBER_TYPES = ["file", "file", "file", "dir", "symlink", "hardlink", "fifo", "chardev"]
LINK_TARGETS = ["../x", "/etc/passwd", "pets/cats/0.png", "{base}/escaped.png", "pets"]
# labels.csv / train.csv texts: a header the layouts know, then rows naming members, or not.
CSV_HEADERS = ["id,label", "filename,class", "image,category", "file,label,extra", "label,pixel0,pixel1,pixel2,pixel3",
               "label", "\ufeffid,label", "id;label"]
CSV_CELLS = st.sampled_from(["0", "1", "cats", "dogs", "0.png", "pets/cats/0", "pets/dogs/1.png", "255", "256", "-1",
                             "", " ", '"', "x,y", "nan", "1e3", "\x00"]) | st.text(max_size=6)
CSV_TEXTS = st.builds(lambda header, rows, newline: newline.join([header] + [",".join(row) for row in rows]),
                      st.sampled_from(CSV_HEADERS) | st.text(max_size=20),
                      st.lists(st.lists(CSV_CELLS, max_size=6), max_size=6), st.sampled_from(["\n", "\r\n", "\r"]))
DATA = (st.sampled_from(["png0", "png1", "jpeg", "gif", "zip", "csv"]) | st.binary(max_size=32)
        | CSV_TEXTS.map(str.encode))
KINDS = ["zip", "zip-deflated", "zip-bzip2", "zip-lzma", "tar", "tar.gz", "tar.bz2", "tar.xz", "7z"]


def _png(label: int) -> bytes:
    return shade_image(label, size=8)


def _nested_zip() -> bytes:  # a class archive: pets/birds.zip/0.png names class birds
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for k in range(4):
            zf.writestr(f"{k}.png", _png(2))
    return buffer.getvalue()


SYMBOLIC_DATA = {"png0": _png(0), "png1": _png(1), "jpeg": shade_image(0, size=8, fmt="JPEG"),
                 "gif": shade_image(1, size=8, fmt="GIF"), "zip": _nested_zip(),
                 "csv": b"id,label\n" + b"".join(f"pets/{c}/{k},{c}\n".encode() for c in CLASSES for k in range(4))}


@st.composite
def archive_recipes(draw):
    """{kind, renames: [(member, name)], extras: [(name, data, type)], links, tar_format, mutations}."""
    return {
        "kind": draw(st.sampled_from(KINDS)),
        "renames": draw(st.lists(st.tuples(st.integers(0, len(GOOD_MEMBERS) - 1), NAMES), max_size=2)),
        "extras": draw(st.lists(st.tuples(NAMES, DATA, st.sampled_from(MEMBER_TYPES)), max_size=2)),
        "link": draw(st.sampled_from(LINK_TARGETS)),
        "tar_format": draw(st.sampled_from(["gnu", "pax", "ustar"])),
        "mutations": draw(MUTATIONS),
    }


def _zip_bytes(members, compression: int) -> bytes:
    modes = {"file": 0o100644, "dir": 0o040755, "symlink": 0o120777, "hardlink": 0o100644, "fifo": 0o010644,
             "chardev": 0o020644}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": wanted here
        for name, data, kind in members:
            info = zipfile.ZipInfo("member")
            info.filename = name  # set afterwards: ZipInfo() would cut a name at a NUL
            info.compress_type, info.external_attr = compression, modes[kind] << 16
            zf.writestr(info, data)
    return buffer.getvalue()


def _tar_bytes(members, compression: str, tar_format: int, link: str) -> bytes:
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
             "fifo": tarfile.FIFOTYPE, "chardev": tarfile.CHRTYPE}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}", format=tar_format) as tf:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.type, info.size = types[kind], len(data) if kind == "file" else 0
            info.linkname = link if kind in ("symlink", "hardlink") else ""
            tf.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return buffer.getvalue()


def archive_bytes(recipe, base: Path) -> bytes:
    """The archive a recipe describes; "{base}" in a name is the sandbox's path."""
    members = list(GOOD_MEMBERS)
    for index, name in recipe["renames"]:
        members[index] = (name, *members[index][1:])
    members += recipe["extras"]
    members = [(name.replace("{base}", str(base)), SYMBOLIC_DATA.get(data, data) if isinstance(data, str) else data,
                kind) for name, data, kind in members]
    kind = recipe["kind"]
    try:
        if kind.startswith("zip"):
            compression = {"zip": zipfile.ZIP_STORED, "zip-deflated": zipfile.ZIP_DEFLATED,
                           "zip-bzip2": zipfile.ZIP_BZIP2, "zip-lzma": zipfile.ZIP_LZMA}[kind]
            data = _zip_bytes(members, compression)
        elif kind.startswith("tar"):
            tar_format = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT, "ustar": tarfile.USTAR_FORMAT}
            data = _tar_bytes(members, kind.removeprefix("tar").lstrip("."), tar_format[recipe["tar_format"]],
                              recipe["link"].replace("{base}", str(base)))
        else:  # py7zr writes regular files only
            with tempfile.TemporaryDirectory(dir=base / "tmp") as scratch:
                path = Path(scratch) / "x.7z"
                write_7z(path, {name: data for name, data, _ in members})
                data = path.read_bytes()
    except Exception:  # noqa: BLE001 - the writers are not under test
        reject()  # a name the writer itself refuses: no archive to read
    return mutate(data, recipe["mutations"])


def read_archive(path: Path, scratch: Path) -> None:
    archives.list_entries(path)
    for _, _, open_member in archives.iter_members(path, scratch=scratch):
        archives.read_member(open_member, 2**16)


ARCHIVE = {"kind": "zip", "renames": [], "extras": [], "link": "../x", "tar_format": "gnu", "mutations": []}


@FUZZ
@given(recipe=archive_recipes())
@example(recipe={**ARCHIVE, "renames": [(0, "")]})
@example(recipe={**ARCHIVE, "kind": "tar.gz", "renames": [(0, "../x.png")]})
@example(recipe={**ARCHIVE, "kind": "tar", "extras": [("evil", "png0", "symlink")], "link": "{base}/escaped.png"})
@example(recipe={**ARCHIVE, "mutations": [("cut", 300)]})
def test_archive_members_are_read_or_refused_in_one_line(boxes, recipe):
    with sandbox(boxes) as base:
        path = base / "in" / "data.bin"
        path.write_bytes(archive_bytes(recipe, base))
        outcome(base, lambda: read_archive(path, base / "out"))


def write_raw(base: Path, name: str, data: bytes) -> Path:
    """A fetch output in in/raw: the file, and source.json listing it."""
    raw = base / "in" / "raw"
    raw.mkdir()
    (raw / name).write_bytes(data)
    (raw / "source.json").write_text(json.dumps({"files": [{"file": name}]}))
    return raw


def read_dataset(base: Path, raw: Path, name: str, size: int, color_mode: str, max_per_class: int) -> None:
    """Every reader of a raw dataset: detect_format and survey of the file, prepare (read_raw) of the folder."""
    outcome(base, lambda: layouts.detect_format(raw / name))
    outcome(base, lambda: layouts.survey(raw / name))
    outcome(base, lambda: layouts.prepare(raw, base / "out", size, color_mode, val_fraction=0.25, test_fraction=0.25,
                                          max_per_class=max_per_class, seed=0))


RAW_NAMES = ["pets.zip", "pets.tar.gz", "pets.7z", "pets.bin", "train.csv", "pets.npz"]
SIZES = st.sampled_from([8, 16, 28])
COLOR_MODES = st.sampled_from(["rgb", "grayscale"])


@FUZZ
@given(recipe=archive_recipes() | st.tuples(st.just("csv"), CSV_TEXTS, MUTATIONS) | st.tuples(st.just("bytes"), DATA),
       name=st.sampled_from(RAW_NAMES), size=SIZES, color_mode=COLOR_MODES, max_per_class=st.integers(0, 3))
@example(recipe=ARCHIVE, name="pets.zip", size=8, color_mode="rgb", max_per_class=0)
@example(recipe={**ARCHIVE, "renames": [(0, "{base}/escaped.png")]}, name="pets.zip", size=8, color_mode="rgb",
         max_per_class=0)
@example(recipe=("csv", "label,pixel0,pixel1,pixel2,pixel3\n0,1,2,3,256\n", []), name="train.csv", size=8,
         color_mode="grayscale", max_per_class=0)
def test_raw_dataset_is_prepared_or_refused_in_one_line(boxes, recipe, name, size, color_mode, max_per_class):
    with sandbox(boxes) as base:
        if isinstance(recipe, dict):
            data = archive_bytes(recipe, base)
        elif recipe[0] == "csv":
            data = mutate(recipe[1].encode(), recipe[2])
        else:
            data = SYMBOLIC_DATA.get(recipe[1], recipe[1]) if isinstance(recipe[1], str) else recipe[1]
        read_dataset(base, write_raw(base, name, data), name, size, color_mode, max_per_class)


# --- npz datasets -----------------------------------------------------------------------------

X_DTYPES = ["uint8"] * 6 + ["int8", "uint16", "int64", "float32", "float64", "bool", "<U1", "S1", "complex64", "object"]
Y_DTYPES = ["uint8", "int64", "int8", "uint64", "float16", "float64", "bool", "<U3", "S3", "complex64", "datetime64[D]",
            "timedelta64[s]", "V2", "object"]


@st.composite
def x_specs(draw):
    """(dtype, shape, fill): mostly (N, side, side[, channels]), some any rank."""
    n = draw(st.integers(0, 6))
    side, channels = draw(st.sampled_from([1, 2, 5, 8, 28])), draw(st.integers(1, 5))
    shape = draw(st.sampled_from([(n, side, side), (n, side, side, channels)])
                 | st.lists(st.integers(0, 5), min_size=1, max_size=5).map(tuple))
    return draw(st.sampled_from(X_DTYPES)), shape, draw(st.sampled_from(["random", "zeros", "max"]))


@st.composite
def y_specs(draw):
    """(dtype, values) cast from small numbers, or (dtype, bytes) as raw bit patterns."""
    dtype = draw(st.sampled_from(Y_DTYPES))
    if draw(st.booleans()):
        return dtype, draw(st.lists(st.integers(-3, 300) | st.sampled_from([float("nan"), float("inf"), 0.5]),
                                    max_size=8))
    size = np.dtype(dtype).itemsize if dtype != "object" else 1
    return dtype, draw(st.binary(max_size=8 * size))


def x_array(spec) -> np.ndarray:
    dtype, shape, fill = spec
    if dtype == "object":
        return np.full(shape, None, dtype=object)
    count, itemsize = int(np.prod(shape)), np.dtype(dtype).itemsize
    if fill == "random":
        raw = np.random.default_rng(0).integers(0, 256, count * itemsize, dtype=np.uint8).tobytes()
    else:
        raw = (b"\x00" if fill == "zeros" else b"\xff") * (count * itemsize)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def y_array(spec) -> np.ndarray:
    dtype, values = spec
    if isinstance(values, bytes):
        if dtype == "object":
            return np.array(list(values), dtype=object)
        usable = len(values) - len(values) % np.dtype(dtype).itemsize
        return np.frombuffer(values[:usable], dtype=dtype).copy()
    with np.errstate(all="ignore"):
        return np.array(values).astype(dtype)


NPZ_KEYS = ["x_train", "y_train", "x_test", "y_test", "x_val", "a/b", "x_train.npy"]


@st.composite
def npz_recipes(draw):
    keys = draw(st.lists(st.sampled_from(NPZ_KEYS), unique=True, max_size=5) | st.just(["x_train", "y_train"])
                | st.just(["x_train", "y_train", "x_test", "y_test"]))
    arrays = {key: draw(x_specs() if key.startswith("x") or key == "a/b" else y_specs()) for key in keys}
    return arrays, draw(st.booleans()), draw(MUTATIONS)


def npz_bytes(recipe) -> bytes:
    arrays, compressed, mutations = recipe
    built = {}
    for key, spec in arrays.items():
        try:
            built[key] = x_array(spec) if len(spec) == 3 else y_array(spec)
        except (ValueError, TypeError, OverflowError):
            reject()  # values that make no array of the dtype
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **built)
    return mutate(buffer.getvalue(), mutations)


@FUZZ
@given(recipe=npz_recipes(), size=SIZES, color_mode=COLOR_MODES, max_per_class=st.integers(0, 3))
@example(recipe=({"x_train": ("uint8", (8, 8, 8), "random"), "y_train": ("uint8", [0, 1] * 4)}, False, []),
         size=8, color_mode="grayscale", max_per_class=0)
@example(recipe=({"x_train": ("uint8", (8, 8, 8, 2), "random"), "y_train": ("int64", [0, 1, 0])}, False, []),
         size=8, color_mode="rgb", max_per_class=0)
@example(recipe=({"x_train": ("uint8", (0, 1, 1), "random"), "y_train": ("uint8", b"")}, True, [("flip", 256, 1)]),
         size=8, color_mode="rgb", max_per_class=0)
# The local header's name length (offset 26) made 255: zipfile's message quotes 255 bytes of it.
@example(recipe=({"x_train": ("uint8", (0, 1, 1), "random"), "y_train": ("uint8", b"")}, False, [("put", 26, b"\xff")]),
         size=8, color_mode="rgb", max_per_class=0)
def test_npz_dataset_is_prepared_or_refused_in_one_line(boxes, recipe, size, color_mode, max_per_class):
    with sandbox(boxes) as base:
        raw = write_raw(base, "data.npz", npz_bytes(recipe))
        read_dataset(base, raw, "data.npz", size, color_mode, max_per_class)


# --- image files -------------------------------------------------------------------------------

IMAGE_FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]
IMAGE_MODES = ["RGB", "L", "RGBA", "P", "1", "LA", "I;16", "I", "F", "CMYK"]


@st.composite
def image_recipes(draw):
    if draw(st.integers(0, 4)) == 0:
        return "bytes", draw(st.binary(max_size=300))
    return ("image", draw(st.sampled_from(IMAGE_FORMATS)), draw(st.sampled_from(IMAGE_MODES)),
            draw(st.integers(1, 24)), draw(st.integers(1, 24)), draw(st.none() | st.integers(0, 9)), draw(MUTATIONS))


def image_bytes(recipe) -> bytes:
    if recipe[0] == "bytes":
        return recipe[1]
    _, fmt, mode, width, height, orientation, mutations = recipe
    picture = Image.fromarray(np.random.default_rng(width * height).integers(0, 256, (height, width, 3), np.uint8))
    options = {}
    if orientation is not None:
        options["exif"] = Image.Exif()
        options["exif"][0x0112] = orientation
    buffer = io.BytesIO()
    for attempt in (picture.convert(mode), picture):  # RGB where the format cannot hold the mode
        try:
            buffer.seek(0)
            buffer.truncate()
            attempt.save(buffer, fmt, **options)
            break
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return mutate(buffer.getvalue(), mutations)


@FUZZ
@given(recipe=image_recipes(), size=st.integers(8, 64), color_mode=COLOR_MODES)
@example(recipe=("image", "PNG", "RGBA", 16, 16, 6, []), size=8, color_mode="grayscale")
@example(recipe=("image", "JPEG", "RGB", 16, 16, None, [("cut", 300)]), size=8, color_mode="rgb")
@example(recipe=("bytes", b"GIF89a\xff\xff\xff\xff"), size=8, color_mode="rgb")
def test_image_bytes_decode_to_a_square_array_or_bad_image(boxes, recipe, size, color_mode):
    with sandbox(boxes) as base:
        data = image_bytes(recipe)
        array = outcome(base, lambda: images.decode(data, size, color_mode))
        if not isinstance(array, ImagerecError):
            assert array.shape == (size, size, 1 if color_mode == "grayscale" else 3) and array.dtype == np.uint8
        else:
            assert isinstance(array, images.BadImage)


# --- model.json --------------------------------------------------------------------------------

CARD = {"dataset": "tiny", "classes": ["a", "b"], "input_shape": [8, 8, 1], "color_mode": "grayscale"}
CARD_PATHS = key_paths(CARD)
CARD_KEYS = st.sampled_from(["dataset", "classes", "input_shape", "color_mode", "params", "data"]) | st.text(max_size=6)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer model for 8x8 grayscale images and two classes, saved as the pipeline saves one."""
    import keras

    from imagerec import models

    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    model_dir = tmp_path_factory.mktemp("tiny_model")
    models.save(keras.Model(inputs, outputs), model_dir, CARD)
    return model_dir / models.MODEL_FILE


@st.composite
def card_recipes(draw):
    kind = draw(st.sampled_from(["edited", "mutated", "json", "bytes"]))
    if kind == "edited":
        values = json_values(CARD_KEYS) | st.sampled_from(["rgb", "grayscale", "\n", "x" * 1000, "a\nb"])
        changes = edits(CARD_PATHS, CARD_KEYS, values)
        side = (st.integers(-2, 2**40) | st.sampled_from([8.0, 8.5, "8", True, None])
                | st.sampled_from(sorted(RAW_JSON)).map(Raw))
        shape = st.none() | st.lists(side, max_size=4)
        return kind, draw(changes), draw(shape), draw(ENCODINGS)
    if kind == "mutated":
        return kind, draw(MUTATIONS)
    if kind == "json":
        return kind, draw(json_values(CARD_KEYS)), draw(ENCODINGS)
    return kind, draw(st.binary(max_size=100))


def card_bytes(recipe) -> bytes:
    kind, *rest = recipe
    if kind == "edited":
        changes, shape, how = rest
        card = edit(CARD, changes)
        if shape is not None:
            card["input_shape"] = shape
        return encode(to_json(card), how)
    if kind == "mutated":
        return mutate(json.dumps(CARD).encode(), rest[0])
    if kind == "json":
        value, how = rest
        return encode(to_json(value), how)
    return rest[0]


@FUZZ
@given(recipe=card_recipes())
@example(recipe=("bytes", b"\x80"))
@example(recipe=("edited", [("set", ("color_mode",), ["rgb"])], [Raw("Infinity")], "utf-8"))
@example(recipe=("json", Raw("deep ["), "utf-8"))
def test_model_card_gives_a_classifier_or_a_one_line_error(boxes, tiny_model, recipe):
    from imagerec.inference import Classifier  # imports TensorFlow

    with sandbox(boxes) as base:
        model_dir = base / "in" / "model"
        model_dir.mkdir()
        shutil.copy(tiny_model, model_dir / tiny_model.name)
        (model_dir / "model.json").write_bytes(card_bytes(recipe))
        outcome(base, lambda: Classifier(model_dir))
