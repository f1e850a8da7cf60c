"""Counter series and the meter export (MS-OWN, MS-BILL).

At ingest every counter of an applied snapshot extends its series: the read stores `billed`,
the series' usage from its first read up to this read, where an increase adds its difference
and a decrease (a reset or swap, flagged by the agent or seen here) adds nothing and is listed
in `counter_resets`. The usage of a period (lo, hi] is then billed(last read <= hi) minus
billed(last read <= lo) (or minus the first read's, when the series starts in the period):
a few index look-ups per series, whatever the number of reads, and consecutive periods
telescope, so no page is ever billed twice.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    tuple_,
    update,
)

from metersync_manager import contract
from metersync_manager import models as m
from metersync_manager.extract import SERIES_IDENTITY, iso
from metersync_manager.scope import Scope

OFFSET = 2**63  # unsignedLong ↔ BIGINT: stored = value - OFFSET
MAX_VALUE = 2**64 - 1


def enc(value: int) -> int:
    return min(value, MAX_VALUE) - OFFSET


def dec(stored: int) -> int:
    return int(stored) + OFFSET


IDENTITY = SERIES_IDENTITY


def series_key(counter: dict[str, Any]) -> str:
    """The identity of a counter series within one device (MS-BILL-1): kind, unit, oid,
    source, label and marker. Two counters differing in any of them never merge."""
    parts = ("" if counter.get(k) is None else str(counter[k]) for k in IDENTITY)
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


@dataclass
class Series:
    series_id: int
    last_polled_at: datetime
    last_value: int
    billed: int


def extend(series: Series, value: int, flagged: bool) -> tuple[int, bool]:
    """The billed total after a new read, and whether the read is a reset."""
    if flagged or value < series.last_value:
        return series.billed, True
    return min(series.billed + value - series.last_value, MAX_VALUE), False


@dataclass
class Snapshot:
    """One applied snapshot's counters, and the list its reset events go to."""

    device_key: str
    polled_at: datetime
    counters: Iterable[dict[str, Any]]
    events: list[dict[str, Any]]


_S = m.counter_series.c
_NEW_SERIES = (
    m.counter_series.insert()
    .values(
        device_key=bindparam("device_key"),
        series_key=bindparam("series_key"),
        **{k: bindparam(k) for k in IDENTITY},
        first_polled_at=bindparam("at"),
        last_polled_at=bindparam("at"),
        last_value=bindparam("v"),
        billed=bindparam("b"),
    )
    .returning(_S.series_id, sort_by_parameter_order=True)
)
_READ = m.counter_reads.insert().values(
    series_id=bindparam("series_id"),
    polled_at=bindparam("polled_at"),
    value=bindparam("v"),
    billed=bindparam("b"),
)
_MOVE = (
    update(m.counter_series)
    .where(_S.series_id == bindparam("sid"))
    .values(last_polled_at=bindparam("at"), last_value=bindparam("v"), billed=bindparam("b"))
)


def _known(conn: Connection, keys: list[str]) -> dict[tuple[str, str], Series]:
    rows = conn.execute(
        select(
            _S.device_key, _S.series_key, _S.series_id, _S.last_polled_at, _S.last_value, _S.billed
        ).where(_S.device_key.in_(keys))
    )
    return {
        (r.device_key, r.series_key): Series(
            r.series_id, r.last_polled_at, dec(r.last_value), dec(r.billed)
        )
        for r in rows
    }


def record(conn: Connection, snapshots: list[Snapshot]) -> None:
    """Extend the series of a report's applied snapshots (each newer than every read of its
    device): one look-up of their series and one batch per kind of write, whatever the
    number of devices."""
    wanted = {
        (x.device_key, series_key(c)): (x, c)
        for x in snapshots
        for c in x.counters
        if c.get("value") is not None
    }
    if not wanted:
        return
    known = _known(conn, sorted({x.device_key for x in snapshots}))
    new, reads, resets, updates = [], [], [], []
    for (device_key, key), (x, c) in wanted.items():
        value, cur = int(c["value"]), known.get((device_key, key))
        if cur is None:
            new.append({"device_key": device_key, "series_key": key,
                        **{k: c.get(k) for k in IDENTITY},
                        "at": x.polled_at, "v": enc(value), "b": enc(0)})  # fmt: skip
            continue
        if x.polled_at <= cur.last_polled_at:
            continue  # never happens for an applied snapshot; never billed twice if it did
        flagged = c.get("anomaly") == "decreased"
        billed, reset = extend(cur, value, flagged)
        if reset:
            resets.append({"series_id": cur.series_id, "at": x.polled_at,
                           "before": enc(cur.last_value), "after": enc(value),
                           "flagged": flagged})  # fmt: skip
            x.events.append({"kind": "reset", "detail": {"counter": c["kind"], "oid": c["oid"],
                             "before": cur.last_value, "after": value}})  # fmt: skip
        reads.append({"series_id": cur.series_id, "polled_at": x.polled_at,
                      "v": enc(value), "b": enc(billed)})  # fmt: skip
        updates.append({"sid": cur.series_id, "at": x.polled_at, "v": enc(value), "b": enc(billed)})
    if new:
        ids = conn.execute(_NEW_SERIES, new).scalars().all()
        reads += [{"series_id": sid, "polled_at": n["at"], "v": n["v"], "b": n["b"]}
                  for sid, n in zip(ids, new, strict=True)]  # fmt: skip
    if reads:
        conn.execute(_READ, reads)
    if updates:
        conn.execute(_MOVE, updates)
    if resets:
        conn.execute(m.counter_resets.insert(), resets)


