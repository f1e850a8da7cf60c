"""The outbox: every report, stored durably before any send, until the manager's receipt (MS-DEL-*).

One SQLite file in the state dir, WAL journal, `synchronous=FULL` (fsync at every commit). A
report is stored as the exact signed bytes that will travel, so a resend is byte-identical and
keeps its reportId. The sequence number is allocated in the same transaction as the insert, so
a crash leaves either both or neither. Delivery is at least once, oldest first; a row leaves
only on a receipt. The next attempt time is stored with the row and survives a restart.

    ob = Outbox(state_dir / "outbox.sqlite3", limits=RetentionLimits(max_reports=10_000))
    stored = ob.enqueue(build)        # build(ctx) -> ReportBytes, called inside the transaction
    item = ob.next_due(time.time())   # oldest queued report, if its time has come
    ob.mark_delivered(item.sequence)  # or mark_retry(...) / mark_refused(...)

Retention limits (max reports, max age, max bytes) drop the oldest stored reports; each drop is
counted (droppedReports, MS-DEL-14) and logged. A full disk refuses the new report with
`OutboxFull` and never touches what is already stored; the lost report still uses its sequence
number and is counted in droppedReports with the next report that fits (MS-DEL-20), so the
manager sees the gap. A full disk never stops delivery: a receipt that cannot be recorded is
kept in memory (the report is not sent again) and written when space returns.

Methods are synchronous and thread-safe (one connection, one lock); async code calls them with
`asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from metersync_agent import outbox_salvage as salvage

log = logging.getLogger("metersync.agent.outbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS report (
    sequence        INTEGER PRIMARY KEY,
    report_id       TEXT NOT NULL UNIQUE,
    created_at      REAL NOT NULL,
    body            BLOB NOT NULL,
    signature       TEXT NOT NULL,
    size            INTEGER NOT NULL,
    state           TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'refused')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS baseline (
    device_key TEXT NOT NULL,
    kind       TEXT NOT NULL,
    oid        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (device_key, kind, oid)
);
CREATE TABLE IF NOT EXISTS mailed (
    sequence  INTEGER PRIMARY KEY,
    mailed_at REAL NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES
    ('next_sequence', 1), ('dropped_reports', 0), ('delivered_reports', 0),
    ('refused_reports', 0), ('sequence_epoch', 1);
"""


class OutboxError(Exception):
    """The outbox could not do what was asked; nothing already stored was changed."""


class OutboxFull(OutboxError):
    """The disk (or the configured page limit) is full: the new report was not stored."""


@dataclass(frozen=True)
class RetentionLimits:
    """Beyond these the oldest stored reports are dropped and counted (MS-DEL-13); None: none."""

    max_reports: int | None = None
    max_age_days: int | None = None
    max_bytes: int | None = None


@dataclass(frozen=True)
class EnqueueContext:
    """What a report being built inside the enqueue transaction needs to know."""

    sequence: int
    queue_depth: int  # reports waiting, this one excluded
    oldest_queued_at: float | None  # epoch seconds
    dropped_reports: int
    previous_counters: dict[tuple[str, str, str], int]  # (deviceKey, kind, oid) → last value
    sequence_epoch: int = 1  # MS-DEL-21: a new epoch after a lost outbox


@dataclass(frozen=True)
class ReportBytes:
    """A built report: its id, the exact bytes to send and their signature header value."""

    report_id: str
    body: bytes
    signature: str
    counters: Iterable[tuple[str, str, str, int]] = ()  # (deviceKey, kind, oid, value) to keep


@dataclass(frozen=True)
class StoredReport:
    sequence: int
    report_id: str
    created_at: float
    body: bytes
    signature: str
    attempts: int
    next_attempt_at: float


@dataclass(frozen=True)
class OutboxStatus:
    queued: int
    refused: int
    queued_bytes: int
    oldest_queued_at: float | None
    next_attempt_at: float | None
    dropped_reports: int
    delivered_reports: int
    next_sequence: int
    sequence_epoch: int = 1
    full_since: float | None = None  # epoch seconds: storage refuses new reports (MS-DEL-20)


