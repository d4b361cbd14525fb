"""Where the bytes come from: the registry of official sources, downloads, the mirror, Kaggle,
local folders and URLs named in params.

Every file is checked before it is kept: against the published checksum for official
downloads, the mirror's SHA256SUMS for mirror copies, and, where nobody publishes one, the
sha256 of the first download recorded in a small JSON file kept in git (trust on first use).
A file that does not match is deleted, never renamed into place.
"""
import contextlib
import hashlib
import io
import os
import re
import shutil
import tarfile
import time
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from . import archives
from .catalog import DATASET_SOURCES, KaggleSource, RemoteFile, builtin_sources
from .errors import ImagerecError
from .files import read_json, write_json

MIRROR_ENV = "IMAGEREC_MIRROR"
SOURCE_RECORD = "source.json"  # what was fetched, beside the fetched files
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class ChecksumError(ImagerecError):
    pass


def sha256_of(path: Path) -> str:
    return _digest(path, "sha256")


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, expected: str | None, what: str) -> str:
    """The file's sha256, once it matches `expected` (a sha256, or a 32-hex md5 as Keras publishes)."""
    actual = sha256_of(path)
    if expected is None:
        return actual
    algorithm = "md5" if len(expected) == 32 else "sha256"
    got = _digest(path, "md5") if algorithm == "md5" else actual
    if got != expected.lower():
        path.unlink()
        raise ChecksumError(f"{what}: {algorithm} mismatch (expected {expected}, got {got}); file discarded")
    return actual


class Mirror:
    """A local directory read instead of the network: `<root>/<folder>/<file>` plus a
    `SHA256SUMS` list (sha256sum format, paths relative to root) that every copy must match."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        sums = self.root / "SHA256SUMS"
        if not sums.is_file():
            raise ImagerecError(f"mirror {self.root}: no SHA256SUMS file (is {MIRROR_ENV} right?)")
        try:
            lines = sums.read_bytes().decode("utf-8").splitlines()
        except OSError as err:
            raise ImagerecError(f"mirror {self.root}: cannot read SHA256SUMS ({err.strerror})") from None
        except UnicodeDecodeError as err:
            raise ImagerecError(f"mirror {self.root}: SHA256SUMS is not UTF-8 text (byte {err.start})") from None
        self.checksums = {}
        for number, line in enumerate(lines, 1):
            if line.strip():
                fields = line.split(maxsplit=1)
                if len(fields) != 2 or not SHA256_HEX.fullmatch(fields[0]):
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


# --- trust on first use ------------------------------------------------------------------------

def _recorded(record_path: Path) -> dict[str, str]:
    if not record_path.exists():
        return {}
    try:
        recorded = read_json(record_path)
    except (OSError, ValueError) as err:
        raise ImagerecError(f"{record_path}: unreadable sha256 record ({' '.join(str(err).split())[:160]})") from None
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        raise ImagerecError(f"{record_path}: not a JSON object of source -> sha256")
    return recorded


def trust_on_first_use(record_path: Path, key: str, path: Path, digest: str) -> None:
    """Record the sha256 of `key`'s first download in `record_path` (kept in git); a later
    download must match it. A mismatch discards `path`, the record stays as it was."""
    recorded = _recorded(Path(record_path))
    if key not in recorded:
        write_json(record_path, dict(sorted({**recorded, key: digest}.items())))  # sorted: small git diffs
    elif recorded[key] != digest:
        path.unlink()
        raise ChecksumError(
            f"{key}: sha256 {digest} differs from the sha256 recorded in {record_path} on first download "
            f"({recorded[key]}); file discarded (delete the entry if the source changed on purpose)"
        )


# --- official files: registry entries and pretrained weights -----------------------------------

def fetch_file(source: RemoteFile, mirror_folder: str, out_dir: Path, mirror: Mirror | None,
               record_path: Path | None = None) -> dict:
    """Get one registry file into `out_dir`; return what was fetched, for the record.

    record_path: where a download without a published checksum is checked against (or
    recorded as) its first download's sha256; None only notes that it was not checked."""
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
    if source.sha256 is None and record_path is not None:
        trust_on_first_use(record_path, source.url, dest, digest)
    elif source.sha256 is None:
        record["note"] = "no published checksum: this first download's sha256 is recorded (trust on first use)"
    return record


# --- local folders and archives ----------------------------------------------------------------



