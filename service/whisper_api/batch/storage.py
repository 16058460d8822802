"""Where a batch reads recordings and writes transcripts: a local folder or `gs://bucket/prefix`.

Both kinds answer the same four questions: what is there (`list`, with each file's size and
version), give me a file (`open`: a seekable binary stream, pinned to the listed version), store
this (`write`: atomic, so no half-written transcript is ever visible), and where is it (`url`).

A local folder may hold entries that are not files one can read: dangling or looping symbolic
links, links to folders, named pipes, sockets, devices, files or folders without read
permission. `list` yields each of them with the reason (`unusable`) instead of failing the whole
listing, and `open` never blocks: it opens without waiting (O_NONBLOCK) and refuses anything that
is not a regular file before reading a byte, so a FIFO put in place after the listing cannot hang
the run either. A local name that is not UTF-8 is listed as os.fsdecode makes it (its undecodable
bytes as surrogates), which opens the very bytes the file system has; what is written for it is
named in text (see names). Object names on GCS are always UTF-8.

Google Cloud Storage: an object becomes visible only once its upload completes, and every call
goes through google-cloud-storage's retry policy (`DEFAULT_RETRY`: 429, 5xx and connection errors,
exponential backoff). Uploads are retried too: each write stores deterministic content under a
fixed name, so repeating it is harmless.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol

if TYPE_CHECKING:
    from google.cloud.storage import Bucket, Client

GCS_SCHEME = "gs://"
# What a download reads ahead of the decoder: big enough for few requests, small enough that an
# hours-long recording never sits in memory whole.
GCS_READ_CHUNK = 8 * 1024 * 1024
_PARTIAL_SUFFIX = ".partial"
# google.api_core warns at import that it will drop this Python in a year: noise in a CLI's output.
warnings.filterwarnings("ignore", message=r".*Google will stop supporting", category=FutureWarning)


class StorageError(RuntimeError):
    """A location that cannot be used (missing folder, bad URL); the message says which and why."""


class NotAFile(StorageError):
    """An entry that `open` refuses: not a regular file, or not readable."""


Unusable = Literal[
    "dangling_symlink",
    "symlink_loop",
    "symlink_to_folder",
    "fifo",
    "socket",
    "device",
    "not_a_file",
    "unreadable",
]
UNUSABLE_MESSAGES: dict[Unusable, str] = {
    "dangling_symlink": "A symbolic link to something that does not exist.",
    "symlink_loop": "A symbolic link that loops (to itself, or through other links).",
    "symlink_to_folder": "A symbolic link to a folder: not followed (a link could loop); "
    "give that folder as an input of its own.",
    "fifo": "A named pipe (FIFO), not a file.",
    "socket": "A socket, not a file.",
    "device": "A device, not a file.",
    "not_a_file": "Not a regular file.",
    "unreadable": "Not readable: permission denied.",
}


@dataclass(frozen=True)
class StoredFile:
    """One file of a location: its path relative to the location (`/`-separated), size and version.

    The version is the object's generation on GCS and the modification time (ns) of a local file:
    a rewritten recording gets a new version, so its old transcripts are not mistaken for its own.
    """

    path: str
    size: int
    version: str
    unusable: Unusable | None = None  # why the entry cannot be read; None for a readable file


class Location(Protocol):
    url: str

    def list(self) -> Iterator[StoredFile]:
        """Every file under the location, in no particular order; entries that cannot be read
        come with their `unusable` reason."""
        ...

    def open(self, item: StoredFile) -> AbstractContextManager[BinaryIO]:
        """A seekable binary stream of `item` (at its listed version where the store keeps versions)."""
        ...

    def read(self, path: str) -> bytes:
        """The whole content of a (small) file, such as a manifest part."""
        ...

    def write(self, path: str, data: bytes, content_type: str) -> None:
        """Store `data` at `path` atomically: readers see the old content or the new, never a part."""
        ...

    def url_of(self, path: str) -> str: ...


def is_safe_path(path: str) -> bool:
    """A relative `/`-separated path that stays where it is put: no empty, `.` or `..` segment,
    nor a `.` or `..` between backslashes (`..\\..\\x.mp3`, which climbs wherever a backslash
    separates folders).

    Object names are anyone's choice (`a/../../x.mp3`, `/etc/x.mp3`); copied into a local path
    they could land outside the output folder. Any other backslash is a plain character: the
    outputs of a name that is not UTF-8 have one in each `\\xNN` escape (`caf\\xe9.wav.srt`).
    """
    parts, pieces = set(path.split("/")), set(re.split(r"[/\\]", path))
    return not {"", ".", ".."} & parts and not {".", ".."} & pieces


def relative_location(outer: Location, inner: Location) -> str | None:
    """Where `inner` lies inside `outer`, as a path relative to it (`""` when they are the same),
    or None when it lies elsewhere."""
    if isinstance(outer, LocalFolder) and isinstance(inner, LocalFolder):
        if inner.root == outer.root:
            return ""
        return inner.root.relative_to(outer.root).as_posix() if outer.root in inner.root.parents else None
    if isinstance(outer, GcsPrefix) and isinstance(inner, GcsPrefix):
        if outer.bucket_name != inner.bucket_name:
            return None
        if inner.prefix == outer.prefix:
            return ""
        if not outer.prefix:
            return inner.prefix
        if inner.prefix.startswith(outer.prefix + "/"):
            return inner.prefix[len(outer.prefix) + 1 :]
    return None


def open_location(url: str) -> Location:
    """`gs://bucket/prefix` → a GCS location, anything else → a local folder."""
    if url.startswith(GCS_SCHEME):
        bucket, _, prefix = url.removeprefix(GCS_SCHEME).partition("/")
        if not bucket:
            raise StorageError(f"{url!r} names no bucket: use gs://BUCKET or gs://BUCKET/PREFIX.")
        return GcsPrefix(bucket, prefix.strip("/"))
    return LocalFolder(Path(url))


class LocalFolder:
    """A folder on this machine; files are replaced atomically with a temporary file and os.replace."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.url = str(self.root)

    def list(self) -> Iterator[StoredFile]:
        if not self.root.is_dir():
            raise StorageError(f"{self.root} is not a folder (or does not exist).")
        yield from self._walk(os.fsencode(self.root), "")

    def _walk(self, folder: bytes, relative: str) -> Iterator[StoredFile]:
        """Depth-first in name order, with bytes names so that none is lost or changed."""
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            path = relative + os.fsdecode(entry.name)
            if entry.is_dir(follow_symlinks=False):
                try:
                    yield from self._walk(entry.path, path + "/")
                except PermissionError:
                    yield StoredFile(path, 0, "0", "unreadable")
            elif not path.endswith(_PARTIAL_SUFFIX):  # an interrupted write: never an input or output
                yield _describe(entry, path)

    def _inside(self, path: str) -> Path:
        if not is_safe_path(path):
            raise StorageError(f"{path!r} is not a relative path inside {self.root}.")
        return self.root / path

    def open(self, item: StoredFile) -> AbstractContextManager[BinaryIO]:
        return _open_regular_file(self._inside(item.path))

    def read(self, path: str) -> bytes:
        return self._inside(path).read_bytes()

    def write(self, path: str, data: bytes, content_type: str) -> None:
        target = self._inside(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=_PARTIAL_SUFFIX
        )
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def url_of(self, path: str) -> str:
        return str(self.root / path)