def _is_full(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "full" in text or getattr(exc, "sqlite_errorcode", None) == 13  # SQLITE_FULL


class Outbox:
    def __init__(
        self,
        path: Path | str,
        *,
        limits: RetentionLimits = RetentionLimits(),
        clock: Callable[[], float] = time.time,
        max_page_count: int | None = None,
    ) -> None:
        """Open (or create) the outbox at `path`.

        max_page_count caps the database file in pages (SQLite's own limit, per connection):
        a way to bound the outbox below the disk's size, and how tests simulate a full disk.
        """
        self.path = Path(path)
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._unstored = 0  # reports refused by a full disk, not yet counted on disk
        self._full_since: float | None = None  # when a full disk began refusing reports
        self._delivered: set[int] = set()  # receipts a full disk has not let us record yet
        self._retry_at: dict[int, float] = {}  # retry times a full disk has not let us record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.salvaged: salvage.Salvage | None = None  # set when a corrupt outbox was replaced
        try:
            self._open(max_page_count)
        except sqlite3.DatabaseError as exc:
            if not salvage.is_corrupt(exc):
                raise
            self._db.close()
            self.salvaged = salvage.quarantine(self.path, str(exc))
            self._open(max_page_count, self.salvaged)

    def _open(self, max_page_count: int | None, found: salvage.Salvage | None = None) -> None:
        """Connect, check the file (MS-DEL-21) and create or upgrade the tables."""
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        if max_page_count is not None:
            self._db.execute(f"PRAGMA max_page_count={int(max_page_count)}")
        salvage.check(self._db)
        with self._tx():  # (executescript would COMMIT on its own)
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    self._db.execute(stmt)
            self._migrate_baselines()
            if found is not None:
                salvage.restore(self._db, found)

    # --- plumbing --------------------------------------------------------------------------

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            if exc_type is None:
                try:
                    self.db.execute("COMMIT")
                    return
                except sqlite3.Error:
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
                    raise
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")

    def _migrate_baselines(self) -> None:
        """Older outboxes kept baselines as SQLite INTEGER, which cannot hold a Counter64
        above 2^63-1; values are now decimal text (the full xs:unsignedLong range)."""
        old = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'last_counter'"
        if self._db.execute(old).fetchone():
            self._db.execute(
                "INSERT OR IGNORE INTO baseline SELECT device_key, kind, oid, CAST(value AS TEXT)"
                " FROM last_counter"
            )
            self._db.execute("DROP TABLE last_counter")

    def _tx(self) -> Outbox._Tx:
        return Outbox._Tx(self._db)

    def _meta(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def _add_meta(self, key: str, delta: int) -> None:
        self._db.execute("UPDATE meta SET value = value + ? WHERE key = ?", (delta, key))

    def close(self) -> None:
        with self._lock:
            # A full disk may refuse the checkpoint; the WAL is then replayed at the next open.
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------

    def enqueue(self, build: Callable[[EnqueueContext], ReportBytes]) -> StoredReport:
        """Allocate the next sequence, build the report and store it, in one transaction.

        `build` runs inside the transaction (the outbox is locked meanwhile); if it raises,
        nothing is stored and the sequence is not used. Raises OutboxFull when there is no room.
        """
        with self._lock:
            self._flush_delivered()
            try:
                with self._tx() as db:
                    if self._unstored:  # MS-DEL-20: the lost reports keep their numbers
                        self._add_meta("next_sequence", self._unstored)
                        self._add_meta("dropped_reports", self._unstored)
                    seq = self._meta("next_sequence")
                    depth, oldest = db.execute(
                        "SELECT COUNT(*), MIN(created_at) FROM report WHERE state = 'queued'"
                    ).fetchone()
                    previous = {
                        (k, kind, oid): int(v)
                        for k, kind, oid, v in db.execute(
                            "SELECT device_key, kind, oid, value FROM baseline"
                        )
                    }
                    ctx = EnqueueContext(
                        seq,
                        int(depth),
                        oldest,
                        self._meta("dropped_reports"),
                        previous,
                        self._meta("sequence_epoch"),
                    )
                    built = build(ctx)
                    now = self._clock()
                    db.execute(
                        "INSERT INTO report (sequence, report_id, created_at, body, signature,"
                        " size) VALUES (?, ?, ?, ?, ?, ?)",
                        (seq, built.report_id, now, built.body, built.signature, len(built.body)),
                    )
                    db.executemany(
                        "INSERT INTO baseline (device_key, kind, oid, value)"
                        " VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET value = excluded.value",
                        [(k, kind, oid, str(v)) for k, kind, oid, v in built.counters],
                    )
                    db.execute("UPDATE meta SET value = ? WHERE key = 'next_sequence'", (seq + 1,))
                    self._apply_retention(now, keep=seq)
            except sqlite3.OperationalError as exc:
                if _is_full(exc):
                    self._unstored += 1
                    if self._full_since is None:
                        self._full_since = self._clock()
                    status = self._status_locked()
                    raise OutboxFull(
                        f"the outbox at {self.path} is full ({exc}); the new report was NOT "
                        f"stored (counted in droppedReports once there is room), the "
                        f"{status.queued} reports already queued are intact. Free disk space "
                        "or lower the outbox retention limits."
                    ) from exc
                raise OutboxError(f"the outbox at {self.path} refused a write: {exc}") from exc
            self._unstored, self._full_since = 0, None
            return StoredReport(seq, built.report_id, now, built.body, built.signature, 0, 0.0)

    def _apply_retention(self, now: float, keep: int) -> None:
        """Drop the oldest rows beyond the limits, never the report just stored (`keep`).

        maxReports and maxBytes bound the unsent (queued) reports; the rejected area is bound
        by maxAgeDays only (MS-DEL-12). Only unsent reports count in droppedReports (MS-DEL-14).
        """
        lim = self.limits
        doomed: list[tuple[int, str, str, str]] = []
        if lim.max_age_days is not None:
            cutoff = now - lim.max_age_days * 86400
            doomed += [
                (s, r, st, "older than maxAgeDays")
                for s, r, st in self._db.execute(
                    "SELECT sequence, report_id, state FROM report"
                    " WHERE created_at < ? AND sequence != ?",
                    (cutoff, keep),
                )
            ]
        gone = {s for s, *_ in doomed}
        if lim.max_reports is not None or lim.max_bytes is not None:
            rows = self._db.execute(
                "SELECT sequence, report_id, size FROM report WHERE state = 'queued'"
                " ORDER BY sequence DESC"
            ).fetchall()
            count = total = 0
            for seq, rid, size in rows:  # newest first: keep while within limits
                if seq in gone:
                    continue
                count += 1
                total += size
                if seq == keep:
                    continue
                if lim.max_reports is not None and count > lim.max_reports:
                    doomed.append((seq, rid, "queued", "beyond maxReports"))
                elif lim.max_bytes is not None and total > lim.max_bytes:
                    doomed.append((seq, rid, "queued", "beyond maxBytes"))
                else:
                    continue
                count -= 1
                total -= size
        if not doomed:
            return
        self._db.executemany("DELETE FROM report WHERE sequence = ?", [(s,) for s, *_ in doomed])
        self._add_meta("dropped_reports", sum(st == "queued" for _, _, st, _ in doomed))
        for seq, rid, st, why in doomed:
            what = "unsent" if st == "queued" else "rejected"
            log.warning(
                "outbox retention dropped %s report sequence=%d reportId=%s (%s)",
                what,
                seq,
                rid,
                why,
            )

    # --- delivery --------------------------------------------------------------------------

    def next_due(self, now: float | None = None) -> StoredReport | None:
        """The oldest queued report if its next attempt time has come, else None."""
        row = self.oldest()
        if row is None:
            return None
        now = self._clock() if now is None else now
        return row if row.next_attempt_at <= now else None

    def oldest(self) -> StoredReport | None:
        """The oldest queued report (delivery is in sequence order)."""
        return self._first_queued("")

    def _first_queued(self, where: str) -> StoredReport | None:
        with self._lock:
            skip = ",".join(str(int(s)) for s in self._delivered)  # receipts held in memory
            row = self._db.execute(
                "SELECT sequence, report_id, created_at, body, signature, attempts,"
                f" next_attempt_at FROM report WHERE state = 'queued' AND sequence NOT IN ({skip})"
                f"{where} ORDER BY sequence LIMIT 1"
            ).fetchone()
        if not row:
            return None
        item = StoredReport(*row)
        held = self._retry_at.get(item.sequence, 0.0)
        if held > item.next_attempt_at:
            item = dataclasses.replace(item, next_attempt_at=held)
        return item

    def mark_delivered(self, sequence: int) -> None:
        """The manager's receipt arrived: the row leaves the outbox.

        On a full disk the receipt is held in memory (the report is not offered again) and
        written with the next write that succeeds; delivery goes on (MS-DEL-20)."""
        with self._lock:
            self._delivered.add(sequence)
            self._flush_delivered()

    def _flush_delivered(self) -> None:
        """Record the receipts held in memory; on a full disk keep holding them."""
        if not self._delivered:
            return
        done = sorted(self._delivered)
        try:
            with self._tx() as db:
                for seq in done:
                    if db.execute("DELETE FROM report WHERE sequence = ?", (seq,)).rowcount:
                        self._add_meta("delivered_reports", 1)
                    db.execute("DELETE FROM mailed WHERE sequence = ?", (seq,))
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            log.warning(
                "outbox full: %d delivered report(s) not yet removed (%s); kept in memory, "
                "not sent again, removed when there is room",
                len(done),
                exc,
            )
            return
        self._delivered.difference_update(done)

    # -- SMTP fallback (an agent with HTTP too keeps a mailed report until an HTTP receipt) --

    def next_unmailed(self) -> StoredReport | None:
        """The oldest queued report not yet handed to the SMTP relay (MS-SMTP-9)."""
        return self._first_queued(" AND sequence NOT IN (SELECT sequence FROM mailed)")

    def mark_mailed(self, sequence: int) -> None:
        """The relay accepted the mail; the report stays queued for HTTP."""
        with self._lock, self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO mailed (sequence, mailed_at) VALUES (?, ?)",
                (sequence, self._clock()),
            )

    def mark_retry(self, sequence: int, delay: float, error: str) -> float:
        """Count a failed attempt and store when to try again; returns that time.

        On a full disk the time is held in memory, so the wait is kept all the same."""
        with self._lock:
            at = self._clock() + max(0.0, delay)
            try:
                with self._tx() as db:
                    db.execute(
                        "UPDATE report SET attempts = attempts + 1, next_attempt_at = ?,"
                        " last_error = ? WHERE sequence = ?",
                        (at, error[:2000], sequence),
                    )
            except sqlite3.OperationalError as exc:
                if not _is_full(exc):
                    raise
                self._retry_at[sequence] = at
            return at

    def mark_refused(self, sequence: int, error: str) -> None:
        """A permanent refusal of this document: keep it for an operator, stop sending it.

        Raises OutboxFull on a full disk (the report stays queued and is tried again)."""
        try:
            with self._lock, self._tx() as db:
                db.execute(
                    "UPDATE report SET state = 'refused', attempts = attempts + 1, last_error = ?"
                    " WHERE sequence = ?",
                    (error[:2000], sequence),
                )
                self._add_meta("refused_reports", 1)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            raise OutboxFull(f"the outbox at {self.path} is full ({exc})") from exc

    # --- reading ---------------------------------------------------------------------------

    def _status_locked(self) -> OutboxStatus:
        q, qb, oldest, nxt = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(created_at), MIN(next_attempt_at)"
            " FROM report WHERE state = 'queued'"
        ).fetchone()
        refused = self._db.execute("SELECT COUNT(*) FROM report WHERE state = 'refused'")
        return OutboxStatus(
            queued=int(q),
            refused=int(refused.fetchone()[0]),
            queued_bytes=int(qb),
            oldest_queued_at=oldest,
            next_attempt_at=nxt,
            dropped_reports=self._meta("dropped_reports"),
            delivered_reports=self._meta("delivered_reports"),
            next_sequence=self._meta("next_sequence"),
            sequence_epoch=self._meta("sequence_epoch"),
            full_since=self._full_since,
        )

    def status(self) -> OutboxStatus:
        with self._lock:
            return self._status_locked()

    def report_ids(self, state: str | None = None) -> list[tuple[int, str]]:
        """(sequence, reportId) of stored reports, oldest first."""
        with self._lock:
            sql = "SELECT sequence, report_id FROM report"
            args: tuple[str, ...] = ()
            if state:
                sql += " WHERE state = ?"
                args = (state,)
            return [(int(s), r) for s, r in self._db.execute(sql + " ORDER BY sequence", args)]

    def get(self, sequence: int) -> StoredReport | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sequence, report_id, created_at, body, signature, attempts,"
                " next_attempt_at FROM report WHERE sequence = ?",
                (sequence,),
            ).fetchone()
        return StoredReport(*row) if row else None
