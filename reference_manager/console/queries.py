"""The console's reads: each a few indexed queries, filtered by the operator's scope.

The fleet page reads `devices` and `device_state` (one row per device), never the readings
tables; a device page reads the readings of that one device through its index.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    String,
    and_,
    bindparam,
    column,
    false,
    func,
    or_,
    select,
    text,
    true,
    union_all,
)

from metersync_manager import models as m
from metersync_manager import search_terms, staleness
from metersync_manager.meters import Reset
from metersync_manager.scope import Scope

PAGE = 50
d, st = m.devices.c, m.device_state.c

# sort name → (column, kind of value)
SORTS: dict[str, tuple[Any, str]] = {
    "key": (d.device_key, "str"),
    "name": (d.sys_name, "str"),
    "vendor": (d.vendor, "str"),
    "model": (d.model, "str"),
    "serial": (d.serial_number, "str"),
    "ip": (d.current_ip, "str"),
    "seen": (d.last_seen, "time"),
}


@dataclass
class FleetFilter:
    customer: str | None = None
    site: int | None = None
    vendor: str | None = None
    status: str | None = None
    agent: str | None = None  # the devices an agent reported last
    low: bool = False
    silent: bool = False
    silent_share: float = 0.0  # silent devices / devices in scope (from `counts`): the plan
    alerts: bool = False
    q: str | None = None
    sort: str = "key"
    desc: bool = False
    cursor: str | None = None
    limit: int = PAGE


@dataclass
class Thresholds:
    """Per agent, the polledAt before which a device of it is silent (MS-DEV-26)."""

    since: dict[str, datetime] = field(default_factory=dict)

    def table(self) -> Any:
        """(agent, since) rows as a VALUES table; None when no interval is known yet."""
        if not self.since:
            return None
        rows = sorted(self.since.items())
        # VALUES without column aliases (SQLite has none): both databases name them column1..
        binds = [
            bp
            for i, (agent, t) in enumerate(rows)
            for bp in (bindparam(f"th_a{i}", agent), bindparam(f"th_t{i}", t, type_=DateTime()))
        ]
        sql = "VALUES " + ", ".join(f"(:th_a{i}, :th_t{i})" for i in range(len(rows)))
        cols = (column("column1", String), column("column2", DateTime))
        return text(sql).bindparams(*binds).columns(*cols).subquery("th")


def _silent_parts(th: Thresholds, devices: Any = m.devices) -> list[tuple[Any, Any]]:
    """(FROM, WHERE) once per way of being silent by MS-DEV-26, never a per-row OR: no
    complete snapshot since the agent's threshold (the thresholds joined to `devices`, a range
    of ix_devices_agent_complete per agent), or none ever (an IN list of the agents on the
    same index; as a join, SQLite 3.4x builds a Bloom filter over every device for it)."""
    t = th.table()
    if t is None:
        return []
    dc = devices.c
    late = and_(dc.last_agent_id == t.c.column1, dc.last_complete_at < t.c.column2)
    never = and_(dc.last_complete_at.is_(None), dc.last_agent_id.in_(select(t.c.column1)))
    return [(t.join(devices, late), true()), (devices, never)]


def _silent_keys(th: Thresholds) -> Any:
    """The keys of the silent devices, as a subquery for `device_key IN (…)`."""
    sd = m.devices.alias("sd")
    parts = _silent_parts(th, sd)
    if not parts:
        return None
    return union_all(*(select(sd.c.device_key).select_from(f).where(w) for f, w in parts))


WALK_SHARE = 0.03  # from this share of silent devices on, walk the page's order instead


def _silent_cond(th: Thresholds, share: float) -> Any:
    """The silent filter, planned by how many are silent. Few: `device_key IN (the silent
    keys)`, built from index ranges (its cost grows with the silent devices). Many: a test
    of each row against its agent's threshold while the page's index order is walked (its
    cost grows with the rows walked before a page is full: about PAGE / share)."""
    t = th.table()
    if t is None:
        return false()
    if share < WALK_SHARE:
        keys = _silent_keys(th)
        return d.device_key.in_(keys)
    since = select(t.c.column2).where(t.c.column1 == d.last_agent_id).scalar_subquery()
    never = and_(d.last_complete_at.is_(None), d.last_agent_id.in_(select(t.c.column1)))
    return or_(d.last_complete_at < since, never)


def thresholds(conn: Connection, now: datetime) -> Thresholds:
    """From every agent's poll interval (one indexed query per agent; cached by the caller)."""
    from metersync_manager.store import Store

    ids = set(conn.execute(select(m.agents.c.agent_id)).scalars())
    out = Thresholds()
    for agent, interval in Store._poll_intervals(conn, ids).items():
        if interval is not None:
            out.since[agent] = now - staleness.INTERVALS * interval
    return out


