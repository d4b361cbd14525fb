"""Reading zip, tar and 7z archives without trusting them.

Members are read straight into memory or copied to files we name ourselves, never extracted
by their own names, and an archive with an entry that could escape a target
directory (absolute path, `..`, link, device) is refused whole: a dataset archive has no
reason to hold one. So is one declaring more than MAX_MEMBERS entries or MAX_TOTAL_BYTES.
"""
import contextlib
import lzma
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from .errors import ImagerecError

MAX_MEMBER_BYTES = 4 * 2**30  # the largest member we accept (Kaggle's inner train.zip is ~0.5 GiB)
MAX_MEMBERS = 2_000_000  # entries of one archive, folders included (ImageNet's train set: 1.3 M)
MAX_TOTAL_BYTES = 64 * 2**30  # declared uncompressed bytes of one archive
SEVEN_ZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"


class ArchiveError(ImagerecError):
    pass


# What the standard library's readers raise on damaged bytes: besides their own errors, a zip of an
# unknown version or method (NotImplementedError) and a name flagged UTF-8 that is not (ValueError).
_DAMAGED = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError,
            NotImplementedError, ValueError)


def _damaged_7z() -> tuple:
    try:
        import py7zr
    except ImportError:
        return ()
    return py7zr.exceptions.ArchiveError, py7zr.exceptions.PasswordRequired  # ArchiveError: CRC, bad file, ...


@contextlib.contextmanager
def _damage_is_archive_error(archive: str):
    try:
        yield
    except ArchiveError:
        raise
    except _DAMAGED + _damaged_7z() as err:
        raise ArchiveError(f"{archive}: corrupt or truncated archive ({' '.join(str(err).split())[:160]})") from None


def sniff(path: Path) -> str | None:
    """"zip", "tar" (plain or compressed), "7z" or None, by content: file names can lie."""
    with open(path, "rb") as f:
        if f.read(len(SEVEN_ZIP_MAGIC)) == SEVEN_ZIP_MAGIC:
            return "7z"
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        return "tar" if tarfile.is_tarfile(path) else None
    except (OSError, EOFError, tarfile.TarError):
        return None


def archive_kind(path: Path) -> str:
    kind = sniff(Path(path))
    if kind is None:
        raise ArchiveError(f"{Path(path).name}: not a zip or tar archive, nor 7z (corrupt or truncated download?)")
    return kind


def _shown(name: str) -> str:
    """A member's name as an error message shows it: quoted, escaped, at most 100 characters."""
    return repr(name[:100]) + ("..." if len(name) > 100 else "")


def _check_name(archive: Path, name: str) -> str:
    if not name.strip("/\\"):
        raise ArchiveError(f"{archive.name}: refusing an entry without a name")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or name.startswith(("/", "\\")) or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise ArchiveError(f"{archive.name}: refusing entry {_shown(name)}: it points outside the archive")
    return str(pure)


def _check_totals(archive: Path, entries: int, total_bytes: int) -> None:
    if entries > MAX_MEMBERS:
        raise ArchiveError(f"{archive.name}: refusing archive: more than {MAX_MEMBERS} entries (archive bomb?)")
    if total_bytes > MAX_TOTAL_BYTES:
        raise ArchiveError(f"{archive.name}: refusing archive: declares more than {MAX_TOTAL_BYTES} bytes "
                           "uncompressed (archive bomb?)")


def _check_size(archive: Path, name: str, size: int) -> None:
    if size > MAX_MEMBER_BYTES:
        raise ArchiveError(f"{archive.name}: refusing entry {_shown(name)}: declares {size} bytes (archive bomb?)")


# Entries: (name, declared size, is a folder, open); `open` is None for folders and 7z members.

def _zip_entries(path: Path) -> Iterator[tuple[str, int, bool, object]]:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        _check_totals(path, len(infos), sum(info.file_size for info in infos))
        for info in infos:
            name = _check_name(path, info.filename)
            if info.is_dir():
                yield name.rstrip("/"), 0, True, None
                continue
            mode = info.external_attr >> 16
            if mode and (mode & 0o170000) not in (0, 0o100000):
                raise ArchiveError(f"{path.name}: refusing entry {_shown(name)}: not a regular file (link or device)")
            _check_size(path, name, info.file_size)
            yield name, info.file_size, False, lambda info=info: zf.open(info)


def _tar_entries(path: Path) -> Iterator[tuple[str, int, bool, object]]:
    entries = total = 0
    with tarfile.open(path) as tf:
        while (member := tf.next()) is not None:
            tf.members.clear()  # streamed: two million headers need not stay in memory
            entries, total = entries + 1, total + member.size
            _check_totals(path, entries, total)  # a tar declares no count up front
            name = _check_name(path, member.name)
            if member.isdir():
                yield name.rstrip("/"), 0, True, None
                continue
            if not member.isfile():
                raise ArchiveError(f"{path.name}: refusing entry {_shown(name)}: not a regular file (link or device)")
            _check_size(path, name, member.size)
            yield name, member.size, False, lambda member=member: tf.extractfile(member)


def _open_7z(path: Path):
    try:
        import py7zr
    except ImportError:
        raise ArchiveError(f"{path.name}: reading 7z archives needs py7zr (pip install py7zr)") from None
    archive = py7zr.SevenZipFile(path)
    if archive.needs_password():
        archive.close()
        raise ArchiveError(f"{path.name}: the 7z archive is encrypted; give it unencrypted")
    return archive


