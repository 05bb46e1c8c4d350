"""Fetching, checking and caching uploaded code archives on a worker.

Archives are gzip or plain tar files stored in Redis by SHA-256. A worker extracts each archive once into
``<work_dir>/code/<sha256>`` and copies it into every trial's working directory. Extraction rejects absolute
paths, ``..``, links that point outside the archive, device files and archives over the size or file-count limit.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from hpo_core.errors import SpecError


class ArchiveError(SpecError):
    """An uploaded archive is unsafe or too large."""

    def __init__(self, message: str, fix: str = "upload a tar.gz of the model directory"):
        super().__init__("file", message, fix=fix)


def check_archive(data: bytes, max_bytes: int, max_files: int) -> list[tarfile.TarInfo]:
    """Check an archive without extracting it and return its members.

    Raises:
        ArchiveError: naming the offending member and the rule it breaks.
    """
    if len(data) > max_bytes:
        raise ArchiveError(f"archive is {len(data)} bytes, over the limit of {max_bytes}")
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
        members = archive.getmembers()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"not a readable tar or tar.gz archive ({exc})") from None
    if len(members) > max_files:
        raise ArchiveError(f"archive holds {len(members)} entries, over the limit of {max_files}")
    total = 0
    for member in members:
        name = member.name
        parts = Path(name).parts
        if name.startswith("/") or Path(name).is_absolute():
            raise ArchiveError(f"member {name!r} has an absolute path")
        if ".." in parts:
            raise ArchiveError(f"member {name!r} climbs out of the archive with '..'")
        if member.isdev() or member.isfifo():
            raise ArchiveError(f"member {name!r} is a device or pipe")
        if member.issym() or member.islnk():
            target = Path(os.path.normpath(Path(name).parent / member.linkname)) if member.issym() \
                else Path(os.path.normpath(member.linkname))
            if member.linkname.startswith("/") or (target.parts and target.parts[0] == ".."):
                raise ArchiveError(f"link {name!r} points outside the archive ({member.linkname!r})")
        total += max(member.size, 0)
        if total > max_bytes * 10:
            raise ArchiveError(f"archive unpacks to more than {max_bytes * 10} bytes")
    return members


def extract_archive(data: bytes, destination: Path, max_bytes: int, max_files: int) -> None:
    """Extract a checked archive into ``destination``, which must not exist yet."""
    check_archive(data, max_bytes, max_files)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        archive.extractall(destination, filter="data")


def cached_code_dir(work_dir: Path, digest: str, fetch, max_bytes: int, max_files: int) -> Path:
    """The extracted code of archive ``digest``, extracting it on first use.

    Args:
        fetch: returns the archive bytes, or ``None`` when the store no longer has them.

    Raises:
        ArchiveError: the archive is missing from the store or unsafe.
    """
    if not digest or any(c not in "0123456789abcdef" for c in digest):
        raise ArchiveError(f"code hash {digest!r} is not a SHA-256 hex digest")
    target = work_dir / "code" / digest
    if target.is_dir():
        return target
    data = fetch()
    if data is None:
        raise ArchiveError(f"code archive {digest} is not in the store", fix="submit the task again with its code")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=target.parent))
    try:
        extract_archive(data, staging / "root", max_bytes, max_files)
        try:
            os.rename(staging / "root", target)
        except OSError:
            if not target.is_dir():  # another process won the race only if the target now exists
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def model_root(code_dir: Path, model_dir: str | None) -> Path:
    """The directory the trial runs in: ``--model-dir`` inside the archive, else its single top directory."""
    if model_dir:
        candidate = (code_dir / model_dir).resolve()
        if not candidate.is_relative_to(code_dir.resolve()) or not candidate.is_dir():
            raise ArchiveError(f"--model-dir {model_dir!r} is not a directory in the uploaded archive",
                               fix="name a directory that the archive contains")
        return candidate
    entries = [p for p in code_dir.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return code_dir


def pack_directory(directory: Path) -> bytes:
    """A tar.gz of ``directory`` with the directory's name as the top entry, as WMLA clients build it.

    The archive depends only on the files' names, contents and modes (times and owners are zeroed, entries
    sorted), so packing the same directory twice gives the same SHA-256 and the store keeps one copy.
    """
    buffer = io.BytesIO()
    skip = {"__pycache__", ".git", ".venv", ".openhpo"}

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if any(part in skip for part in Path(info.name).parts):
            return None
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed:
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive:
            archive.add(directory, arcname=directory.resolve().name, filter=keep)
    return buffer.getvalue()
