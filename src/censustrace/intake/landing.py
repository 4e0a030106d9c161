"""The landing folder: where schools' census files arrive, and how a receiver takes one without races.

Uploads are written aside as dot-files and renamed into place; only complete files are listed. A
receiver **claims** a file by renaming it (atomically, on the same file system) into the private folder
``landing/.receiving/`` under a name of its own, ``<token>~<received name>``. From then on the upload's
name in the landing folder is free: a same-named re-upload arriving while the first is being archived
lands beside it, untouched, and is received on its own. The receiver removes only its own claim, never
a file by its landing name, so nothing can be deleted unarchived.

A claim left behind by a crash is listed again by :func:`pending_files` once it is older than
``STALE_CLAIM_SECONDS`` (a receive takes seconds), and a receiver asked for a landing path that has gone
takes over the claim of the same name (an Airflow retry of the same task).

``deliver_into`` puts files into the landing folder the way an upload does, and never replaces a
same-named file still waiting there (``CT-LANDING-EXISTS``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from censustrace.errors import CensustraceError

# Uploads in progress are written as dot-files and renamed into place; only complete files are taken.
CENSUS_SUFFIXES = (".xml", ".csv")
CLAIM_DIR: Final = ".receiving"
_SEP: Final = "~"
#: A claim older than this (seconds since it was taken) is taken to be left by a crashed receiver.
STALE_CLAIM_SECONDS: Final = 3600


class LandingError(CensustraceError):
    code = "CT-LANDING"


EXISTS: Final = "CT-LANDING-EXISTS"  # deliver: a same-named file is still waiting
GONE: Final = "CT-LANDING-GONE"  # receive: the file is no longer there (another receiver took it)
CHANGED: Final = "CT-LANDING-CHANGED"  # receive: the file changed while it was being archived


def claim_dir(landing_dir: Path) -> Path:
    return landing_dir / CLAIM_DIR


def is_census_file(path: Path) -> bool:
    return not path.name.startswith(".") and path.suffix.lower() in CENSUS_SUFFIXES


def pending_files(landing_dir: Path, *, stale_after: float = STALE_CLAIM_SECONDS) -> list[Path]:
    """Census files waiting in the landing folder, in a stable order, then claims left by a crashed
    receiver (older than ``stale_after`` seconds)."""
    if not landing_dir.is_dir():
        return []
    waiting = sorted(p for p in landing_dir.iterdir() if p.is_file() and is_census_file(p))
    claims = claim_dir(landing_dir)
    stale: list[Path] = []
    if claims.is_dir():
        now = time.time()
        for p in sorted(claims.iterdir()):
            try:
                # ctime: set by the rename that made the claim (mtime is the upload's).
                if p.is_file() and _SEP in p.name and now - p.stat().st_ctime >= stale_after:
                    stale.append(p)
            except FileNotFoundError:  # removed meanwhile by its receiver
                continue
    return waiting + stale


def original_name(path: Path) -> str:
    """The received name of a landed file or of a claim."""
    if path.parent.name == CLAIM_DIR and _SEP in path.name:
        return path.name.split(_SEP, 1)[1]
    return path.name


@dataclass(frozen=True, slots=True)
class Claim:
    """A landed file taken by one receiver: ``path`` is private to it; ``name`` the received name."""

    path: Path
    name: str
    landing_path: Path
    stat: os.stat_result

    def unchanged(self) -> bool:
        """Whether nobody wrote to the file since it was claimed (same inode, size and mtime)."""
        try:
            now = self.path.stat()
        except FileNotFoundError:
            return False
        was = self.stat
        return (now.st_ino, now.st_size, now.st_mtime_ns) == (was.st_ino, was.st_size, was.st_mtime_ns)

    def release(self) -> None:
        """Remove this receiver's claim (the archive holds the bytes): never a file by landing name."""
        self.path.unlink(missing_ok=True)
        _tidy(self.path.parent)

    def give_back(self) -> Path:
        """Put the file back under its landing name if that is free (else it stays claimed, to be
        listed again once stale)."""
        try:
            os.link(self.path, self.landing_path)
        except FileExistsError:
            return self.path
        except FileNotFoundError:
            return self.path
        self.path.unlink(missing_ok=True)
        _tidy(self.path.parent)
        return self.landing_path


def _tidy(folder: Path) -> None:
    """Remove the claim folder once empty, so the landing folder holds only what waits (a receiver
    racing to claim recreates it, see :func:`claim`)."""
    with contextlib.suppress(OSError):  # not empty: another receiver's claim is in it
        folder.rmdir()


def claim(path: Path) -> Claim:
    """Take a landed file (or a claim, to take it over) by renaming it into the claim folder.

    Of two receivers racing for one file exactly one wins; the other gets CT-LANDING-GONE. A landing
    path that has gone is looked for among the claims (a retry of a receiver that crashed)."""
    landing_dir = path.parent.parent if path.parent.name == CLAIM_DIR else path.parent
    name = original_name(path)
    folder = claim_dir(landing_dir)
    target = folder / f"{secrets.token_hex(8)}{_SEP}{name}"
    sources = [path]
    if path.parent.name != CLAIM_DIR and folder.is_dir():
        sources += sorted(p for p in folder.glob(f"*{_SEP}{name}") if original_name(p) == name)
    for source in sources:
        for _ in range(100):  # the folder may be tidied away by another receiver between mkdir and rename
            folder.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(source, target)
            except FileNotFoundError:
                if folder.is_dir():
                    break  # the source has gone: taken by another receiver
                continue
            return Claim(target, name, landing_dir / name, target.stat())
    raise LandingError(f"{name}: no longer in the landing folder (taken by another receiver?)", code=GONE)


def deliver_into(source: Path, folder: Path, *, name: str | None = None) -> Path:
    """Deliver a file into a folder the way an upload would: write aside, then link into place, so
    the file appears whole and a same-named file already waiting is never replaced (CT-LANDING-EXISTS)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = name or source.name
    target = folder / name
    tmp = folder / f".{name}.{secrets.token_hex(4)}.part"
    try:
        shutil.copyfile(source, tmp)
        try:
            os.link(tmp, target)  # fails if the name is taken: unlike a rename, never replaces
        except FileExistsError:
            raise LandingError(
                f"{name}: a file of that name is still waiting in {folder.name}; not replaced", code=EXISTS
            ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def claim_copy(source: Path, landing_dir: Path) -> Path:
    """A copy of ``source`` put straight into the claim folder (``censustrace ingest``: the file is
    received at once, so it never waits under its name and never meets a same-named upload)."""
    folder = claim_dir(landing_dir)
    return deliver_into(source, folder, name=f"{secrets.token_hex(8)}{_SEP}{source.name}")