def _unreadable(err: OSError):
    raise ImagerecError(f"{err.filename}: cannot read ({err.strerror})")


def _folder_files(root: Path) -> list[tuple[str, Path]]:
    """Every regular file under `root` by its POSIX path relative to root, sorted. Symlinks are
    skipped (os.walk does not enter linked directories): the data is what the folder holds."""
    found = []
    for dirpath, _, filenames in os.walk(root, onerror=_unreadable):
        for name in filenames:
            path = Path(dirpath, name)
            if not path.is_symlink() and path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def _local_path(path: str | Path) -> Path:
    """A fetch.path: relative to the current directory (the repo root), ~ expanded."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise ImagerecError(f"{path}: no such file or directory")
    return resolved


def folder_fingerprint(path: str | Path) -> str:
    """A cheap sha256 over the (relative path, size, mtime) of every file of a folder, or of the
    single archive: it changes when the data does, without reading it (DVC notices the change)."""
    root = _local_path(path)
    entries = _folder_files(root) if root.is_dir() else [(root.name, root)]
    digest = hashlib.sha256()
    for name, file in entries:
        stat = file.stat()
        digest.update(os.fsencode(name) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _pack(root: Path, dest: Path) -> None:
    """One uncompressed tar of the folder's files, byte-identical for identical contents (no
    mtimes, owners or modes of this checkout), so DVC caches it once."""
    files = _folder_files(root)
    if not files:
        raise ImagerecError(f"{root}: the folder holds no files")
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in files:
            info = tarfile.TarInfo(name)  # mtime, uid and gid 0, no user or group names
            info.size, info.mode = path.stat().st_size, 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)


def _fetch_folder(fetch: dict, out_dir: Path) -> dict:
    source = _local_path(fetch["path"])
    if source.is_dir():
        dest = out_dir / f"{source.resolve().name or 'folder'}.tar"
    elif source.is_file() and archives.sniff(source):
        dest = out_dir / source.name  # copied as it is: the dataset reader expands archives
    else:
        raise ImagerecError(f"{fetch['path']}: neither a directory nor a zip, tar or 7z archive")
    tmp = dest.with_name(dest.name + ".part")
    if source.is_dir():
        _pack(source, tmp)
    else:
        shutil.copyfile(source, tmp)
    os.replace(tmp, dest)
    return {"file": dest.name, "origin": str(fetch["path"]), "sha256": sha256_of(dest)}


# --- URLs ---------------------------------------------------------------------------------------

def _url_filename(url: str) -> str:
    """The URL path's last part, reduced to a safe file name (`download` when nothing is left)."""
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".") or "download"


def _fetch_url(fetch: dict, out_dir: Path, record_path: Path) -> dict:
    url, expected = fetch["url"], fetch.get("sha256")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ImagerecError(f"{url}: only http:// and https:// URLs can be fetched")
    dest = out_dir / _url_filename(url)
    digest = download(url, dest, expected)
    if expected is None:
        trust_on_first_use(record_path, url, dest, digest)
    return {"file": dest.name, "origin": url, "sha256": digest}


# --- Kaggle -------------------------------------------------------------------------------------

def _kaggle_api(dataset: str):
    # Importing `kaggle` authenticates at once and prints a help text to stdout when no
    # credentials exist; authenticate() then raises SystemExit. Keep both contained.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except ImportError:
        raise ImagerecError("the kaggle package is not installed (pip install kaggle)") from None
    except (SystemExit, Exception):
        raise ImagerecError(
            "Kaggle credentials not found: save your API token as ~/.kaggle/access_token "
            f"(or set KAGGLE_API_TOKEN), or choose another fetch.source for {dataset}"
        ) from None
    return api


def _kaggle_target(dataset: str, fetch: dict) -> KaggleSource:
    competition, owner_name = fetch.get("competition"), fetch.get("dataset")
    files = tuple(fetch.get("files") or ())
    if competition is None and owner_name is None:
        preset = DATASET_SOURCES.get(dataset, {}).get("kaggle")
        if preset is None:
            raise ImagerecError(f"{dataset}: a kaggle source needs a competition or a dataset (owner/name)")
        return preset
    if competition is not None and owner_name is not None:
        raise ImagerecError(f"{dataset}: a kaggle source takes a competition or a dataset, not both")
    if competition is not None and not files:
        raise ImagerecError(f"{dataset}: Kaggle competition {competition!r}: list the files to download")
    return KaggleSource(competition, owner_name, files)


