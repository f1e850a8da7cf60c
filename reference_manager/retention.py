"""Retention: what the manager removes after how long, and what it always keeps.

Three periods, each off (keep forever) unless set:
- readings: device snapshots polled longer ago than this, with their counters, supplies,
  alerts and collection errors. Kept whatever their age: each device's newest applied
  snapshot (its current state, the console and the read API). Rows a newer reading shares
  (schema 13) move to it.
- collection errors: the collection errors of snapshots polled longer ago than this (the
  snapshot itself stays, by the readings period).
- reports: report ids, digests and sequences (MS-DEL-19) received longer ago than this, and
  never sooner than the replay horizon of 400 days; a report stays while a stored snapshot
  is of it. The highest purged sequence stays per agent and epoch (`report_floors`), so no gap
  is counted below it (MS-DEL-6).
Never removed: billing's counter series, reads and resets (every period, open or closed,
bills from them alone), ownership and assignment history, device events, alerts of the fleet.
The manager stores no raw report bytes (only their SHA-256 and size), so there is nothing of
them to purge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, exists, func, select, update

from metersync_manager import models as m
from metersync_manager.extract import utc_naive

REPLAY_HORIZON = timedelta(days=400)  # MS-DEL-19, MS-SEC-15
BATCH = 500  # readings or reports per transaction
R = m.readings.c


@dataclass(frozen=True)
class Policy:
    readings: timedelta | None = None
    errors: timedelta | None = None
    reports: timedelta | None = None

    def __post_init__(self) -> None:
        for name in ("readings", "errors", "reports"):
            value = getattr(self, name)
            if value is not None and value <= timedelta(0):
                raise ValueError(f"the {name} retention period must be positive")
        if self.reports is not None and self.reports < REPLAY_HORIZON:
            raise ValueError(
                "report ids are kept at least the replay horizon of 400 days (MS-DEL-19)"
            )

    @property
    def active(self) -> bool:
        return any(x is not None for x in (self.readings, self.errors, self.reports))


def purge(store: Any, policy: Policy, now: datetime) -> dict[str, int]:
    """Apply `policy` as of `now`, in batches of its own transactions; rows removed per table."""
    removed = {"readings": 0, "counters": 0, "supplies": 0, "alerts": 0}
    removed.update(collection_errors=0, reports=0)
    at = utc_naive(now)
    if policy.errors is not None:
        with store.writing() as conn:
            removed["collection_errors"] += _purge_errors(conn, at - policy.errors)
    if policy.readings is not None:
        while True:
            with store.writing() as conn:
                done = _purge_readings(conn, at - policy.readings)
            for table, n in done.items():
                removed[table] += n
            if done["readings"] < BATCH:
                break
    if policy.reports is not None:
        while True:
            with store.writing() as conn:
                n = _purge_reports(conn, at - policy.reports)
            removed["reports"] += n
            if n < BATCH:
                break
    return removed


def _doomed_readings(conn: Connection, before: datetime) -> list[int]:
    """Old readings, not a device's newest applied one (the fleet evaluator reads only a
    device's newest, so a purged reading it had not reached yet loses it nothing)."""
    current = select(m.device_state.c.reading_id)
    q = select(R.id).where(R.polled_at < before, R.id.not_in(current)).order_by(R.id).limit(BATCH)
    return list(conn.execute(q).scalars())


def _lock_devices(conn: Connection, reading_ids: list[int]) -> None:
    """Lock the devices of these readings, in key order as ingest does: ingest picks the
    reading holding a device's shared rows under this lock (PostgreSQL; SQLite writes are
    serialised), so it never refers to rows being moved or removed."""
    d = m.devices.c
    keys = select(R.device_key).where(R.id.in_(reading_ids))
    conn.execute(
        select(d.device_key).where(d.device_key.in_(keys)).order_by(d.device_key).with_for_update()
    ).all()


def _rehome(conn: Connection, table: Any, doomed: list[int]) -> None:
    """Rows held by a doomed reading that kept readings share move to the oldest of those."""
    kind = m.SHARED_ROWS[table.name][0]
    ref = R[f"{kind}_of"]
    moves = conn.execute(
        select(ref, func.min(R.id)).where(ref.in_(doomed), R.id.not_in(doomed)).group_by(ref)
    ).all()
    g = m.device_rowsets.c
    for old, new in moves:
        conn.execute(update(table).where(table.c.reading_id == old).values(reading_id=new))
        conn.execute(update(m.readings).where(ref == old).values({ref.name: new}))
        conn.execute(update(m.readings).where(R.id == new).values({ref.name: None}))
        conn.execute(
            update(m.device_rowsets)
            .where(g.kind == kind, g.reading_id == old)
            .values(reading_id=new)
        )


def _purge_readings(conn: Connection, before: datetime) -> dict[str, int]:
    doomed = _doomed_readings(conn, before)
    out = {"readings": len(doomed)}
    if not doomed:
        return {**out, **{t: 0 for t in m.SHARED_ROWS}}
    _lock_devices(conn, doomed)
    g = m.device_rowsets.c
    for name, (kind, table) in m.SHARED_ROWS.items():
        _rehome(conn, table, doomed)
        out[name] = conn.execute(delete(table).where(table.c.reading_id.in_(doomed))).rowcount
        conn.execute(delete(m.device_rowsets).where(g.kind == kind, g.reading_id.in_(doomed)))
    conn.execute(delete(m.readings).where(R.id.in_(doomed)))
    return out


def _purge_errors(conn: Connection, before: datetime) -> int:
    """Collection errors whose every snapshot (holder and sharers) was polled before `before`."""
    e, g = m.collection_errors.c, m.device_rowsets.c
    holders = select(R.id).where(R.polled_at < before, R.errors_of.is_(None))
    newer_sharer = exists().where(R.errors_of == e.reading_id, R.polled_at >= before)
    old = select(e.reading_id).where(e.reading_id.in_(holders), ~newer_sharer).distinct()
    ids = list(conn.execute(old).scalars())
    n = 0
    for start in range(0, len(ids), BATCH):
        _lock_devices(conn, ids[start : start + BATCH])
        part = list(conn.execute(old.where(e.reading_id.in_(ids[start : start + BATCH]))).scalars())
        n += conn.execute(delete(m.collection_errors).where(e.reading_id.in_(part))).rowcount
        conn.execute(delete(m.device_rowsets).where(g.kind == "errors", g.reading_id.in_(part)))
    return n


def _purge_reports(conn: Connection, before: datetime) -> int:
    r, f = m.reports.c, m.report_floors.c
    in_use = exists().where(R.report_id == r.report_id)
    doomed = conn.execute(
        select(r.report_id, r.agent_id, r.sequence_epoch, r.sequence)
        .where(r.received_at < before, ~in_use)
        .order_by(r.received_at)
        .limit(BATCH)
    ).all()
    if not doomed:
        return 0
    highest: dict[tuple[str, int], int] = {}
    for x in doomed:
        key = (x.agent_id, x.sequence_epoch)
        highest[key] = max(highest.get(key, 0), x.sequence)
    for (agent_id, epoch), through in highest.items():
        where = (f.agent_id == agent_id, f.sequence_epoch == epoch)
        old = conn.execute(select(f.through).where(*where)).scalar()
        if old is None:
            conn.execute(
                m.report_floors.insert().values(
                    agent_id=agent_id, sequence_epoch=epoch, through=through
                )
            )
        elif through > old:
            conn.execute(update(m.report_floors).where(*where).values(through=through))
    ids = [x.report_id for x in doomed]
    conn.execute(delete(m.reports).where(r.report_id.in_(ids)))
    return len(doomed)
