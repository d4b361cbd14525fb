"""Where the bytes come from: the registry of official sources, downloads, the mirror, Kaggle.

Every file is checked against a sha256 before it is kept: the published one for official
downloads, the mirror's SHA256SUMS for mirror copies. A file that does not match is deleted,
never renamed into place.
"""
import contextlib
import hashlib
import io
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ImagerecError

MIRROR_ENV = "IMAGEREC_MIRROR"


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    url: str
    sha256: str | None  # None: no published checksum; the first download's is recorded (trust on first use)
    # Names under which a mirror may hold this file, best first. A mirror may hold a stand-in
    # in another format (e.g. CIFAR-10 as an image-folder archive); preprocess reads either.
    mirror_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class KaggleCompetition:
    competition: str
    member: str  # the labelled archive inside the competition's download
    filename: str


DATASET_SOURCES: dict[str, dict[str, RemoteFile | KaggleCompetition]] = {
    "mnist": {
        "keras": RemoteFile(
            "mnist.npz",
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
            "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
            mirror_names=("mnist.npz",),
        ),
    },
    "cifar10": {
        "toronto": RemoteFile(
            "cifar-10-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            mirror_names=("cifar-10-python.tar.gz", "cifar10_jpeg_full.tar.gz"),
        ),
    },
    "cats_vs_dogs": {
        "tensorflow": RemoteFile(
            "cats_and_dogs_filtered.zip",
            "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",
            None,
            mirror_names=("cats_and_dogs_filtered.zip",),
        ),
        "petimages": RemoteFile(
            "kagglecatsanddogs_5340.zip",
            "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip",
            None,
            mirror_names=("kagglecatsanddogs_5340.zip",),
        ),
        "kaggle": KaggleCompetition("dogs-vs-cats", member="train.zip", filename="dogs-vs-cats-train.zip"),
    },
}

_MOBILENET_V2_NO_TOP = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
PRETRAINED_WEIGHTS: dict[tuple[str, str], RemoteFile] = {
    ("mobilenet_v2", "imagenet"): RemoteFile(
        _MOBILENET_V2_NO_TOP,
        f"https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/{_MOBILENET_V2_NO_TOP}",
        None,
        mirror_names=(_MOBILENET_V2_NO_TOP,),
    ),
}
WEIGHTS_MIRROR_FOLDER = "weights"


class ChecksumError(ImagerecError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, expected: str | None, what: str) -> str:
    actual = sha256_of(path)
    if expected is not None and actual != expected:
        path.unlink()
        raise ChecksumError(f"{what}: sha256 mismatch (expected {expected}, got {actual}); file discarded")
    return actual