def _7z_entries(path: Path) -> Iterator[tuple[str, int, bool, object]]:
    with _open_7z(path) as archive:
        files = list(archive.files)
    _check_totals(path, len(files), sum(f.uncompressed or 0 for f in files))
    for f in files:
        name = _check_name(path, f.filename)
        if f.is_directory:
            yield name.rstrip("/"), 0, True, None
            continue
        if f.is_symlink or f.is_junction or f.is_socket:
            raise ArchiveError(f"{path.name}: refusing entry {_shown(name)}: not a regular file (link or device)")
        _check_size(path, name, f.uncompressed or 0)
        yield name, f.uncompressed or 0, False, None


def _entries(path: Path):
    kind = archive_kind(path)
    return {"zip": _zip_entries, "tar": _tar_entries, "7z": _7z_entries}[kind](path), kind


def list_entries(path: str | Path, extract: Callable[[str], bool] | None = None,
                 into: Path | None = None) -> tuple[list[tuple[str, int]], list[str], dict[str, Path]]:
    """(name, declared size) of each regular file, the names of declared folders, and {name:
    file} of the regular files `extract` accepts, copied in the same pass into the folder `into`
    as files named 0, 1, ... (never by their own names). Reads no other member's data; a tar is
    still read through once. A layout lists an archive and takes its small or nested files out
    here, so that decoding the images is the only other pass over it."""
    path = Path(path)
    files, folders, extracted = [], [], {}
    entries, kind = _entries(path)
    with _damage_is_archive_error(path.name):
        for name, size, is_dir, open_member in entries:
            if is_dir:
                folders.append(name)
                continue
            files.append((name, size))
            if extract is not None and kind != "7z" and name not in extracted and extract(name):
                into.mkdir(parents=True, exist_ok=True)
                extracted[name] = into / str(len(extracted))
                with open_member() as src, open(extracted[name], "wb") as out:
                    _copy_capped(src, out)
    if extract is not None and kind == "7z":  # a solid 7z is decompressed front to back: one pass
        wanted = sorted({name for name, _ in files if extract(name)})
        if wanted:
            into.mkdir(parents=True, exist_ok=True)
            extracted = _extract_7z(path, wanted, into)
    return files, folders, extracted


def _copy_capped(src, out) -> None:
    """Copy a member's stream, refusing one longer than MAX_MEMBER_BYTES whatever it declared."""
    copied = 0
    while block := src.read(2**20):
        copied += len(block)
        if copied > MAX_MEMBER_BYTES:
            raise ArchiveError(f"an entry is larger than {MAX_MEMBER_BYTES} bytes")
        out.write(block)


class _ScratchWriter:
    """Where py7zr writes one member: a file we named, capped at MAX_MEMBER_BYTES."""

    def __init__(self, path: Path):
        self.file, self.written = open(path, "wb"), 0

    def write(self, data) -> int:
        self.written += len(data)
        if self.written > MAX_MEMBER_BYTES:
            raise ArchiveError(f"an entry is larger than {MAX_MEMBER_BYTES} bytes")
        return self.file.write(data)

    def read(self, size=None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def flush(self) -> None:
        self.file.flush()

    def size(self) -> int:
        return self.written

    def close(self) -> None:
        self.file.close()


def _extract_7z(path: Path, names: list[str], into: Path) -> dict[str, Path]:
    """Extract the named members of a 7z into `into`, as files named 0, 1, ...; {name: file}.

    A solid 7z can only be decompressed front to back, so the members are written out in one
    pass (their declared sizes are capped) rather than held in memory.
    """
    from py7zr.io import Py7zIO, WriterFactory

    made: dict[str, Path] = {}
    writers = []
    root = into.resolve().as_posix()

    class Factory(WriterFactory):
        def create(self, filename: str) -> Py7zIO:
            file = into / str(len(writers))
            writers.append(_ScratchWriter(file))
            made[str(PurePosixPath(filename).relative_to(root))] = file
            return writers[-1]

    Py7zIO.register(_ScratchWriter)
    try:
        with _damage_is_archive_error(path.name), _open_7z(path) as archive:
            archive.extract(path=into.resolve(), targets=names, factory=Factory())
    finally:
        for writer in writers:  # py7zr versions before 1.1 do not close them
            writer.close()
    return made


def _7z_members(path: Path, want, scratch) -> Iterator[tuple[str, int, object]]:
    members = [(name, size) for name, size, is_dir, _ in _7z_entries(path) if not is_dir and want(name)]
    if not members:
        return
    with tempfile.TemporaryDirectory(prefix=".7z-", dir=scratch) as into:
        made = _extract_7z(path, sorted({name for name, _ in members}), Path(into))
        for name, size in members:
            if name not in made:
                raise ArchiveError(f"{path.name}: entry {name!r} was not extracted")
            yield name, size, lambda file=made[name]: open(file, "rb")


def iter_members(path: str | Path, want: Callable[[str], bool] | None = None,
                 scratch: str | Path | None = None) -> Iterator[tuple[str, int, object]]:
    """Yield (name, declared size, open) for each regular file (those `want(name)` accepts);
    `open()` gives a binary stream.

    `open` is only valid until the iteration moves on (tar archives are streamed). A 7z's
    wanted members are first extracted into a temporary folder in `scratch` (the system's
    temporary folder when None), removed when the iteration ends.
    """
    path = Path(path)
    want = want or (lambda name: True)
    kind = archive_kind(path)
    if kind == "7z":
        members = _7z_members(path, want, scratch)
    else:
        entries = _zip_entries(path) if kind == "zip" else _tar_entries(path)
        members = ((name, size, open_member) for name, size, is_dir, open_member in entries
                   if not is_dir and want(name))
    with _damage_is_archive_error(path.name):
        yield from members


def read_member(open_member, limit: int) -> bytes:
    """Read a member, refusing one that turns out longer than `limit` bytes."""
    with _damage_is_archive_error("archive entry"), open_member() as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise ArchiveError(f"an entry is larger than {limit} bytes")
    return data
