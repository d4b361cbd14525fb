"""sources: the mirror, checked downloads (requests faked), Kaggle (tests/fake_kaggle, a stub
package), local folders and URLs; no network."""
import hashlib
import io
import json
import os
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import requests

from imagerec import archives, catalog, sources
from imagerec.errors import ImagerecError
from imagerec.catalog import DATASET_SOURCES, PRETRAINED_WEIGHTS, RemoteFile
from imagerec.sources import ChecksumError, Mirror

URL = "https://example.invalid/data.bin"
BODY = b"the payload " * 1000
BODY_SHA = hashlib.sha256(BODY).hexdigest()
CIFAR = DATASET_SOURCES["cifar10"]["toronto"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def make_mirror(root: Path, files: dict[str, bytes]) -> Path:
    """<root>/<folder>/<file> plus SHA256SUMS (binary-mode `*` marker on the first line)."""
    lines = []
    for i, (relpath, data) in enumerate(files.items()):
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(data)
        lines.append(f"{sha(data)} {'*' if i == 0 else ' '}{relpath}\n")
    (root / "SHA256SUMS").write_text("".join(lines))
    return root


@pytest.fixture
def out(tmp_path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


# --- mirror -----------------------------------------------------------------------------------

def test_mirror_reads_sha256sums_and_copy_verifies(tmp_path, out):
    mirror = Mirror(make_mirror(tmp_path / "m", {"mnist/mnist.npz": b"npz", "cifar10/c.tar.gz": b"tar"}))
    assert mirror.checksums == {"mnist/mnist.npz": sha(b"npz"), "cifar10/c.tar.gz": sha(b"tar")}
    assert mirror.copy("cifar10", "c.tar.gz", out / "c.tar.gz") == sha(b"tar")
    assert (out / "c.tar.gz").read_bytes() == b"tar"
    assert [p.name for p in out.iterdir()] == ["c.tar.gz"]


def test_tampered_mirror_file_raises_checksum_error_and_leaves_no_file(tmp_path, out):
    root = make_mirror(tmp_path / "m", {"mnist/mnist.npz": b"genuine"})
    (root / "mnist/mnist.npz").write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        Mirror(root).copy("mnist", "mnist.npz", out / "mnist.npz")
    assert list(out.iterdir()) == []


def test_mirror_without_sha256sums_is_a_clear_error(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(ImagerecError, match=r"no SHA256SUMS file \(is IMAGEREC_MIRROR right\?\)"):
        Mirror(tmp_path / "m")


def test_file_listed_in_sha256sums_but_missing_is_an_error(tmp_path, out):
    root = make_mirror(tmp_path / "m", {"mnist/mnist.npz": b"npz"})
    (root / "mnist/mnist.npz").unlink()
    with pytest.raises(ImagerecError, match="mnist/mnist.npz is listed in SHA256SUMS but missing"):
        Mirror(root).copy("mnist", "mnist.npz", out / "mnist.npz")


def test_malformed_sha256sums_line_is_an_imagerec_error(tmp_path):
    root = make_mirror(tmp_path / "m", {"mnist/mnist.npz": b"npz"})
    (root / "SHA256SUMS").write_text((root / "SHA256SUMS").read_text() + "0123abcd\n")
    with pytest.raises(ImagerecError, match="SHA256SUMS"):
        Mirror(root)


def test_mirror_from_env_follows_imagerec_mirror(tmp_path, monkeypatch):
    monkeypatch.delenv(sources.MIRROR_ENV, raising=False)
    assert sources.mirror_from_env() is None
    monkeypatch.setenv(sources.MIRROR_ENV, str(make_mirror(tmp_path / "m", {"mnist/mnist.npz": b"npz"})))
    assert sources.mirror_from_env().root == tmp_path / "m"


def test_fetch_file_takes_cifar_stand_in_when_official_tarball_is_absent(tmp_path, out):
    mirror = Mirror(make_mirror(tmp_path / "m", {"cifar10/cifar10_jpeg_full.tar.gz": b"jpegs"}))
    record = sources.fetch_file(CIFAR, "cifar10", out, mirror)
    assert record == {"file": "cifar10_jpeg_full.tar.gz", "origin": "mirror", "sha256": sha(b"jpegs")}
    assert (out / "cifar10_jpeg_full.tar.gz").read_bytes() == b"jpegs"


def test_fetch_file_prefers_the_first_mirror_name(tmp_path, out):
    mirror = Mirror(make_mirror(tmp_path / "m", {"cifar10/cifar10_jpeg_full.tar.gz": b"jpegs",
                                                 "cifar10/cifar-10-python.tar.gz": b"pickles"}))
    assert sources.fetch_file(CIFAR, "cifar10", out, mirror)["file"] == "cifar-10-python.tar.gz"


def test_fetch_file_names_the_wanted_paths_when_mirror_lists_none(tmp_path, out):
    mirror = Mirror(make_mirror(tmp_path / "m", {"mnist/mnist.npz": b"npz"}))
    with pytest.raises(ImagerecError) as info:
        sources.fetch_file(CIFAR, "cifar10", out, mirror)
    assert "lists none of cifar10/cifar-10-python.tar.gz, cifar10/cifar10_jpeg_full.tar.gz" in str(info.value)


# --- download, with requests.get faked ----------------------------------------------------------

class FakeResponse:
    def __init__(self, body: bytes = BODY, status: int = 200, length: int | None = None, broken: bool = False):
        self.body, self.status_code, self.broken = body, status, broken
        self.headers = {"content-length": str(len(body) if length is None else length)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def raise_for_status(self):
        if self.status_code >= 400:
            raise requests.HTTPError(f"{self.status_code} error", response=self)

    def iter_content(self, chunk_size):
        half = len(self.body) // 2
        yield self.body[:half]
        if self.broken:  # what requests raises when the connection drops mid-body
            raise requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")
        yield self.body[half:]


@pytest.fixture
def serve(monkeypatch):
    """serve(*replies): each requests.get returns (or raises) the next reply; gives the list of URLs got."""
    monkeypatch.setattr(sources.time, "sleep", lambda seconds: None)

    def install(*replies):
        pending, calls = list(replies), []

        def fake_get(url, stream, timeout):
            calls.append(url)
            reply = pending.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply

        monkeypatch.setattr(requests, "get", fake_get)
        return calls
    return install


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_download_keeps_file_whose_sha256_matches(serve, out):
    calls = serve(FakeResponse())
    assert sources.download(URL, out / "data.bin", BODY_SHA) == BODY_SHA
    assert (out / "data.bin").read_bytes() == BODY
    assert calls == [URL] and leftovers(out) == ["data.bin"]


def test_download_sha256_mismatch_raises_checksum_error_and_keeps_nothing(serve, out):
    serve(FakeResponse())
    with pytest.raises(ChecksumError, match=f"expected {'0' * 64}, got {BODY_SHA}"):
        sources.download(URL, out / "data.bin", "0" * 64)
    assert leftovers(out) == []


def test_truncated_body_is_retried_then_reported(serve, out):
    calls = serve(*[FakeResponse(length=len(BODY) + 1) for _ in range(3)])
    with pytest.raises(ImagerecError, match="truncated"):
        sources.download(URL, out / "data.bin", BODY_SHA, retries=3)
    assert len(calls) == 3 and leftovers(out) == []


def test_connection_error_names_the_url_and_the_mirror_variable(serve, out):
    calls = serve(*[requests.ConnectionError("Name or service not known") for _ in range(3)])
    with pytest.raises(ImagerecError) as info:
        sources.download(URL, out / "data.bin", BODY_SHA, retries=3)
    assert URL in str(info.value) and "IMAGEREC_MIRROR" in str(info.value)
    assert len(calls) == 3 and leftovers(out) == []


def test_http_404_fails_at_once_without_retry(serve, out):
    calls = serve(FakeResponse(status=404), FakeResponse())
    with pytest.raises(ImagerecError, match=f"download failed: {URL}: HTTP 404"):
        sources.download(URL, out / "data.bin", BODY_SHA)
    assert len(calls) == 1 and leftovers(out) == []


@pytest.mark.parametrize("first_failure", [requests.ConnectionError("reset"), requests.Timeout("slow"),
                                           FakeResponse(status=503)], ids=["connection", "timeout", "http-503"])
def test_failed_first_attempt_is_retried_and_second_succeeds(serve, out, first_failure):
    calls = serve(first_failure, FakeResponse())
    assert sources.download(URL, out / "data.bin", BODY_SHA) == BODY_SHA
    assert len(calls) == 2 and leftovers(out) == ["data.bin"]


def test_connection_dropped_mid_body_is_retried(serve, out):
    calls = serve(FakeResponse(broken=True), FakeResponse())
    assert sources.download(URL, out / "data.bin", BODY_SHA) == BODY_SHA
    assert len(calls) == 2 and leftovers(out) == ["data.bin"]


def test_fetch_file_without_published_sha_records_first_download(serve, out):
    serve(FakeResponse())
    source = RemoteFile("data.bin", URL, None)
    record = sources.fetch_file(source, "folder", out, mirror=None)
    assert record["sha256"] == BODY_SHA and record["origin"] == URL
    assert "trust on first use" in record["note"]


def test_fetch_file_with_record_path_checks_against_the_first_download(serve, out, tmp_path):
    serve(FakeResponse(), FakeResponse(body=b"changed"))
    source, record_path = RemoteFile("data.bin", URL, None), tmp_path / "checksums.json"
    assert sources.fetch_file(source, "folder", out, None, record_path) == {"file": "data.bin", "origin": URL,
                                                                             "sha256": BODY_SHA}
    assert json.loads(record_path.read_text()) == {URL: BODY_SHA}
    with pytest.raises(ChecksumError, match="differs from the sha256 recorded in"):
        sources.fetch_file(source, "folder", tmp_path / "out", None, record_path)  # out/data.bin is replaced
    assert leftovers(out) == []


# --- published md5 / sha256 of pretrained weights -----------------------------------------------------

def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("digest", [md5, sha], ids=["md5", "sha256"])
def test_published_md5_or_sha256_is_verified_and_the_record_reports_sha256(serve, out, digest):
    serve(FakeResponse())
    record = sources.fetch_file(RemoteFile("w.h5", URL, digest(BODY)), "weights", out, None)
    assert record == {"file": "w.h5", "origin": URL, "sha256": BODY_SHA}


@pytest.mark.parametrize("backbone", ["efficientnet_v2_b0", "resnet50_v2"])
def test_tampered_weights_are_refused_against_keras_published_md5(serve, out, backbone):
    weights = PRETRAINED_WEIGHTS[(backbone, "imagenet")]
    serve(FakeResponse(body=b"not the weights Keras published"))
    with pytest.raises(ChecksumError) as info:
        sources.fetch_file(weights, catalog.WEIGHTS_MIRROR_FOLDER, out, None)
    message = str(info.value)
    assert f"md5 mismatch (expected {weights.sha256}, got {md5(b'not the weights Keras published')})" in message
    assert weights.url in message and "\n" not in message and leftovers(out) == []


def test_weights_registry_has_keras_published_urls_and_hashes():
    base = "https://storage.googleapis.com/tensorflow/keras-applications/"
    assert {key: (w.url.removeprefix(base), w.sha256) for key, w in PRETRAINED_WEIGHTS.items()} == {
        ("mobilenet_v2", "imagenet"): ("mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5", None),
        ("efficientnet_v2_b0", "imagenet"): ("efficientnet_v2/efficientnetv2-b0_notop.h5", "893217f2bb855e2983157299931e43ff"),
        ("resnet50_v2", "imagenet"): ("resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                      "fac2f116257151a9d068a22e544a4917"),
    }
    assert all(w.mirror_names == (w.filename,) for w in PRETRAINED_WEIGHTS.values())


# --- fetch_dataset: built-in sources ---------------------------------------------------------------------

def test_builtin_sources_and_kaggle_presets():
    assert catalog.builtin_sources("mnist") == ["keras", "kaggle"]
    assert catalog.builtin_sources("cifar10") == ["toronto", "kaggle"]
    assert catalog.builtin_sources("cats_vs_dogs") == ["tensorflow", "petimages", "kaggle"]
    assert catalog.builtin_sources("flowers") == []
    assert catalog.kaggle_preset("cifar10") == {"source": "kaggle", "competition": "cifar-10", "dataset": None,
                                                "files": ["train.7z", "trainLabels.csv"]}
    assert catalog.kaggle_preset("flowers") is None


def test_builtin_source_through_the_mirror(tmp_path, out):
    mirror = Mirror(make_mirror(tmp_path / "m", {"mnist/mnist.npz": b"npz"}))
    record = sources.fetch_dataset("mnist", {"source": "keras"}, out, mirror, tmp_path / "checksums.json")
    assert record == {"dataset": "mnist", "source": "keras",
                      "files": [{"file": "mnist.npz", "origin": "mirror", "sha256": sha(b"npz")}]}
    assert not (tmp_path / "checksums.json").exists()


def test_builtin_download_without_published_checksum_is_trusted_on_first_use(serve, tmp_path, out):
    serve(FakeResponse())
    record = sources.fetch_dataset("cats_vs_dogs", {"source": "tensorflow"}, out, None, tmp_path / "checksums.json")
    official = DATASET_SOURCES["cats_vs_dogs"]["tensorflow"]
    assert record["files"] == [{"file": official.filename, "origin": official.url, "sha256": BODY_SHA}]
    assert json.loads((tmp_path / "checksums.json").read_text()) == {official.url: BODY_SHA}


def test_unknown_source_names_the_allowed_ones(tmp_path, out):
    with pytest.raises(ImagerecError, match=r"mnist: unknown fetch source 'toronto' \(allowed: folder, kaggle, keras, url\)"):
        sources.fetch_dataset("mnist", {"source": "toronto"}, out, None, tmp_path / "checksums.json")


# --- fetch_dataset: folder ---------------------------------------------------------------------------------

def make_photos(root: Path) -> Path:
    for relpath, data in {"cats/b.jpg": b"cat b", "cats/a.jpg": b"cat a", "dogs/x y.jpg": b"dog",
                          "README": b"my photos"}.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(data)
    (root / "link.jpg").symlink_to(root / "dogs" / "x y.jpg")
    (root / "linked-dir").symlink_to(root / "cats")
    return root


def fetch_folder(path, out: Path, tmp_path: Path) -> dict:
    return sources.fetch_dataset("flowers", {"source": "folder", "path": str(path)}, out, None, tmp_path / "c.json")


def test_folder_is_packed_into_one_tar_byte_identical_for_identical_contents(tmp_path, out):
    photos = make_photos(tmp_path / "photos")
    record = fetch_folder(photos, out, tmp_path)
    assert record == {"dataset": "flowers", "source": "folder",
                      "files": [{"file": "photos.tar", "origin": str(photos), "sha256": sha((out / "photos.tar").read_bytes())}]}
    with tarfile.open(out / "photos.tar") as tar:  # uncompressed, sorted, regular files only, no symlinks
        members = tar.getmembers()
        assert [m.name for m in members] == ["README", "cats/a.jpg", "cats/b.jpg", "dogs/x y.jpg"]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode, m.isfile()) for m in members} == {(0, 0, 0, "", "", 0o644, True)}
        assert tar.extractfile("cats/a.jpg").read() == b"cat a"

    copy = make_photos(tmp_path / "elsewhere" / "photos")  # the same contents, other times and inodes
    os.utime(copy / "README", ns=(1, 1))
    os.chmod(copy / "cats" / "a.jpg", 0o600)
    again = tmp_path / "again"
    again.mkdir()
    fetch_folder(copy, again, tmp_path)
    assert (again / "photos.tar").read_bytes() == (out / "photos.tar").read_bytes()
    assert leftovers(out) == ["photos.tar"]


def test_folder_path_is_relative_to_the_current_directory(tmp_path, out, monkeypatch):
    make_photos(tmp_path / "photos")
    monkeypatch.chdir(out)
    assert fetch_folder("../photos", out, tmp_path)["files"][0]["file"] == "photos.tar"


def test_folder_fingerprint_follows_names_sizes_and_times(tmp_path):
    photos = make_photos(tmp_path / "photos")
    first = sources.folder_fingerprint(photos)
    assert sources.folder_fingerprint(str(photos)) == first and len(first) == 64
    (photos / "cats" / "a.jpg").write_bytes(b"another cat")
    changed = sources.folder_fingerprint(photos)
    assert changed != first
    os.utime(photos / "README", ns=(5, 5))
    assert sources.folder_fingerprint(photos) != changed
    (tmp_path / "photos.zip").write_bytes(zip_bytes({"a.jpg": b"a"}))
    archive = sources.folder_fingerprint(tmp_path / "photos.zip")
    (tmp_path / "photos.zip").write_bytes(zip_bytes({"a.jpg": b"ab"}))
    assert sources.folder_fingerprint(tmp_path / "photos.zip") != archive
    with pytest.raises(ImagerecError, match=f"{tmp_path / 'gone'}: no such file or directory"):
        sources.folder_fingerprint(tmp_path / "gone")


def tar_gz_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


ARCHIVES = {  # detected by content, whatever the name says
    "photos.zip": zip_bytes({"cats/a.jpg": b"a"}),
    "photos.tgz.download": tar_gz_bytes({"cats/a.jpg": b"a"}),
    "photos.7z": archives.SEVEN_ZIP_MAGIC + b"\x00\x04 the rest of a 7z archive",
}


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_folder_archive_is_copied_as_it_is(tmp_path, out, name):
    (tmp_path / name).write_bytes(ARCHIVES[name])
    record = fetch_folder(tmp_path / name, out, tmp_path)
    assert record["files"] == [{"file": name, "origin": str(tmp_path / name), "sha256": sha(ARCHIVES[name])}]
    assert (out / name).read_bytes() == ARCHIVES[name] and leftovers(out) == [name]


@pytest.mark.parametrize("what, message", [("missing", "no such file or directory"),
                                           ("text", "neither a directory nor a zip, tar or 7z archive"),
                                           ("empty-dir", "the folder holds no files")])
def test_folder_that_is_not_there_or_no_archive_is_a_one_line_error(tmp_path, out, what, message):
    path = tmp_path / what
    if what == "text":
        path.write_text("just some notes\n" * 50)
    elif what == "empty-dir":
        path.mkdir()
    with pytest.raises(ImagerecError) as info:
        fetch_folder(path, out, tmp_path)
    assert str(info.value).startswith(str(path)) and message in str(info.value) and "\n" not in str(info.value)
    assert leftovers(out) == []


# --- fetch_dataset: url --------------------------------------------------------------------------------------

def fetch_url(url: str, out: Path, record_path: Path, sha256: str | None = None) -> dict:
    fetch = {"source": "url", "url": url, **({"sha256": sha256} if sha256 else {})}
    return sources.fetch_dataset("flowers", fetch, out, None, record_path)


def test_url_with_sha256_is_verified(serve, tmp_path, out):
    calls = serve(FakeResponse(), FakeResponse())
    record = fetch_url(URL, out, tmp_path / "checksums.json", BODY_SHA)
    assert record == {"dataset": "flowers", "source": "url", "files": [{"file": "data.bin", "origin": URL, "sha256": BODY_SHA}]}
    assert not (tmp_path / "checksums.json").exists()  # nothing to trust: the checksum was given
    (out / "data.bin").unlink()
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        fetch_url(URL, out, tmp_path / "checksums.json", "0" * 64)
    assert calls == [URL, URL] and leftovers(out) == []


def test_url_without_sha256_is_trusted_on_first_use(serve, tmp_path, out):
    record_path = tmp_path / "checksums.json"
    record_path.write_text(json.dumps({"https://other.invalid/x.zip": "ab" * 32}))
    serve(FakeResponse(), FakeResponse(), FakeResponse(body=b"changed upstream"))
    assert fetch_url(URL, out, record_path)["files"][0]["sha256"] == BODY_SHA
    recorded = {"https://other.invalid/x.zip": "ab" * 32, URL: BODY_SHA}
    assert json.loads(record_path.read_text()) == recorded  # other entries kept

    for name in leftovers(out):
        (out / name).unlink()
    assert fetch_url(URL, out, record_path)["files"][0]["sha256"] == BODY_SHA  # the same again: fine
    (out / "data.bin").unlink()

    with pytest.raises(ChecksumError) as info:
        fetch_url(URL, out, record_path)
    message = str(info.value)
    assert message.startswith(f"{URL}: sha256 {sha(b'changed upstream')} differs from the sha256 recorded in {record_path}")
    assert "on first download" in message and "\n" not in message
    assert leftovers(out) == [] and json.loads(record_path.read_text()) == recorded


@pytest.mark.parametrize("url, name", [("https://example.invalid/a/My%20Photos%20(2).zip?dl=1", "My_Photos_2_.zip"),
                                       ("https://example.invalid/", "download"),
                                       ("http://example.invalid/..", "download")])
def test_url_file_name_is_the_path_last_part_made_safe(serve, tmp_path, out, url, name):
    serve(FakeResponse())
    assert fetch_url(url, out, tmp_path / "checksums.json")["files"][0]["file"] == name
    assert leftovers(out) == [name]


@pytest.mark.parametrize("url", ["ftp://example.invalid/x.zip", "file:///etc/passwd", "example.invalid/x.zip"])
def test_only_http_and_https_urls_are_fetched(serve, tmp_path, out, url):
    calls = serve()
    with pytest.raises(ImagerecError, match="only http:// and https:// URLs can be fetched"):
        fetch_url(url, out, tmp_path / "checksums.json")
    assert calls == [] and leftovers(out) == []


def test_unreadable_checksum_record_is_a_one_line_error(serve, tmp_path, out):
    (tmp_path / "checksums.json").write_text("{not json")
    serve(FakeResponse())
    with pytest.raises(ImagerecError, match="checksums.json: unreadable sha256 record"):
        fetch_url(URL, out, tmp_path / "checksums.json")
    assert leftovers(out) == []


# --- fetch_dataset: Kaggle, through the stub package in tests/fake_kaggle -----------------------------------

FAKE_KAGGLE = Path(__file__).parent / "fake_kaggle"


def _kaggle_modules() -> list[str]:
    return [name for name in sys.modules if name == "kaggle" or name.startswith("kaggle.")]


@pytest.fixture
def kaggle_store(tmp_path, monkeypatch):
    """`kaggle` is the stub, serving <store>/<competition or owner__name>/<file>."""
    store = tmp_path / "kaggle-store"
    store.mkdir()
    monkeypatch.setenv("FAKE_KAGGLE_DIR", str(store))
    monkeypatch.delenv("FAKE_KAGGLE_NO_CREDENTIALS", raising=False)
    monkeypatch.syspath_prepend(str(FAKE_KAGGLE))
    for name in _kaggle_modules():
        monkeypatch.delitem(sys.modules, name)
    yield store
    for name in _kaggle_modules():  # the stub's; monkeypatch then puts back any real ones
        del sys.modules[name]


def put(store: Path, folder: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (store / folder / name).parent.mkdir(parents=True, exist_ok=True)
        (store / folder / name).write_bytes(data)


def fetch_kaggle(name: str, out: Path, tmp_path: Path, **fetch) -> dict:
    """Dataset `name`'s files from Kaggle; fetch: the section's other keys (dataset, competition, files)."""
    return sources.fetch_dataset(name, {"source": "kaggle", **fetch}, out, None, tmp_path / "checksums.json")


def test_the_stub_is_what_imports_as_kaggle(kaggle_store):
    import kaggle

    assert kaggle.__version__ == "0.0.0+fake" and Path(kaggle.__file__).is_relative_to(FAKE_KAGGLE)


def test_kaggle_dataset_whole_arrives_as_one_zip(kaggle_store, tmp_path, out):
    put(kaggle_store, "someone__flower-photos", {"roses/1.jpg": b"rose", "tulips/1.jpg": b"tulip"})
    record = fetch_kaggle("flowers", out, tmp_path, dataset="someone/flower-photos")
    digest = sha((out / "flower-photos.zip").read_bytes())
    assert record == {"dataset": "flowers", "source": "kaggle", "files": [
        {"file": "flower-photos.zip", "origin": "kaggle dataset someone/flower-photos", "sha256": digest}]}
    with zipfile.ZipFile(out / "flower-photos.zip") as zf:
        assert sorted(zf.namelist()) == ["roses/1.jpg", "tulips/1.jpg"]
    assert json.loads((tmp_path / "checksums.json").read_text()) == {
        "kaggle:someone/flower-photos/flower-photos.zip": digest}
    assert leftovers(out) == ["flower-photos.zip"]  # the download folder is removed


def test_kaggle_dataset_listed_files_kept_as_they_arrive(kaggle_store, tmp_path, out):
    """Kaggle zips large files: labels.csv arrives as labels.csv.zip and is kept so."""
    put(kaggle_store, "someone__flowers", {"images.tar": b"tar bytes", "labels.csv.zip": b"zipped csv"})
    record = fetch_kaggle("flowers", out, tmp_path, dataset="someone/flowers", files=["images.tar", "labels.csv"])
    assert [(f["file"], f["sha256"]) for f in record["files"]] == [("images.tar", sha(b"tar bytes")),
                                                                   ("labels.csv.zip", sha(b"zipped csv"))]
    assert sorted(json.loads((tmp_path / "checksums.json").read_text())) == [
        "kaggle:someone/flowers/images.tar", "kaggle:someone/flowers/labels.csv.zip"]
    assert leftovers(out) == ["images.tar", "labels.csv.zip"]


def test_kaggle_competition_files(kaggle_store, tmp_path, out):
    put(kaggle_store, "plant-seedlings", {"train.zip": b"train", "test.zip": b"unlabelled"})
    record = fetch_kaggle("seedlings", out, tmp_path, competition="plant-seedlings", files=["train.zip"])
    assert record["files"] == [{"file": "train.zip", "origin": "kaggle competition plant-seedlings", "sha256": sha(b"train")}]
    assert leftovers(out) == ["train.zip"]


def test_kaggle_download_that_changed_since_first_use_is_refused(kaggle_store, tmp_path, out):
    put(kaggle_store, "plant-seedlings", {"train.zip": b"train"})
    fetch_kaggle("seedlings", out, tmp_path, competition="plant-seedlings", files=["train.zip"])
    (out / "train.zip").unlink()
    put(kaggle_store, "plant-seedlings", {"train.zip": b"retrained"})
    with pytest.raises(ChecksumError, match="kaggle:plant-seedlings/train.zip: sha256 .* differs from the sha256 recorded"):
        fetch_kaggle("seedlings", out, tmp_path, competition="plant-seedlings", files=["train.zip"])
    assert leftovers(out) == []


PRESETS = {
    "mnist": ("digit-recognizer", {"train.csv": b"label,pixel0\n"}),
    "cifar10": ("cifar-10", {"train.7z": archives.SEVEN_ZIP_MAGIC + b"...", "trainLabels.csv": b"id,label\n"}),
    "cats_vs_dogs": ("dogs-vs-cats", {"train.zip": zip_bytes({"train/cat.0.jpg": b"cat"})}),
}


@pytest.mark.parametrize("dataset", list(PRESETS))
def test_builtin_kaggle_presets(kaggle_store, tmp_path, out, dataset):
    competition, files = PRESETS[dataset]
    put(kaggle_store, competition, {**files, "test.zip": b"not asked for"})
    record = fetch_kaggle(dataset, out, tmp_path)
    assert record == {"dataset": dataset, "source": "kaggle", "files": [
        {"file": name, "origin": f"kaggle competition {competition}", "sha256": sha(data)} for name, data in files.items()]}
    assert leftovers(out) == sorted(files)


def test_kaggle_without_credentials_is_an_imagerec_error_and_prints_nothing(kaggle_store, tmp_path, out,
                                                                             monkeypatch, capsys):
    monkeypatch.setenv("FAKE_KAGGLE_NO_CREDENTIALS", "1")
    with pytest.raises(ImagerecError) as info:
        fetch_kaggle("cats_vs_dogs", out, tmp_path)
    assert str(info.value) == ("Kaggle credentials not found: save your API token as ~/.kaggle/access_token "
                               "(or set KAGGLE_API_TOKEN), or choose another fetch.source for cats_vs_dogs")
    assert capsys.readouterr().out == "" and leftovers(out) == []


def test_kaggle_missing_file_is_one_line_suggesting_the_rules(kaggle_store, tmp_path, out):
    put(kaggle_store, "dogs-vs-cats", {"test1.zip": b"unlabelled"})
    with pytest.raises(ImagerecError) as info:
        fetch_kaggle("cats_vs_dogs", out, tmp_path)
    message = str(info.value)
    assert message.startswith("Kaggle download of train.zip from kaggle competition dogs-vs-cats failed: 404")
    assert "accepted the competition's rules" in message and "\n" not in message
    assert leftovers(out) == []


def test_kaggle_later_file_failing_leaves_nothing(kaggle_store, tmp_path, out):
    put(kaggle_store, "cifar-10", {"train.7z": b"7z"})  # no trainLabels.csv
    with pytest.raises(ImagerecError, match="trainLabels.csv"):
        fetch_kaggle("cifar10", out, tmp_path)
    assert leftovers(out) == []


@pytest.mark.parametrize("fetch, message", [
    ({}, "flowers: a kaggle source needs a competition or a dataset"),
    ({"competition": "c", "dataset": "o/n"}, "not both"),
    ({"competition": "c"}, "Kaggle competition 'c': list the files to download"),
])
def test_kaggle_section_that_names_no_single_download_is_refused(kaggle_store, tmp_path, out, fetch, message):
    with pytest.raises(ImagerecError, match=message):
        fetch_kaggle("flowers", out, tmp_path, **fetch)


@pytest.mark.parametrize("content", [b"\xff\xfe" + "x".encode("utf-16-le"), b"not-a-sha256  mnist/mnist.npz\n"])
def test_sha256sums_not_utf8_or_without_a_sha256_is_one_line(tmp_path, content):
    root = make_mirror(tmp_path / "m", {"mnist/mnist.npz": b"npz"})
    (root / "SHA256SUMS").write_bytes(content)
    with pytest.raises(ImagerecError, match="SHA256SUMS") as err:
        Mirror(root)
    assert "\n" not in str(err.value)