def _conditions(scope: Scope, f: FleetFilter, th: Thresholds) -> list[Any]:
    cond = [scope.where(d.customer_id)]
    if f.customer:
        cond.append(d.customer_id == f.customer)
    if f.site is not None:
        cond.append(d.site_id == f.site)
    if f.vendor:
        cond.append(d.vendor == f.vendor)
    if f.status:
        cond.append(st.device_status == f.status)
    if f.agent:
        cond.append(d.last_agent_id == f.agent)
    if f.low:
        cond.append(st.low_supplies > 0)
    if f.alerts:
        cond.append(st.alerts > 0)
    if f.silent:
        cond.append(_silent_cond(th, f.silent_share))
    if f.q and search_terms.normalise(f.q):
        cond.append(d.device_key.in_(search_terms.matching(f.q)))
    return cond


def _joined() -> Any:
    return m.devices.outerjoin(m.device_state, st.device_key == d.device_key)


def counts(conn: Connection, scope: Scope, th: Thresholds, now: datetime) -> dict[str, int]:
    """The fleet's headline numbers, each an indexed count (no per-row OR over agents)."""
    in_scope = scope.where(d.customer_id)

    def count(*cond: Any, state: bool = False) -> int:
        q = select(func.count())
        if state:  # device_state alone for every customer; joined to devices for a scope
            q = q.select_from(m.device_state if scope.all_customers else _state_joined())
        else:
            q = q.select_from(m.devices)
        if not (state and scope.all_customers):
            q = q.where(in_scope)
        return int(conn.execute(q.where(*cond)).scalar_one())

    silent = sum(
        int(conn.execute(select(func.count()).select_from(f).where(w, in_scope)).scalar_one())
        for f, w in _silent_parts(th)
    )
    a = m.agents.c
    agents, behind = m.agents, a.queue_depth > 0
    t = th.table()
    if t is not None:  # late: not seen since its own threshold, joined like the silent count
        agents = agents.outerjoin(t, t.c.column1 == a.agent_id)
        behind = or_(behind, a.last_seen_at < t.c.column2)
    agents_behind = conn.execute(
        select(func.count())
        .select_from(agents)
        .where(scope.where(a.customer_id), a.revoked.is_(False), behind)
    ).scalar_one()
    return {
        "devices": count(),
        "silent": silent,
        "low": count(st.low_supplies > 0, state=True),
        "alerting": count(st.alerts > 0, state=True),
        "agents_behind": int(agents_behind),
    }


def _state_joined() -> Any:
    return m.device_state.join(m.devices, d.device_key == st.device_key)