def _describe(entry: os.DirEntry[bytes], path: str) -> StoredFile:
    """A listed entry: a readable regular file with its size and version, or why it is not one."""
    try:
        info = entry.stat()  # follows a symbolic link
    except FileNotFoundError:
        return StoredFile(path, 0, "0", "dangling_symlink")
    except OSError as error:
        reason: Unusable = "symlink_loop" if error.errno == errno.ELOOP else "unreadable"
        return StoredFile(path, 0, "0", reason)
    version = str(info.st_mtime_ns)
    unusable: Unusable | None = None
    if stat.S_ISDIR(info.st_mode):
        unusable = "symlink_to_folder"
    elif stat.S_ISFIFO(info.st_mode):
        unusable = "fifo"
    elif stat.S_ISSOCK(info.st_mode):
        unusable = "socket"
    elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        unusable = "device"
    elif not stat.S_ISREG(info.st_mode):
        unusable = "not_a_file"
    elif not os.access(entry.path, os.R_OK):
        unusable = "unreadable"
    return StoredFile(path, info.st_size if stat.S_ISREG(info.st_mode) else 0, version, unusable)


def _open_regular_file(path: Path) -> BinaryIO:
    """Opened without blocking (a FIFO would wait for a writer), checked to be a regular file,
    then read as usual."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError as error:
        raise NotAFile(UNUSABLE_MESSAGES["unreadable"]) from error
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotAFile(UNUSABLE_MESSAGES["not_a_file"])
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


class GcsPrefix:
    """Objects under `gs://bucket/prefix/`, through google-cloud-storage (ADC, or the emulator that
    STORAGE_EMULATOR_HOST names)."""

    def __init__(self, bucket: str, prefix: str, client: Client | None = None) -> None:
        self.bucket_name = bucket
        self.prefix = prefix
        self.url = f"{GCS_SCHEME}{bucket}/{prefix}".rstrip("/")
        self._client = client
        self._bucket: Bucket | None = None

    @property
    def bucket(self) -> Bucket:
        if self._bucket is None:
            self._bucket = (self._client or _default_client()).bucket(self.bucket_name)
        return self._bucket

    def _name(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def list(self) -> Iterator[StoredFile]:
        from google.cloud.storage.retry import DEFAULT_RETRY

        start = f"{self.prefix}/" if self.prefix else ""
        for blob in self.bucket.client.list_blobs(self.bucket, prefix=start or None, retry=DEFAULT_RETRY):
            if blob.name.endswith("/"):
                continue  # a "folder" placeholder made by the console
            yield StoredFile(blob.name[len(start) :], int(blob.size or 0), str(blob.generation))

    def open(self, item: StoredFile) -> AbstractContextManager[BinaryIO]:
        from google.cloud.storage.retry import DEFAULT_RETRY

        blob = self.bucket.blob(self._name(item.path), generation=int(item.version))
        return blob.open("rb", chunk_size=GCS_READ_CHUNK, retry=DEFAULT_RETRY)  # type: ignore[return-value]

    def read(self, path: str) -> bytes:
        from google.cloud.storage.retry import DEFAULT_RETRY

        return self.bucket.blob(self._name(path)).download_as_bytes(retry=DEFAULT_RETRY)

    def write(self, path: str, data: bytes, content_type: str) -> None:
        from google.cloud.storage.retry import DEFAULT_RETRY

        blob = self.bucket.blob(self._name(path))
        blob.upload_from_string(data, content_type=content_type, retry=DEFAULT_RETRY)

    def url_of(self, path: str) -> str:
        return f"{GCS_SCHEME}{self.bucket_name}/{self._name(path)}"


def _default_client() -> Client:
    from google.cloud import storage

    return storage.Client()
