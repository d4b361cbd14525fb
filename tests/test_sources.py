"""sources: the mirror, checked downloads (requests faked) and Kaggle (module faked); no network."""
import hashlib
import io
import sys
import types
import zipfile
from pathlib import Path

import pytest
import requests

from imagerec import sources
from imagerec.errors import ImagerecError
from imagerec.sources import DATASET_SOURCES, ChecksumError, KaggleCompetition, Mirror, RemoteFile

URL = "https://example.invalid/data.bin"
BODY = b"the payload " * 1000
BODY_SHA = hashlib.sha256(BODY).hexdigest()
CIFAR = DATASET_SOURCES["cifar10"]["toronto"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


# --- Kaggle, with the kaggle package faked -----------------------------------------------------

KAGGLE = DATASET_SOURCES["cats_vs_dogs"]["kaggle"]


@pytest.fixture
def fake_kaggle(monkeypatch):
    """fake_kaggle(api_class): `from kaggle.api.kaggle_api_extended import KaggleApi` gives api_class."""
    def install(api_class):
        extended = types.ModuleType("kaggle.api.kaggle_api_extended")
        extended.KaggleApi = api_class
        monkeypatch.setitem(sys.modules, "kaggle", types.ModuleType("kaggle"))
        monkeypatch.setitem(sys.modules, "kaggle.api", types.ModuleType("kaggle.api"))
        monkeypatch.setitem(sys.modules, "kaggle.api.kaggle_api_extended", extended)
    return install


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


INNER_TRAIN_ZIP = zip_bytes({"train/cat.0.jpg": b"cat", "train/dog.0.jpg": b"dog"})


class AuthenticatedApi:
    downloads = []

    def authenticate(self):
        pass

    def competition_download_files(self, competition, path, quiet):
        self.downloads.append((competition, Path(path)))
        bundle = zip_bytes({"train.zip": INNER_TRAIN_ZIP, "test1.zip": b"unlabelled"})
        (Path(path) / f"{competition}.zip").write_bytes(bundle)


def test_kaggle_without_credentials_is_an_imagerec_error_and_prints_nothing(fake_kaggle, out, capsys):
    class NoCredentials(AuthenticatedApi):
        def authenticate(self):
            print("a long help text that must not reach stdout")
            raise SystemExit(1)

    fake_kaggle(NoCredentials)
    with pytest.raises(ImagerecError, match="Kaggle credentials not found"):
        sources.fetch_file(KAGGLE, "cats_vs_dogs", out, mirror=None)
    assert capsys.readouterr().out == ""


def test_kaggle_download_extracts_the_labelled_member_to_dest(fake_kaggle, out):
    AuthenticatedApi.downloads = []
    fake_kaggle(AuthenticatedApi)
    record = sources.fetch_file(KAGGLE, "cats_vs_dogs", out, mirror=None)
    assert record == {"file": "dogs-vs-cats-train.zip", "origin": "kaggle competition dogs-vs-cats",
                      "sha256": sha(INNER_TRAIN_ZIP)}
    assert (out / "dogs-vs-cats-train.zip").read_bytes() == INNER_TRAIN_ZIP
    assert [name for name, _ in AuthenticatedApi.downloads] == ["dogs-vs-cats"]
    assert leftovers(out) == ["dogs-vs-cats-train.zip"]  # the work folder is removed


def test_kaggle_download_failure_suggests_accepting_the_rules(fake_kaggle, out):
    class Forbidden(AuthenticatedApi):
        def competition_download_files(self, competition, path, quiet):
            raise RuntimeError("403 Forbidden")

    fake_kaggle(Forbidden)
    with pytest.raises(ImagerecError, match="403 Forbidden.*accepted the competition's rules"):
        sources.fetch_file(KaggleCompetition("dogs-vs-cats", "train.zip", "x.zip"), "cats_vs_dogs", out, None)
    assert leftovers(out) == []
