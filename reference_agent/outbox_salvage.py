"""A corrupt outbox at start-up (MS-DEL-21): quarantine the file, salvage what is readable.

The damaged file (and its -wal and -shm) is renamed `<name>.corrupt-<UTC time>` and kept for an
operator; the rows that can still be read are copied into a fresh outbox, oldest first, with
their exact signed bytes. They keep their place ahead of every new report (negative table
keys; the bodies keep their own sequence numbers). The new outbox starts a new sequence epoch,
whose sequence numbers start again at 1, so that the manager sees the loss as such.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("metersync.agent.outbox")

COLUMNS = "sequence, report_id, created_at, body, signature, size, state, attempts, last_error"
CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


@dataclass(frozen=True)
class Salvage:
    quarantined: Path
    rows: list[tuple]  # COLUMNS, oldest first
    meta: dict[str, int]  # what of the meta table could be read
    reason: str


def is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    code = getattr(exc, "sqlite_errorcode", None)
    return code in CORRUPT_CODES or "malformed" in text or "not a database" in text


def check(db: sqlite3.Connection) -> None:
    """Raise sqlite3.DatabaseError when the open outbox is damaged."""
    result = db.execute("PRAGMA quick_check").fetchall()
    if [r[0] for r in result] != ["ok"]:
        raise sqlite3.DatabaseError("database disk image is malformed: " + result[0][0])


def quarantine(path: Path, reason: str) -> Salvage:
    """Move the damaged outbox aside and read from it what can be read."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            src.rename(Path(str(moved) + suffix))
    rows, meta = _read(moved)
    return Salvage(moved, rows, meta, reason)


def _read(path: Path) -> tuple[list[tuple], dict[str, int]]:
    """Rows readable from the front and from the back (a bad page in between is skipped)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        # a file shorter than its header says is refused unless the schema check is relaxed
        db.execute("PRAGMA writable_schema=ON")
    except sqlite3.Error:
        return [], {}
    try:
        front = _scan(db, "ASC")
        seen = {r[0] for r in front}
        back = [r for r in _scan(db, "DESC") if r[0] not in seen]
        meta = {}
        with contextlib.suppress(sqlite3.Error):
            meta = {k: int(v) for k, v in db.execute("SELECT key, value FROM meta")}
        return front + back[::-1], meta
    finally:
        db.close()


def _scan(db: sqlite3.Connection, order: str) -> list[tuple]:
    out: list[tuple] = []
    try:
        for row in db.execute(f"SELECT {COLUMNS} FROM report ORDER BY sequence {order}"):
            if _sound(row):
                out.append(row)
    except sqlite3.Error:
        pass
    return out


def _sound(row: tuple) -> bool:
    """A row whose values have the types and states the outbox writes (a damaged page can
    still yield rows of garbage)."""
    rid, body, size, state = row[1], row[3], row[5], row[6]
    kinds = (int, str, float, bytes, str, int, str, int)
    ok = all(isinstance(v, k) for v, k in zip(row, kinds, strict=False))
    return ok and state in ("queued", "refused") and size == len(body) and len(rid) == 36


def restore(db: sqlite3.Connection, found: Salvage) -> int:
    """Write the salvaged rows and the new epoch into the fresh outbox (inside a transaction);
    returns the new epoch."""
    rows = found.rows
    top = max((r[0] for r in rows), default=0) + 1
    db.executemany(
        f"INSERT INTO report ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(r[0] - top, *r[1:]) for r in rows],
    )
    old = found.meta
    epoch = old["sequence_epoch"] + 1 if "sequence_epoch" in old else int(time.time())
    kept = ("dropped_reports", "delivered_reports", "refused_reports")
    keep = {k: old[k] for k in kept if k in old}
    for key, value in {**keep, "sequence_epoch": epoch, "next_sequence": 1}.items():
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    lost = old.get("next_sequence", 0) - 1 - old.get("delivered_reports", 0)
    lost -= old.get("dropped_reports", 0) + len(rows)
    log.error(
        "the outbox was corrupt (%s). It was moved to %s and kept for inspection; %d stored "
        "report(s) were salvaged and will be sent, %s. A new sequence epoch %d starts at "
        "sequence 1, so the manager shows the loss. What to do: check the disk and the file "
        "system of %s (dmesg, smartctl); keep the moved file until the manager shows the "
        "salvaged reports, then delete it.",
        found.reason,
        found.quarantined,
        len(rows),
        f"about {lost} were lost" if lost > 0 and old else "the number lost is unknown",
        epoch,
        found.quarantined.parent,
    )
    return epoch