def encode_cursor(value: Any, key: str) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([value, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str) -> tuple[Any, str]:
    """(sort value, device key) of a cursor; ValueError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, key = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a page cursor") from exc
    if not isinstance(key, str) or not (value is None or isinstance(value, str)):
        raise ValueError("not a page cursor")
    if kind == "time" and value is not None:
        value = datetime.fromisoformat(value)
    return value, key


def _after(col: Any, value: Any, key: str, desc: bool) -> Any:
    """Rows after (value, key) in the order: NULLs first ascending, last descending."""
    if not desc:
        if value is None:
            return or_(and_(col.is_(None), d.device_key > key), col.is_not(None))
        return or_(col > value, and_(col == value, d.device_key > key))
    if value is None:
        return and_(col.is_(None), d.device_key < key)
    return or_(col < value, and_(col == value, d.device_key < key), col.is_(None))


def fleet_page(
    conn: Connection, scope: Scope, f: FleetFilter, th: Thresholds
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the device table and the cursor of the next page (None at the end)."""
    col, kind = SORTS.get(f.sort, SORTS["key"])
    cond = _conditions(scope, f, th)
    if f.cursor:
        value, key = decode_cursor(f.cursor, kind)
        cond.append(_after(col, value, key, f.desc))
    if not col.nullable:  # plain order: an index serves it in either database
        order = (col.desc(), d.device_key.desc()) if f.desc else (col.asc(), d.device_key.asc())
    elif f.desc:
        order = (col.desc().nulls_last(), d.device_key.desc())
    else:
        order = (col.asc().nulls_first(), d.device_key.asc())
    if col is d.device_key:
        order = order[1:]
    q = (
        select(
            d.device_key,
            d.vendor,
            d.model,
            d.serial_number,
            d.sys_name,
            d.hostname,
            d.current_ip,
            d.customer_id,
            d.site_id,
            d.last_seen,
            d.last_complete_at,
            d.last_agent_id,
            st.device_status,
            st.printer_status,
            st.error_flags,
            st.supplies,
            st.alerts,
            col.label("sort_value"),
        )
        .select_from(_joined())
        .where(*cond)
        .order_by(*order)
        .limit(f.limit + 1)
    )
    rows = [dict(r) for r in conn.execute(q).mappings()]
    nxt = None
    if len(rows) > f.limit:
        rows = rows[: f.limit]
        nxt = encode_cursor(rows[-1]["sort_value"], rows[-1]["device_key"])
    for r in rows:
        r["supplies"] = json.loads(r["supplies"]) if r["supplies"] else []
        t = th.since.get(r["last_agent_id"])
        r["silent"] = t is not None and (r["last_complete_at"] is None or r["last_complete_at"] < t)
    return rows, nxt


def choices(conn: Connection, scope: Scope) -> dict[str, list[Any]]:
    """The values the fleet filters offer: customers, sites, vendors and statuses."""
    c, s = m.customers.c, m.sites.c
    customers = conn.execute(
        select(c.customer_id, c.name).where(scope.where(c.customer_id)).order_by(c.name)
    ).all()
    sites = conn.execute(
        select(s.site_id, s.name, s.customer_id)
        .where(scope.where(s.customer_id))
        .order_by(s.customer_id, s.name)
    ).all()
    in_scope = scope.where(d.customer_id)
    vendors = conn.execute(
        select(d.vendor)
        .where(d.vendor.is_not(None), in_scope)
        .group_by(d.vendor)
        .order_by(d.vendor)
    ).scalars()
    statuses = conn.execute(
        select(st.device_status)
        .select_from(m.device_state if scope.all_customers else _state_joined())
        .where(st.device_status.is_not(None), in_scope)
        .group_by(st.device_status)
        .order_by(st.device_status)
    ).scalars()
    return {
        "customers": [tuple(x) for x in customers],
        "sites": [tuple(x) for x in sites],
        "vendors": list(vendors),
        "statuses": list(statuses),
    }


# --- one device -------------------------------------------------------------------------------


def device(conn: Connection, scope: Scope, key: str) -> dict[str, Any] | None:
    c, s = m.customers.c, m.sites.c
    row = (
        conn.execute(
            select(m.devices, c.name.label("customer_name"), s.name.label("site_name"))
            .select_from(
                m.devices.outerjoin(m.customers, c.customer_id == d.customer_id).outerjoin(
                    m.sites, s.site_id == d.site_id
                )
            )
            .where(d.device_key == key, scope.where(d.customer_id))
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def history(conn: Connection, key: str) -> dict[str, list[dict[str, Any]]]:
    """Where the device was (customers and sites) and what happened to it."""
    a, e, s = m.assignments.c, m.device_events.c, m.sites.c
    placed = conn.execute(
        select(a.customer_id, s.name.label("site"), a.valid_from, a.valid_to, a.reason, a.by)
        .select_from(m.assignments.outerjoin(m.sites, s.site_id == a.site_id))
        .where(a.subject == "device", a.subject_id == key)
        .order_by(a.valid_from.desc())
        .limit(100)
    ).mappings()
    events = conn.execute(
        select(e.at, e.kind, e.agent_id, e.detail)
        .where(e.device_key == key)
        .order_by(e.at.desc())
        .limit(100)
    ).mappings()
    return {"assignments": [dict(x) for x in placed], "events": [dict(x) for x in events]}


def supply_history(
    conn: Connection, key: str, since: datetime, limit: int = 20_000
) -> dict[int, dict[str, Any]]:
    """Per supply index: its name and (polledAt, percent or None, meaning) points, oldest first."""
    from metersync_manager.device_state import supply_summary

    r, s = m.readings.c, m.supplies.c
    rows = conn.execute(
        select(m.supplies, r.polled_at)
        .join(m.readings, m.rows_of(m.supplies) == s.reading_id)
        .where(r.device_key == key, r.polled_at > since)
        .order_by(r.polled_at, s.idx)
        .limit(limit)
    ).mappings()
    out: dict[int, dict[str, Any]] = {}
    for x in rows:
        summary = supply_summary(x)
        entry = out.setdefault(x["idx"], {"name": "", "colour": None, "points": []})
        entry["name"], entry["colour"] = summary["name"], summary["colour"]
        entry["points"].append((x["polled_at"], summary["percent"], summary["meaning"]))
    return out


VOLUME_KINDS = (
    "total",
    "mono",
    "colour",
    "print",
    "print-mono",
    "print-colour",
    "copy",
    "copy-mono",
    "copy-colour",
)


def month_starts(now: datetime, months: int) -> list[datetime]:
    y, mo = now.year, now.month
    out = []
    for _ in range(months):
        out.append(datetime(y, mo, 1))
        y, mo = (y - 1, 12) if mo == 1 else (y, mo - 1)
    return sorted(out)


def monthly_volumes(conn: Connection, key: str, now: datetime, months: int = 12) -> dict[str, Any]:
    """Per counter series of VOLUME_KINDS: the billed usage of each calendar month (the
    billing export's arithmetic: resets count 0) and the resets, all by index look-ups in
    counter_series / counter_reads / counter_resets."""
    from metersync_manager import billing

    cs, r, z = m.counter_series.c, m.counter_reads.c, m.counter_resets.c
    starts = month_starts(now, months)
    bounds = [*starts, now]
    series = conn.execute(
        select(cs.series_id, cs.kind, cs.unit, cs.label, cs.source)
        .where(cs.device_key == key, cs.kind.in_(VOLUME_KINDS))
        .order_by(cs.kind, cs.series_id)
    ).all()
    out = []
    for x in series:

        def billed_at(b: datetime, sid: int = x.series_id) -> Any:
            return (
                select(r.billed)
                .where(r.series_id == sid, r.polled_at <= b)
                .order_by(r.polled_at.desc())
                .limit(1)
                .scalar_subquery()
            )

        at = conn.execute(select(*(billed_at(b) for b in bounds))).one()
        marks = [None if v is None else billing.dec(v) for v in at]
        # no read before a month's start: the series began in it, at billed 0
        per_month = [
            0 if hi is None else hi - (lo or 0) for lo, hi in zip(marks, marks[1:], strict=False)
        ]
        resets = conn.execute(
            select(z.at, z.before, z.after, z.flagged)
            .where(z.series_id == x.series_id, z.at > starts[0])
            .order_by(z.at)
        ).all()
        label = f" ({x.label})" if x.label else ""
        out.append(
            {
                "kind": x.kind,
                "name": f"{x.kind}{label}, {x.unit}",
                "months": per_month,
                "resets": [
                    Reset(y.at, billing.dec(y.before), billing.dec(y.after), y.flagged)
                    for y in resets
                ],
            }
        )
    return {"months": starts, "series": out}


# --- agents -------------------------------------------------------------------------------------


def agents(
    conn: Connection, scope: Scope, th: Thresholds, offset: int = 0, limit: int = PAGE
) -> list[dict[str, Any]]:
    a = m.agents.c
    rows = [
        dict(x)
        for x in conn.execute(
            select(m.agents)
            .where(scope.where(a.customer_id))
            .order_by(a.hostname, a.agent_id)
            .limit(limit)
            .offset(offset)
        ).mappings()
    ]
    for x in rows:
        t = th.since.get(x["agent_id"])
        x["stale_devices"] = (
            0
            if t is None
            else conn.execute(
                select(func.count()).where(
                    d.last_agent_id == x["agent_id"],
                    or_(d.last_complete_at.is_(None), d.last_complete_at < t),
                    scope.where(d.customer_id),
                )
            ).scalar_one()
        )
        x["devices"] = conn.execute(
            select(func.count()).where(d.last_agent_id == x["agent_id"], scope.where(d.customer_id))
        ).scalar_one()
        x["behind"] = bool(x["queue_depth"]) or (
            t is not None and x["last_seen_at"] is not None and x["last_seen_at"] < t
        )
    return rows


def customer_names(conn: Connection, ids: Iterable[str]) -> dict[str, str]:
    c = m.customers.c
    return dict(
        conn.execute(select(c.customer_id, c.name).where(c.customer_id.in_(sorted(set(ids))))).all()
    )


def since_days(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)
