"""Content-addressed, read-only archive of every received census file.

A received file is copied here, byte for byte, before anything else reads it: its sha256 names the copy
(``archive/ab/abcdef…``), so the same bytes received twice are stored once, and every later stage
(parse, validate, load, share) can name the exact bytes it used.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from censustrace.errors import CensustraceError

_CHUNK = 1 << 20


class ArchiveError(CensustraceError):
    code = "CT-ARCHIVE"


@dataclass(frozen=True, slots=True)
class ArchivedFile:
    """One received file as kept in the archive."""

    sha256: str
    size: int
    original_name: str
    archive_path: Path
    already_archived: bool

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["archive_path"] = str(self.archive_path)
        return data


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def archive_path_for(archive_dir: Path, sha256: str) -> Path:
    return archive_dir / sha256[:2] / sha256


def archive_file(source: Path, archive_dir: Path, *, name: str | None = None) -> ArchivedFile:
    """Copy ``source`` into the archive under its sha256; the source is left untouched.

    The copy is hashed while it is written (one read of the source) and moved into place atomically, so
    a crash leaves either no archive entry or a complete one, never a partial file under a valid name.
    ``name``: the received name, when ``source`` is a receiver's claim of the file.
    """
    received_name = name or source.name
    if not source.is_file():
        raise ArchiveError(f"{received_name}: not a regular file in the landing folder")
    archive_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", dir=archive_dir)
    tmp = Path(tmp_name)
    try:
        with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        sha = digest.hexdigest()
        target = archive_path_for(archive_dir, sha)
        if target.exists():
            if target.stat().st_size != size or sha256_of(target) != sha:
                raise ArchiveError(f"{received_name}: archive entry {sha} exists but does not match its name")
            return ArchivedFile(sha, size, received_name, target, already_archived=True)
        target.parent.mkdir(exist_ok=True)
        tmp.chmod(0o444)
        os.replace(tmp, target)
        return ArchivedFile(sha, size, received_name, target, already_archived=False)
    except OSError as exc:
        raise ArchiveError(f"{received_name}: cannot archive ({exc.strerror})") from exc
    finally:
        tmp.unlink(missing_ok=True)


def verify_archive(archive_dir: Path) -> list[str]:
    """Archive entries whose bytes no longer match their name (should always be empty)."""
    bad = []
    for entry in sorted(archive_dir.glob("??/*")):
        if entry.name.startswith("."):
            continue
        if sha256_of(entry) != entry.name:
            bad.append(entry.name)
    return bad


def copy_into(source: Path, folder: Path) -> Path:
    """Deliver a file into a folder the way an upload would: write aside, then link into place; a
    same-named file still waiting is never replaced (``censustrace.intake.landing.deliver_into``)."""
    from censustrace.intake.landing import deliver_into

    return deliver_into(source, folder)
