"""archives: regular files are read, anything that could escape or misbehave is refused."""
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from imagerec import archives
from imagerec.archives import ArchiveError

FILES = {"top/a.txt": b"alpha", "top/sub/b.bin": bytes(range(256))}
KINDS = ["x.zip", "x.tar.gz"]



def member_names(path: Path) -> list[str]:
    return [name for name, _ in archives.list_entries(path)[0]]

def make_zip(path: Path, members) -> Path:
    """members: (name or ZipInfo, bytes) pairs."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def tar_entry(name: str, kind=tarfile.REGTYPE, data: bytes = b"", linkname: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data), linkname
    return info, data


def make_tar(path: Path, entries) -> Path:
    """entries: (TarInfo, bytes) pairs, as tar_entry gives."""
    with tarfile.open(path, "w:gz") as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def make_archive(path: Path, files: dict[str, bytes]) -> Path:
    if path.suffix == ".zip":
        return make_zip(path, files.items())
    return make_tar(path, [tar_entry(name, data=data) for name, data in files.items()])


def read_all(path: Path) -> dict[str, bytes]:
    return {name: archives.read_member(open_member, 2**20) for name, _, open_member in archives.iter_members(path)}


@pytest.mark.parametrize("name", KINDS)
def test_iter_members_yields_regular_files_with_sizes_and_contents(tmp_path, name):
    path = make_archive(tmp_path / name, FILES)
    assert [(member, size) for member, size, _ in archives.iter_members(path)] == \
        [(member, len(data)) for member, data in FILES.items()]
    assert read_all(path) == FILES


def test_directory_entries_are_skipped(tmp_path):
    zip_path = make_zip(tmp_path / "d.zip", [("top/", b""), ("top/a.txt", b"alpha")])
    tar_path = make_tar(tmp_path / "d.tar.gz", [tar_entry("top", tarfile.DIRTYPE),
                                                tar_entry("top/a.txt", data=b"alpha")])
    assert member_names(zip_path) == member_names(tar_path) == ["top/a.txt"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("entry", ["/etc/passwd", "../evil.txt", "top/../../evil.txt", "..\\evil.txt", "C:/evil.txt"])
def test_entry_pointing_outside_the_archive_is_refused(tmp_path, kind, entry):
    path = make_archive(tmp_path / kind, {"ok.txt": b"fine", entry: b"evil"})
    with pytest.raises(ArchiveError, match="points outside the archive"):
        member_names(path)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE],
                         ids=["symlink", "hardlink", "chardev", "blockdev", "fifo"])
def test_tar_link_or_device_entry_is_refused(tmp_path, kind):
    path = make_tar(tmp_path / "x.tar.gz", [tar_entry("ok.txt", data=b"fine"),
                                            tar_entry("evil", kind, linkname="/etc/passwd")])
    with pytest.raises(ArchiveError, match="not a regular file"):
        member_names(path)


def test_zip_entry_marked_as_symlink_is_refused(tmp_path):
    link = zipfile.ZipInfo("evil")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = make_zip(tmp_path / "x.zip", [("ok.txt", b"fine"), (link, b"/etc/passwd")])
    with pytest.raises(ArchiveError, match="not a regular file"):
        member_names(path)


def test_zip_entry_with_regular_file_mode_is_accepted(tmp_path):
    info = zipfile.ZipInfo("ok.txt")
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    assert member_names(make_zip(tmp_path / "x.zip", [(info, b"fine")])) == ["ok.txt"]


@pytest.mark.parametrize("kind", KINDS)
def test_member_larger_than_max_member_bytes_is_refused(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 10)
    assert member_names(make_archive(tmp_path / f"ok{kind}", {"ten.bin": b"x" * 10})) == ["ten.bin"]
    with pytest.raises(ArchiveError, match="eleven.bin"):
        member_names(make_archive(tmp_path / kind, {"eleven.bin": b"x" * 11}))


def truncated(tmp_path: Path, kind: str) -> Path:
    # Incompressible members, so the cut falls inside member data.
    path = make_archive(tmp_path / f"whole{kind}", {f"m{i}.bin": os.urandom(50_000) for i in range(4)})
    cut = tmp_path / kind
    cut.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    return cut


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_archive_is_an_archive_error(tmp_path, kind):
    with pytest.raises(ArchiveError, match="truncated"):
        member_names(truncated(tmp_path, kind))


def crc_damaged_zip(tmp_path: Path) -> Path:
    path = make_zip(tmp_path / "x.zip", [("m.bin", os.urandom(50_000))])
    data = bytearray(path.read_bytes())
    data[20_000:20_010] = bytes(10)  # inside the stored member data; the central directory stays intact
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("damaged", [lambda tmp: truncated(tmp, "x.tar.gz"), crc_damaged_zip],
                         ids=["truncated-tar.gz", "crc-damaged-zip"])
def test_reading_a_member_of_a_damaged_archive_is_an_archive_error(tmp_path, damaged):
    with pytest.raises(ArchiveError):
        read_all(damaged(tmp_path))


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n" * 40], ids=["empty", "text"])
def test_file_that_is_neither_zip_nor_tar_is_refused(tmp_path, content):
    path = tmp_path / "download.tar.gz"
    path.write_bytes(content)
    with pytest.raises(ArchiveError, match="not a zip or tar archive"):
        member_names(path)


def test_empty_zip_yields_nothing(tmp_path):
    assert member_names(make_zip(tmp_path / "empty.zip", [])) == []


def test_read_member_accepts_exactly_limit_and_refuses_one_byte_more(tmp_path):
    for _, _, open_member in archives.iter_members(make_zip(tmp_path / "x.zip", [("m", b"12345")])):
        assert archives.read_member(open_member, 5) == b"12345"
        with pytest.raises(ArchiveError, match="larger than 4 bytes"):
            archives.read_member(open_member, 4)


@pytest.mark.parametrize("kind", KINDS)
def test_listing_copies_the_chosen_members_out_byte_for_byte_under_names_we_choose(tmp_path, kind):
    path = make_archive(tmp_path / kind, FILES)
    files, _, copies = archives.list_entries(path, lambda name: name.endswith(".bin"), tmp_path / "out")
    assert sorted(name for name, _ in files) == sorted(FILES)
    assert {name: copy.read_bytes() for name, copy in copies.items()} == {"top/sub/b.bin": FILES["top/sub/b.bin"]}
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["0"]


def test_listing_without_a_chosen_member_writes_nothing(tmp_path):
    _, _, copies = archives.list_entries(make_archive(tmp_path / "x.zip", FILES), lambda name: False, tmp_path / "out")
    assert copies == {} and not (tmp_path / "out").exists()
