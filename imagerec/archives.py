"""Reading zip and tar archives without trusting them.

Members are read straight into memory, never extracted by their own names, and an archive
with an entry that could escape a target directory (absolute path, `..`, link, device) is
refused whole: a dataset archive has no reason to hold one.
"""
import contextlib
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterator

from .errors import ImagerecError

MAX_MEMBER_BYTES = 4 * 2**30  # the largest member we accept (Kaggle's inner train.zip is ~0.5 GiB)


class ArchiveError(ImagerecError):
    pass


_DAMAGED = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError)


@contextlib.contextmanager
def _damage_is_archive_error(archive: str):
    try:
        yield
    except _DAMAGED as err:
        raise ArchiveError(f"{archive}: corrupt or truncated archive ({' '.join(str(err).split())[:160]})") from None


def archive_kind(path: Path) -> str:
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError):
        pass
    raise ArchiveError(f"{path.name}: not a zip or tar archive (corrupt or truncated download?)")


def _check_name(archive: Path, name: str) -> str:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or name.startswith(("/", "\\")) or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise ArchiveError(f"{archive.name}: refusing entry {name!r}: it points outside the archive")
    return str(pure)


def _zip_members(path: Path) -> Iterator[tuple[str, int, object]]:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = _check_name(path, info.filename)
            if info.is_dir():
                continue
            mode = info.external_attr >> 16
            if mode and (mode & 0o170000) not in (0, 0o100000):
                raise ArchiveError(f"{path.name}: refusing entry {name!r}: not a regular file (link or device)")
            if info.file_size > MAX_MEMBER_BYTES:
                raise ArchiveError(f"{path.name}: refusing entry {name!r}: declares {info.file_size} bytes (zip bomb?)")
            yield name, info.file_size, lambda info=info: zf.open(info)


def _tar_members(path: Path) -> Iterator[tuple[str, int, object]]:
    with tarfile.open(path) as tf:
        for member in tf:
            name = _check_name(path, member.name)
            if member.isdir():
                continue
            if not member.isfile():
                raise ArchiveError(f"{path.name}: refusing entry {name!r}: not a regular file (link or device)")
            if member.size > MAX_MEMBER_BYTES:
                raise ArchiveError(f"{path.name}: refusing entry {name!r}: {member.size} bytes is too large")
            yield name, member.size, lambda member=member: tf.extractfile(member)


def iter_members(path: str | Path) -> Iterator[tuple[str, int, object]]:
    """Yield (name, declared size, open) for each regular file; `open()` gives a binary stream.

    `open` is only valid until the iteration moves on (tar archives are streamed).
    """
    path = Path(path)
    members = _zip_members(path) if archive_kind(path) == "zip" else _tar_members(path)
    with _damage_is_archive_error(path.name):
        yield from members


def member_names(path: str | Path) -> list[str]:
    return [name for name, _, _ in iter_members(path)]


def directory_names(path: str | Path) -> list[str]:
    """The folders an archive declares as entries of their own (an empty folder exists only so)."""
    path = Path(path)
    with _damage_is_archive_error(path.name):
        if archive_kind(path) == "zip":
            with zipfile.ZipFile(path) as zf:
                names = [info.filename for info in zf.infolist() if info.is_dir()]
        else:
            with tarfile.open(path) as tf:
                names = [member.name for member in tf if member.isdir()]
    return [_check_name(path, name).rstrip("/") for name in names]


def read_member(open_member, limit: int) -> bytes:
    """Read a member, refusing one that turns out longer than `limit` bytes."""
    with _damage_is_archive_error("archive entry"), open_member() as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise ArchiveError(f"an entry is larger than {limit} bytes")
    return data


def extract_member(path: str | Path, name: str, dest: str | Path) -> None:
    """Write one member to `dest` (a path we choose, never the member's own name)."""
    for member, _, open_member in iter_members(path):
        if member == name:
            with _damage_is_archive_error(Path(path).name), open_member() as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 2**20)
            return
    raise ArchiveError(f"{Path(path).name}: has no entry {name!r}")