class Mirror:
    """A local directory read instead of the network: `<root>/<folder>/<file>` plus a
    `SHA256SUMS` list (sha256sum format, paths relative to root) that every copy must match."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        sums = self.root / "SHA256SUMS"
        if not sums.is_file():
            raise ImagerecError(f"mirror {self.root}: no SHA256SUMS file (is {MIRROR_ENV} right?)")
        self.checksums = {}
        for number, line in enumerate(sums.read_text().splitlines(), 1):
            if line.strip():
                fields = line.split(maxsplit=1)
                if len(fields) != 2:
                    raise ImagerecError(f"mirror {self.root}: SHA256SUMS line {number} is not '<sha256>  <path>'")
                self.checksums[fields[1].strip().lstrip("*")] = fields[0].lower()

    def find(self, folder: str, names: tuple[str, ...]) -> str | None:
        for name in names:
            if f"{folder}/{name}" in self.checksums:
                return name
        return None

    def copy(self, folder: str, name: str, dest: Path) -> str:
        relpath = f"{folder}/{name}"
        src = self.root / relpath
        if not src.is_file():
            raise ImagerecError(f"mirror {self.root}: {relpath} is listed in SHA256SUMS but missing")
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(src, tmp)
        digest = _verify(tmp, self.checksums[relpath], f"mirror file {src}")
        os.replace(tmp, dest)
        return digest


def mirror_from_env() -> Mirror | None:
    root = os.environ.get(MIRROR_ENV)
    return Mirror(root) if root else None


def download(url: str, dest: Path, sha256: str | None, retries: int = 3, timeout: float = 60) -> str:
    """Download `url` to `dest` with progress and retries; keep it only if the checksum matches."""
    import requests
    from tqdm import tqdm

    tmp = dest.with_name(dest.name + ".part")
    for attempt in range(1, retries + 1):
        try:
            with requests.get(url, stream=True, timeout=timeout) as response:
                response.raise_for_status()
                total = int(response.headers.get("content-length") or 0)
                with open(tmp, "wb") as f, tqdm(total=total or None, unit="B", unit_scale=True, desc=dest.name) as bar:
                    for chunk in response.iter_content(2**20):
                        f.write(chunk)
                        bar.update(len(chunk))
            if total and tmp.stat().st_size != total:
                raise requests.ConnectionError(f"truncated: got {tmp.stat().st_size} of {total} bytes")
            break
        except requests.HTTPError as err:
            tmp.unlink(missing_ok=True)
            status = err.response.status_code if err.response is not None else "?"
            if attempt == retries or (isinstance(status, int) and status < 500):
                raise ImagerecError(f"download failed: {url}: HTTP {status}") from None
        except requests.RequestException as err:  # refused, reset, timed out, cut off mid-body
            tmp.unlink(missing_ok=True)
            if attempt == retries:
                reason = " ".join(str(err).split())[:200]
                raise ImagerecError(
                    f"cannot download {url} ({reason}); offline? point {MIRROR_ENV} at a local mirror"
                ) from None
        time.sleep(2**attempt)
    digest = _verify(tmp, sha256, f"download {url}")
    os.replace(tmp, dest)
    return digest


def _kaggle_download(source: KaggleCompetition, dest: Path) -> str:
    # Importing `kaggle` authenticates at once and prints a help text to stdout when no
    # credentials exist; authenticate() then raises SystemExit. Keep both contained.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except (SystemExit, Exception):
        raise ImagerecError(
            "Kaggle credentials not found: save your API token as ~/.kaggle/access_token "
            "(or set KAGGLE_API_TOKEN), or choose another cats_vs_dogs.fetch.source"
        ) from None
    from .archives import extract_member

    workdir = dest.parent / ".kaggle-download"
    workdir.mkdir(exist_ok=True)
    try:
        api.competition_download_files(source.competition, path=str(workdir), quiet=False)
        bundle = workdir / f"{source.competition}.zip"
        if not bundle.is_file():
            raise ImagerecError(f"Kaggle download of {source.competition!r} produced no {bundle.name}")
        extract_member(bundle, source.member, dest)
    except ImagerecError:
        raise
    except Exception as err:
        raise ImagerecError(
            f"Kaggle download of {source.competition!r} failed: {' '.join(str(err).split())[:200]} "
            "(have you accepted the competition's rules on kaggle.com?)"
        ) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return sha256_of(dest)


def fetch_file(source: RemoteFile | KaggleCompetition, mirror_folder: str, out_dir: Path, mirror: Mirror | None) -> dict:
    """Get one source file into `out_dir`; return what was fetched, for the record."""
    if isinstance(source, KaggleCompetition):
        dest = out_dir / source.filename
        digest = _kaggle_download(source, dest)
        return {"file": dest.name, "origin": f"kaggle competition {source.competition}", "sha256": digest}
    if mirror is not None:
        name = mirror.find(mirror_folder, source.mirror_names)
        if name is None:
            wanted = ", ".join(f"{mirror_folder}/{n}" for n in source.mirror_names)
            raise ImagerecError(f"mirror {mirror.root}: SHA256SUMS lists none of {wanted}")
        digest = mirror.copy(mirror_folder, name, out_dir / name)
        return {"file": name, "origin": "mirror", "sha256": digest}
    dest = out_dir / source.filename
    digest = download(source.url, dest, source.sha256)
    record = {"file": dest.name, "origin": source.url, "sha256": digest}
    if source.sha256 is None:
        record["note"] = "no published checksum: this first download's sha256 is recorded (trust on first use)"
    return record
