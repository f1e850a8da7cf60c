"""The evaluator: rules after each stored reading, and on a timer for time-based rules.

Off the ingest's critical path: `step` reads the readings stored after its durable cursor
(`fleet_cursor`), evaluates each device once per batch and moves the cursor in the same
transaction as the alerts, forecasts, orders and notifications it wrote. A restart resumes
from the cursor; nothing is lost and nothing is evaluated twice. `tick` evaluates what time
alone changes: silent devices and agents, the agent's outbox and licence, and the end of the
window of event alerts (counter reset or swap, ownership conflict, early replacement).
On PostgreSQL an advisory lock keeps one evaluator at a time across manager processes.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, text, update

from metersync_manager import billing
from metersync_manager import models as m
from metersync_manager.extract import utc_naive
from metersync_manager.fleet import alerts, lifecycle, notify, rules
from metersync_manager.fleet.forecast import LifeTracker, Obs, OrderPolicy, order_due
from metersync_manager.store import Store, iso

HISTORY = timedelta(days=120)  # supply history a forecast is made from
BATCH = 200  # readings per step
_LOCK = 84700013
R, S, C = m.readings.c, m.supplies.c, m.counters.c


def percent(row: Any) -> float | None:
    """A supply level in percent where one is defined (else None: -2, -3, other)."""
    if row.percent_x100 is not None:
        return row.percent_x100 / 100
    if row.level_meaning == "exact" and row.max_meaning == "exact" and row.max_raw > 0:
        return max(0.0, min(100.0, 100 * row.level_raw / row.max_raw))
    return None


class Evaluator:
    def __init__(self, store: Store, clock: Any, *, settle: int = lifecycle.SETTLE) -> None:
        self.store = store
        self.clock = clock
        self.settle = settle
        # Silence counts from the manager's start: its own downtime is no agent's silence.
        self.started = utc_naive(clock())

    def _locked(self, conn: Connection) -> bool:
        if self.store.dialect != "postgresql":
            return True
        return bool(
            conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK}).scalar()
        )

    # --- after readings -------------------------------------------------------------------

    def step(self) -> int:
        """Evaluate the devices of the next readings after the cursor; how many devices."""
        now = utc_naive(self.clock())
        with self.store._write() as conn:
            if not self._locked(conn):
                return 0
            cur = m.fleet_cursor.c
            pos = conn.execute(select(cur.position).where(cur.name == "readings")).scalar()
            if pos is None:
                conn.execute(
                    m.fleet_cursor.insert().values(name="readings", position=0, updated_at=now)
                )
                pos = 0
            rows = conn.execute(
                select(R.id, R.device_key).where(R.id > pos).order_by(R.id).limit(BATCH)
            ).all()
            if not rows:
                return 0
            stored = alerts.stored_settings(conn)
            keys = sorted({r.device_key for r in rows})
            for key in keys:
                self._device(conn, key, now, stored)
            conn.execute(
                update(m.fleet_cursor)
                .where(cur.name == "readings")
                .values(position=rows[-1].id, updated_at=now)
            )
            return len(keys)

    def _device(self, conn: Connection, key: str, now: datetime, stored: Any) -> None:
        dev = conn.execute(select(m.devices).where(m.devices.c.device_key == key)).first()
        if dev is None:
            return
        customer = dev.customer_id

        def setting(rule: str) -> dict[str, Any]:
            return rules.settings_for(rule, stored, customer)

        mine = R.device_key == key
        if dev.owner_agent_id:
            mine = and_(mine, R.agent_id == dev.owner_agent_id)  # MS-OWN: the owner's reads
        latest = conn.execute(
            select(m.readings).where(mine).order_by(R.polled_at.desc(), R.id.desc()).limit(1)
        ).first()
        if latest is None:
            return
        printer_alerts = [
            {
                "code": a.code,
                "severity": a.severity,
                "group": a.grp,
                "group_index": a.group_index,
                "description": a.description,
            }
            for a in conn.execute(
                select(m.alerts).where(m.alerts.c.reading_id == m.rows_of(m.alerts, latest))
            )
        ]
        supplies = self._supplies(conn, dev, mine, latest, now, setting)
        events = [
            {
                "kind": e.kind,
                "at": e.at,
                "agent_id": e.agent_id,
                "detail": json.loads(e.detail or "{}"),
            }
            for e in conn.execute(
                select(m.device_events).where(
                    m.device_events.c.device_key == key,
                    m.device_events.c.at > now - timedelta(hours=_max_hours(setting)),
                )
            )
        ]
        state = rules.DeviceState(
            key, customer, (latest.error_flags or "").split(), printer_alerts, supplies, events
        )
        conds = rules.device_conditions(state, now, setting)
        held = alerts.unresolved(conn, rules.DEVICE_RULES, "device", [key])
        alerts.apply(
            conn,
            lifecycle.reconcile(alerts.to_open(held), conds, self.settle),
            lambda c: customer,
            now,
        )

    def _supplies(
        self, conn: Connection, dev: Any, mine: Any, latest: Any, now: datetime, setting: Any
    ) -> list[rules.SupplyState]:
        """Each supply of the newest reading with its history, forecast and order."""
        since = now - HISTORY
        pages: dict[int, int] = {}
        for rid, value in conn.execute(
            select(R.id, C.value)
            .join(m.readings, m.rows_of(m.counters) == C.reading_id)
            .where(mine, R.polled_at > since, C.kind == "total")
            .order_by(R.id, C.oid.desc())
        ):
            pages[rid] = billing.dec(value)  # stored offset-encoded (full unsignedLong)
        history = conn.execute(
            select(m.supplies, R.polled_at, R.id.label("of_reading"))
            .join(m.readings, m.rows_of(m.supplies) == S.reading_id)
            .where(mine, R.polled_at > since)
            .order_by(R.polled_at, R.id)
        ).all()
        trackers: dict[int, LifeTracker] = {}
        known: dict[int, datetime] = {}
        first: dict[int, datetime] = {}
        for h in history:
            level = percent(h)
            trackers.setdefault(h.idx, LifeTracker()).feed(
                Obs(h.polled_at, level, pages.get(h.of_reading))
            )
            first.setdefault(h.idx, h.polled_at)
            if level is not None:
                known[h.idx] = h.polled_at
        prior = {
            r.idx: r.life_started_at
            for r in conn.execute(
                select(m.supply_forecasts).where(m.supply_forecasts.c.device_key == dev.device_key)
            )
        }
        conn.execute(
            delete(m.supply_forecasts).where(m.supply_forecasts.c.device_key == dev.device_key)
        )
        low = setting("supply-low")
        policy = OrderPolicy(lead_days=low["leadDays"], threshold=low["threshold"])
        out = []
        held = m.rows_of(m.supplies, latest)
        for s in conn.execute(select(m.supplies).where(S.reading_id == held).order_by(S.idx)):
            tracker = trackers.get(s.idx) or LifeTracker()
            fc = tracker.forecast(now)
            life = tracker.current
            start = None
            if life is not None:  # a stable start for a life that began before the history
                start = life.started_at
                if len(tracker.lives) == 1 and prior.get(s.idx) and prior[s.idx] <= start:
                    start = prior[s.idx]
            conn.execute(
                m.supply_forecasts.insert().values(
                    device_key=dev.device_key,
                    idx=s.idx,
                    customer_id=dev.customer_id,
                    computed_at=now,
                    description=s.description,
                    colour=s.colour,
                    part_number=s.part_number,
                    level=None if percent(s) is None else round(percent(s)),
                    forecast=json.dumps(fc.as_dict()),
                    days_to_empty=fc.as_dict()["daysToEmpty"],
                    lives=json.dumps([_life(x) for x in tracker.lives]),
                    life_started_at=start,
                )
            )
            if low["enabled"] and start is not None and order_due(tracker, fc, policy):
                self._order(conn, dev, s, start, fc, now)
            out.append(
                rules.SupplyState(
                    s.idx,
                    s.description,
                    s.part_number,
                    percent(s),
                    s.level_meaning,
                    known.get(s.idx),
                    first.get(s.idx, now),
                    fc,
                    [x for x in tracker.lives if x.ended_at is not None],
                )
            )
        return out

    def _order(
        self, conn: Connection, dev: Any, s: Any, start: datetime, fc: Any, now: datetime
    ) -> None:
        """One order per cartridge life: the unique constraint refuses a second."""
        o = m.supply_orders.c
        if conn.execute(
            select(o.order_id).where(
                o.device_key == dev.device_key, o.idx == s.idx, o.life_started_at == start
            )
        ).first():
            return
        detail = {
            "deviceKey": dev.device_key,
            "supply": s.idx,
            "description": s.description,
            "colour": s.colour,
            "partNumber": s.part_number,
            "level": percent(s),
            "forecast": fc.as_dict(),
            "lifeStartedAt": iso(start),
            "model": dev.model,
            "serialNumber": dev.serial_number,
        }
        order_id = conn.execute(
            m.supply_orders.insert()
            .values(
                customer_id=dev.customer_id,
                device_key=dev.device_key,
                idx=s.idx,
                life_started_at=start,
                ordered_at=now,
                part_number=s.part_number,
                detail=json.dumps(detail, sort_keys=True),
            )
            .returning(o.order_id)
        ).scalar_one()
        order = {"orderId": order_id, "orderedAt": iso(now), **detail}
        notify.enqueue(conn, "supply.order", dev.customer_id, {"order": order}, now)

    # --- on the timer -----------------------------------------------------------------------

    def tick(self) -> None:
        now = utc_naive(self.clock())
        with self.store._write() as conn:
            if not self._locked(conn):
                return
            stored = alerts.stored_settings(conn)
            self._silent_devices(conn, now, stored)
            self._agents(conn, now, stored)
            self._event_windows(conn, now, stored)

    def _apply(
        self,
        conn: Connection,
        held: list[Any],
        conds: list[rules.Condition],
        customers: dict[str, str],
        now: datetime,
    ) -> None:
        changes = lifecycle.reconcile(alerts.to_open(held), conds, self.settle)
        alerts.apply(conn, changes, lambda c: customers.get(c.subject_id, "default"), now)

    def _silent_devices(self, conn: Connection, now: datetime, stored: Any) -> None:
        d = m.devices.c
        devs = conn.execute(
            select(
                d.device_key,
                d.customer_id,
                d.last_complete_at,
                d.last_seen,
                func.coalesce(d.owner_agent_id, d.last_agent_id).label("agent"),
            )
        ).all()
        intervals = Store._poll_intervals(conn, {x.agent for x in devs})
        conds, customers = [], {}
        for x in devs:
            customers[x.device_key] = x.customer_id
            cfg = rules.settings_for("device-silent", stored, x.customer_id)
            interval = intervals.get(x.agent)
            if not cfg["enabled"] or interval is None:
                continue
            window = now - cfg["intervals"] * interval
            if window < self.started or (x.last_complete_at and x.last_complete_at >= window):
                continue
            reason = "partial" if x.last_seen >= window else "missing"
            conds.append(rules.device_silent(x.device_key, reason, x.last_complete_at))
        held = alerts.unresolved(conn, ("device-silent",), "device", None)
        self._apply(conn, held, conds, customers, now)

    def _agents(self, conn: Connection, now: datetime, stored: Any) -> None:
        rows = conn.execute(select(m.agents)).all()
        intervals = Store._poll_intervals(conn, {a.agent_id for a in rows})
        conds, customers = [], {}
        for a in rows:
            customers[a.agent_id] = a.customer_id
            seen = None if a.last_seen_at is None else max(a.last_seen_at, self.started)
            state = rules.AgentState(
                a.agent_id,
                a.customer_id,
                seen,
                intervals.get(a.agent_id),
                a.queue_depth,
                a.dropped_reports,
                a.licence_state,
                bool(a.revoked),
            )
            conds += rules.agent_conditions(
                state, now, lambda r, c=a.customer_id: rules.settings_for(r, stored, c)
            )
        held = alerts.unresolved(conn, ("agent-silent", "agent-outbox", "licence"), "agent", None)
        self._apply(conn, held, conds, customers, now)

    def _event_windows(self, conn: Connection, now: datetime, stored: Any) -> None:
        held = alerts.unresolved(conn, rules.EVENT_RULES, "device", None)
        conds = []
        for a in held:
            cfg = rules.settings_for(a.rule, stored, a.customer_id)
            if rules.event_still_holds(a.rule, json.loads(a.evidence), now, cfg):
                conds.append(
                    rules.Condition(
                        a.rule,
                        a.subject_kind,
                        a.subject_id,
                        a.key,
                        a.severity,
                        a.title,
                        json.loads(a.evidence),
                    )
                )
        self._apply(conn, held, conds, {a.subject_id: a.customer_id for a in held}, now)


def _max_hours(setting: Any) -> float:
    return max(setting(r)["hours"] for r in ("counter-reset", "ownership-conflict"))


def _life(life: Any) -> dict[str, Any]:
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in life.summary().items()}


def forecasts(
    store: Store,
    scope: Any,
    device_key: str | None = None,
    within_days: float | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The newest forecast of each supply in scope (a device's, or those running out within
    `within_days`), soonest empty first."""
    f = m.supply_forecasts.c
    q = select(m.supply_forecasts).where(scope.where(f.customer_id))
    if device_key:
        q = q.where(f.device_key == device_key)
    q = q.order_by(f.device_key, f.idx)
    with store._read() as conn:
        rows = conn.execute(q).all()
    out = []
    for r in rows:
        fc = json.loads(r.forecast)
        if within_days is not None and (
            fc["daysToEmpty"] is None or fc["daysToEmpty"] > within_days
        ):
            continue
        out.append(
            {
                "deviceKey": r.device_key,
                "supply": r.idx,
                "customerId": r.customer_id,
                "description": r.description,
                "colour": r.colour,
                "partNumber": r.part_number,
                "level": r.level,
                "computedAt": iso(r.computed_at),
                "forecast": fc,
                "lives": json.loads(r.lives),
            }
        )
    out.sort(
        key=lambda x: (x["forecast"]["daysToEmpty"] is None, x["forecast"]["daysToEmpty"] or 0)
    )
    return out[offset : offset + limit]


def orders(
    store: Store, scope: Any, device_key: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    o = m.supply_orders.c
    q = select(m.supply_orders).where(scope.where(o.customer_id))
    if device_key:
        q = q.where(o.device_key == device_key)
    q = q.order_by(o.ordered_at.desc(), o.order_id.desc()).limit(limit).offset(offset)
    with store._read() as conn:
        return [
            {
                "orderId": r.order_id,
                "customerId": r.customer_id,
                "orderedAt": iso(r.ordered_at),
                **json.loads(r.detail),
            }
            for r in conn.execute(q)
        ]