def _kaggle_get(api, target: KaggleSource, file: str | None, workdir: Path) -> Path:
    """Download one file (None: the whole dataset) into `workdir`; the path it arrived at.
    Kaggle serves large files zipped as `<file>.zip`: that is kept as it is."""
    if file is None:
        api.dataset_download_files(target.dataset, path=str(workdir), unzip=False, quiet=False)
        candidates = [workdir / f"{target.dataset.split('/')[1]}.zip"]
    else:
        if target.competition is not None:
            api.competition_download_file(target.competition, file, path=str(workdir), quiet=False)
        else:
            api.dataset_download_file(target.dataset, file, path=str(workdir), quiet=False)
        candidates = [workdir / file, workdir / f"{file}.zip"]
    for path in candidates:
        if path.is_file():
            return path
    raise ImagerecError(f"Kaggle download of {file or target.dataset!r} produced no {candidates[0].name}")


def _fetch_kaggle(dataset: str, fetch: dict, out_dir: Path, record_path: Path) -> list[dict]:
    target = _kaggle_target(dataset, fetch)
    api = _kaggle_api(dataset)
    name = target.competition or target.dataset
    origin = f"kaggle competition {name}" if target.competition else f"kaggle dataset {name}"
    workdir = out_dir / ".kaggle-download"
    workdir.mkdir()
    records = []
    try:
        for file in target.files or (None,):
            try:
                arrived = _kaggle_get(api, target, file, workdir)
            except ImagerecError:
                raise
            except Exception as err:
                hint = ("have you accepted the competition's rules on kaggle.com?" if target.competition
                        else "is the dataset name right, and may you download it?")
                raise ImagerecError(
                    f"Kaggle download of {file or 'all files'} from {origin} failed: "
                    f"{' '.join(str(err).split())[:200]} ({hint})"
                ) from None
            dest = out_dir / arrived.name
            if dest.exists():
                raise ImagerecError(f"{origin}: two requested files arrive as {dest.name}")
            os.replace(arrived, dest)
            digest = sha256_of(dest)
            trust_on_first_use(record_path, f"kaggle:{name}/{dest.name}", dest, digest)
            records.append({"file": dest.name, "origin": origin, "sha256": digest})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return records


# --- a dataset's fetch section -------------------------------------------------------------------

def fetch_dataset(dataset: str, fetch: dict, out_dir: Path, mirror: Mirror | None, record_path: Path) -> dict:
    """Get the raw file(s) of `dataset` as its fetch section says into `out_dir` (existing,
    empty); return the record to keep beside them (source.json). On failure out_dir is left empty.

    fetch["source"]: a name of the dataset's registry entry (the mirror replaces the network
    when given), "folder" (path), "url" (url, sha256 or None) or "kaggle" (competition or
    dataset, files; neither: the built-in dataset's preset). record_path: the trust-on-first-use
    sha256 record of downloads nobody publishes a checksum for."""
    out_dir, record_path = Path(out_dir), Path(record_path)
    try:
        files = _fetch_files(dataset, fetch, out_dir, mirror, record_path)
        if any(f["file"] == SOURCE_RECORD for f in files):
            raise ImagerecError(f"{dataset}: a fetched file is named {SOURCE_RECORD}, the name of the fetch record")
    except BaseException:
        for leftover in out_dir.iterdir():  # out_dir was empty: whatever is there is ours
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        raise
    return {"dataset": dataset, "source": fetch["source"], "files": files}


def _fetch_files(dataset: str, fetch: dict, out_dir: Path, mirror: Mirror | None, record_path: Path) -> list[dict]:
    source = fetch["source"]
    if source == "folder":
        return [_fetch_folder(fetch, out_dir)]
    if source == "url":
        return [_fetch_url(fetch, out_dir, record_path)]
    if source == "kaggle":
        return _fetch_kaggle(dataset, fetch, out_dir, record_path)
    official = DATASET_SOURCES.get(dataset, {}).get(source)
    if not isinstance(official, RemoteFile):
        allowed = ", ".join(sorted({*builtin_sources(dataset), "folder", "url", "kaggle"}))
        raise ImagerecError(f"{dataset}: unknown fetch source {source!r} (allowed: {allowed})")
    return [fetch_file(official, dataset, out_dir, mirror, record_path)]