# --- the meter export ----------------------------------------------------------------------

DEFAULT_TOLERANCE = timedelta(hours=24)  # a read this close to a boundary counts as "at" it


@dataclass(frozen=True)
class Period:
    start: datetime  # naive UTC; the period is (start, end]
    end: datetime
    customer: str | None = None
    device_key: str | None = None
    kind: str | None = None
    tolerance: timedelta = DEFAULT_TOLERANCE


def _cursor(device_key: str, assignment_id: int) -> str:
    raw = json.dumps([device_key, assignment_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_cursor(text: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        key, aid = json.loads(raw)
        if isinstance(key, str) and isinstance(aid, int):
            return key, aid
    except (ValueError, TypeError):
        pass
    raise ValueError("cursor is not one this manager gave out")


def _segments(
    conn: Connection, period: Period, scope: Scope, after: tuple[str, int] | None, limit: int
) -> list[Any]:
    """One page of (device, assignment) intervals overlapping the period, in cursor order."""
    a, d, s = m.assignments.c, m.devices.c, m.sites.c
    q = (
        select(
            a.id,
            a.subject_id.label("device_key"),
            a.customer_id,
            a.site_id,
            a.valid_from,
            a.valid_to,
            d.serial_number,
            d.model,
            s.name.label("site"),
        )
        .join(m.devices, d.device_key == a.subject_id)
        .outerjoin(m.sites, s.site_id == a.site_id)
        .where(
            a.subject == "device",
            scope.where(a.customer_id),
            a.valid_from < period.end,
            or_(a.valid_to.is_(None), a.valid_to > period.start),
        )
        .order_by(a.subject_id, a.id)
        .limit(limit)
    )
    if period.customer:
        q = q.where(a.customer_id == period.customer)
    if period.device_key:
        q = q.where(a.subject_id == period.device_key)
    if after is not None:
        q = q.where(tuple_(a.subject_id, a.id) > tuple_(*after))
    return list(conn.execute(q))


def _reads_query(ids: list[int], period: Period) -> Any:
    """Per series of the segments: the reads at the boundaries, by index look-ups only."""
    a, cs, r = m.assignments.c, m.counter_series.c, m.counter_reads.c
    start = bindparam("p_start", period.start, type_=DateTime())
    end = bindparam("p_end", period.end, type_=DateTime())
    lo = case((a.valid_from > start, a.valid_from), else_=start)
    hi = case((and_(a.valid_to.is_not(None), a.valid_to < end), a.valid_to), else_=end)

    def at(agg: Any, cond: Any) -> Any:
        return select(agg(r.polled_at)).where(r.series_id == cs.series_id, cond).scalar_subquery()

    inner = (
        select(
            a.id.label("aid"),
            cs.series_id,
            cs.kind,
            cs.unit,
            cs.oid,
            cs.source,
            cs.label,
            cs.marker,
            lo.label("lo"),
            hi.label("hi"),
            at(func.max, r.polled_at <= lo).label("before_lo"),
            at(func.min, r.polled_at > lo).label("after_lo"),
            at(func.max, r.polled_at <= hi).label("before_hi"),
            at(func.min, r.polled_at > hi).label("after_hi"),
        )
        .join(m.counter_series, cs.device_key == a.subject_id)
        .where(a.id.in_(ids), cs.first_polled_at <= hi)
    )
    if period.kind:
        inner = inner.where(cs.kind == period.kind)
    inner = inner.subquery()
    start_read, first_read, end_read = (m.counter_reads.alias(n) for n in ("rs", "rf", "re"))

    def join_on(alias: Any, column: Any) -> Any:
        return and_(alias.c.series_id == inner.c.series_id, alias.c.polled_at == column)

    return (
        select(
            inner,
            start_read.c.value.label("s_value"),
            start_read.c.billed.label("s_billed"),
            first_read.c.value.label("f_value"),
            first_read.c.billed.label("f_billed"),
            end_read.c.value.label("e_value"),
            end_read.c.billed.label("e_billed"),
        )
        .outerjoin(start_read, join_on(start_read, inner.c.before_lo))
        .outerjoin(first_read, join_on(first_read, inner.c.after_lo))
        .outerjoin(end_read, join_on(end_read, inner.c.before_hi))
        .order_by(inner.c.aid, inner.c.series_id)
    )


def _gap(boundary: datetime, before: datetime | None, after: datetime | None) -> int | None:
    gaps = [(boundary - t) for t in (before,) if t is not None]
    gaps += [(t - boundary) for t in (after,) if t is not None]
    return int(min(gaps).total_seconds()) if gaps else None


def _line(seg: Any, x: Any, resets: list[dict[str, Any]], period: Period) -> dict[str, Any] | None:
    if x.before_lo is not None:
        start = (x.before_lo, dec(x.s_value), dec(x.s_billed))
    elif x.after_lo is not None and x.after_lo <= x.hi:
        start = (x.after_lo, dec(x.f_value), dec(x.f_billed))
    else:
        return None
    end = (x.before_hi, dec(x.e_value), dec(x.e_billed))
    start_gap = _gap(x.lo, x.before_lo, x.after_lo)
    end_gap = _gap(x.hi, x.before_hi, x.after_hi)
    tol = period.tolerance.total_seconds()
    return {
        "type": "counter",
        **_device_fields(seg),
        "kind": x.kind,
        "unit": x.unit,
        "oid": x.oid,
        "source": x.source,
        "label": x.label,
        "marker": x.marker,
        "segment": {"from": iso(x.lo), "to": iso(x.hi)},
        "start": {"polledAt": iso(start[0]), "value": start[1]},
        "end": {"polledAt": iso(end[0]), "value": end[1]},
        "usage": end[2] - start[2],
        "resets": resets,
        "startInPeriod": x.before_lo is None,
        "stale": not (x.after_lo is not None and x.after_lo <= x.hi),
        "startGapSeconds": start_gap,
        "endGapSeconds": end_gap,
        "complete": start_gap is not None
        and end_gap is not None
        and start_gap <= tol
        and end_gap <= tol,
    }


def _device_fields(seg: Any) -> dict[str, Any]:
    return {
        "customerId": seg.customer_id,
        "siteId": seg.site_id,
        "site": seg.site,
        "deviceKey": seg.device_key,
        "serialNumber": seg.serial_number,
        "model": seg.model,
    }


def _resets(conn: Connection, series_ids: set[int], period: Period) -> dict[int, list[Any]]:
    z = m.counter_resets.c
    out: dict[int, list[Any]] = {}
    if not series_ids:
        return out
    q = (
        select(m.counter_resets)
        .where(z.series_id.in_(sorted(series_ids)), z.at > period.start, z.at <= period.end)
        .order_by(z.series_id, z.at)
    )
    for row in conn.execute(q):
        out.setdefault(row.series_id, []).append(row)
    return out


def export_page(
    conn: Connection,
    period: Period,
    scope: Scope,
    after: tuple[str, int] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """The lines of up to `limit` device intervals after the cursor, and the next cursor."""
    segs = _segments(conn, period, scope, after, limit)
    if not segs:
        return [], None
    by_id = {s.id: s for s in segs}
    rows = list(conn.execute(_reads_query(list(by_id), period)))
    resets = _resets(conn, {x.series_id for x in rows}, period)
    meters = contract.definitions(conn, {s.customer_id for s in segs})
    groups: dict[int, list[dict[str, Any]]] = {}
    for x in rows:
        found = [
            {"at": iso(z.at), "before": dec(z.before), "after": dec(z.after), "flagged": z.flagged}
            for z in resets.get(x.series_id, [])
            if x.lo < z.at <= x.hi
        ]
        line = _line(by_id[x.aid], x, found, period)
        if line is not None:
            groups.setdefault(x.aid, []).append(line)
    lines: list[dict[str, Any]] = []
    for aid, group in groups.items():
        lines += group
        if not period.kind:
            lines += contract.compose(by_id[aid], group, meters)
    nxt = _cursor(segs[-1].device_key, segs[-1].id) if len(segs) == limit else None
    return lines, nxt


CSV_COLUMNS = (
    "customer_id",
    "site",
    "device_key",
    "serial_number",
    "model",
    "line",
    "name",
    "unit",
    "source",
    "oid",
    "label",
    "marker",
    "segment_from",
    "segment_to",
    "start_at",
    "start_value",
    "end_at",
    "end_value",
    "usage",
    "resets",
    "reset_detail",
    "start_in_period",
    "stale",
    "complete",
    "start_gap_s",
    "end_gap_s",
)


def csv_row(line: dict[str, Any]) -> list[Any]:
    """One export line as the CSV columns (RFC 4180; see CSV_COLUMNS and the README)."""

    def flag(v: Any) -> str:
        return "" if v is None else ("true" if v else "false")

    resets = line["resets"]
    return [
        line["customerId"],
        line["site"] or "",
        line["deviceKey"],
        line["serialNumber"] or "",
        line["model"] or "",
        line["type"],
        line.get("kind") or line.get("meter"),
        line["unit"],
        line.get("source") or "",
        line.get("oid") or "",
        line.get("label") or "",
        "" if line.get("marker") is None else line["marker"],
        line["segment"]["from"],
        line["segment"]["to"],
        line["start"]["polledAt"],
        line["start"]["value"],
        line["end"]["polledAt"],
        line["end"]["value"],
        line["usage"],
        len(resets),
        ";".join(f"{z['at']} {z['before']}>{z['after']}" for z in resets),
        flag(line["startInPeriod"]),
        flag(line["stale"]),
        flag(line["complete"]),
        "" if line["startGapSeconds"] is None else line["startGapSeconds"],
        "" if line["endGapSeconds"] is None else line["endGapSeconds"],
    ]
