"""Backup and restore of the two databases (warehouse and lineage store), see docs/operations.md.

SQLite: an online copy with SQLite's backup API (consistent while the pipeline writes). PostgreSQL:
``pg_dump --format=custom`` and ``pg_restore --clean --if-exists`` (the client tools must be on PATH;
the password goes through ``PGPASSWORD``, never on a command line). A ``manifest.json`` records what was
dumped, its sha256 and each store's Alembic revision, and restore checks it before touching anything.

The received files (``archive/``), quarantine and outboxes are plain files: back them up with the
file-level tool you use for the rest of the host (they are content-addressed and never rewritten).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import URL, make_url

from censustrace.config import Settings
from censustrace.errors import CensustraceError

MANIFEST: Final = "manifest.json"


class BackupError(CensustraceError):
    code = "CT-BACKUP"


@dataclass(frozen=True, slots=True)
class _Store:
    name: str  # warehouse | lineage
    url: URL


def _stores(settings: Settings) -> list[_Store]:
    return [
        _Store("warehouse", make_url(settings.warehouse_db_url)),
        _Store("lineage", make_url(settings.lineage_db_url)),
    ]


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and the environment that carries it."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not on PATH: install the PostgreSQL client tools to back up PostgreSQL")
    return found


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # libpq's messages name the database and host, never the password (it is not on the line).
        raise BackupError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")


def _revision(store: _Store) -> str | None:
    from censustrace.db import make_engine
    from censustrace.lineage.store.db import current_revision as lineage_revision
    from censustrace.warehouse.db import current_revision as warehouse_revision

    engine = make_engine(store.url)
    try:
        return (warehouse_revision if store.name == "warehouse" else lineage_revision)(engine)
    finally:
        engine.dispose()


def backup(settings: Settings, folder: Path) -> dict[str, Any]:
    """Dump both stores into ``folder`` (created; must be empty) and write the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise BackupError(f"{folder} is not empty: back up into a new folder")
    items = []
    for store in _stores(settings):
        if store.url.get_backend_name() == "sqlite":
            target = folder / f"{store.name}.sqlite"
            source = sqlite3.connect(str(store.url.database))
            try:
                copy = sqlite3.connect(str(target))
                with copy:
                    source.backup(copy)
                copy.close()
            finally:
                source.close()
        else:
            target = folder / f"{store.name}.pgdump"
            uri, env = _libpq(store.url)
            _run([_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={target}", uri], env, "pg_dump")
        items.append(
            {
                "store": store.name,
                "backend": store.url.get_backend_name(),
                "file": target.name,
                "sha256": _sha256(target),
                "size": target.stat().st_size,
                "revision": _revision(store),
            }
        )
    manifest = {"created_at": dt.datetime.now(dt.UTC).isoformat(), "stores": items}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def restore(settings: Settings, folder: Path) -> dict[str, Any]:
    """Restore both stores from a backup folder, after checking every file against the manifest."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{folder / MANIFEST}: not a censustrace backup ({type(exc).__name__})") from exc
    by_name = {item["store"]: item for item in manifest.get("stores", [])}
    stores = _stores(settings)
    for store in stores:
        item = by_name.get(store.name)
        if item is None:
            raise BackupError(f"{folder}: the backup holds no {store.name} store")
        if item["backend"] != store.url.get_backend_name():
            raise BackupError(
                f"{folder}: the {store.name} backup is {item['backend']}, the configured store is "
                f"{store.url.get_backend_name()}"
            )
        if _sha256(folder / item["file"]) != item["sha256"]:
            raise BackupError(f"{folder / item['file']}: sha256 differs from the manifest; not restored")
    from censustrace.warehouse.db import dispose_engines

    dispose_engines()  # no pooled connection of this process may hold the files being replaced
    for store in stores:
        item = by_name[store.name]
        source = folder / item["file"]
        if item["backend"] == "sqlite":
            target = Path(str(store.url.database))
            if not target.exists():  # stale journal files of a lost database; a live one keeps its own
                for suffix in ("-wal", "-shm"):
                    Path(f"{target}{suffix}").unlink(missing_ok=True)
            restored = sqlite3.connect(str(target))
            try:
                backup_db = sqlite3.connect(str(source))
                with restored:
                    backup_db.backup(restored)
                backup_db.close()
            finally:
                restored.close()
        else:
            from censustrace.db import create_postgres_database

            create_postgres_database(store.url)
            uri, env = _libpq(store.url)
            _run(
                [_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
                 f"--dbname={uri}", str(source)],
                env,
                "pg_restore",
            )  # fmt: skip
    dispose_engines()  # cached engines may hold connections to the old files/databases
    # An older backup predates later erasures: put them back (tombstones and the retention journal live
    # outside the databases), so a restore never brings erased values back.
    from censustrace.compliance.erasure import reapply_tombstones

    reapplied = reapply_tombstones(settings)
    return {
        "restored": [s.name for s in stores],
        "from": str(folder),
        "created_at": manifest.get("created_at"),
        "erasures_reapplied": reapplied,
    }
