"""The console's reads of fleet intelligence: the alert inbox, open-alert counts, forecasts.

Each is one or two indexed queries filtered by the operator's scope: alerts by
ix_fleet_alerts_state / ix_fleet_alerts_customer, "running out" by the precomputed
`supply_forecasts.days_to_empty` (ix_supply_forecasts_days), never a scan of the forecasts'
JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from metersync_manager import models as m
from metersync_manager.fleet.alerts import SEVERITIES, STATES, as_dict
from metersync_manager.scope import Scope

A, F, d = m.fleet_alerts.c, m.supply_forecasts.c, m.devices.c
ACTIVE = ("open", "acknowledged")
PAGE = 50
RUNNING_OUT_DAYS = 14.0  # the fleet page lists supplies empty within this many days


@dataclass
class AlertFilter:
    state: str = "open"  # one of STATES
    severity: str | None = None
    customer: str | None = None
    offset: int = 0
    limit: int = PAGE

    @classmethod
    def parse(cls, args: Any) -> AlertFilter:
        state = args.get("state") if args.get("state") in STATES else "open"
        severity = args.get("severity") if args.get("severity") in SEVERITIES else None
        offset = args.get("offset", "0")
        return cls(
            state=state,
            severity=severity,
            customer=args.get("customer") or None,
            offset=min(int(offset), 10_000_000) if offset.isdigit() else 0,
        )


def _scoped(scope: Scope, f: AlertFilter | None = None) -> list[Any]:
    cond = [scope.where(A.customer_id)]
    if f is not None and f.customer:
        cond.append(A.customer_id == f.customer)
    if f is not None and f.severity:
        cond.append(A.severity == f.severity)
    return cond


def alert_counts(conn: Connection, scope: Scope, f: AlertFilter | None = None) -> dict[str, int]:
    """Alerts per state (and open critical ones), under the scope and the filter's customer
    and severity: the inbox's tabs and the fleet summary."""
    rows = conn.execute(
        select(A.state, A.severity, func.count())
        .where(*_scoped(scope, f), A.state.in_(ACTIVE if f is None else STATES))
        .group_by(A.state, A.severity)
    ).all()
    out = dict.fromkeys(STATES, 0) | {"critical": 0, "active": 0}
    for state, severity, n in rows:
        out[state] += n
        if state in ACTIVE:
            out["active"] += n
            if severity == "critical":
                out["critical"] += n
    return out


def alert_page(conn: Connection, scope: Scope, f: AlertFilter) -> tuple[list[dict[str, Any]], bool]:
    """One page of alerts of a state, newest first, with the subject device's name; and
    whether a next page exists."""
    q = (
        select(m.fleet_alerts, d.sys_name, d.model, d.serial_number)
        .select_from(
            m.fleet_alerts.outerjoin(
                m.devices, (A.subject_kind == "device") & (d.device_key == A.subject_id)
            )
        )
        .where(*_scoped(scope, f), A.state == f.state)
        .order_by(A.opened_at.desc(), A.alert_id.desc())
        .limit(f.limit + 1)
        .offset(f.offset)
    )
    rows = conn.execute(q).all()
    out = []
    for r in rows[: f.limit]:
        item = as_dict(r)
        item["device"] = {"name": r.sys_name, "model": r.model, "serial": r.serial_number}
        out.append(item)
    return out, len(rows) > f.limit


def device_alerts(conn: Connection, scope: Scope, key: str) -> list[dict[str, Any]]:
    """The open and acknowledged alerts of one device (ix_fleet_alerts_subject)."""
    q = (
        select(m.fleet_alerts)
        .where(
            A.subject_kind == "device",
            A.subject_id == key,
            A.state.in_(ACTIVE),
            scope.where(A.customer_id),
        )
        .order_by(A.opened_at.desc(), A.alert_id.desc())
        .limit(100)
    )
    return [as_dict(r) for r in conn.execute(q)]


def _forecast_row(r: Any) -> dict[str, Any]:
    return {
        "device_key": r.device_key,
        "idx": r.idx,
        "customer_id": r.customer_id,
        "description": r.description,
        "colour": r.colour,
        "part_number": r.part_number,
        "level": r.level,
        "computed_at": r.computed_at,
        "forecast": json.loads(r.forecast),
    }


def running_out(
    conn: Connection, scope: Scope, within: float = RUNNING_OUT_DAYS, limit: int = 20
) -> list[dict[str, Any]]:
    """Supplies forecast empty within `within` days, soonest first, with device names."""
    q = (
        select(m.supply_forecasts, d.sys_name, d.model, d.serial_number)
        .join(m.devices, d.device_key == F.device_key)
        .where(scope.where(F.customer_id), F.days_to_empty <= within)
        .order_by(F.days_to_empty, F.device_key, F.idx)
        .limit(limit)
    )
    out = []
    for r in conn.execute(q):
        item = _forecast_row(r)
        item["device"] = {"name": r.sys_name, "model": r.model, "serial": r.serial_number}
        out.append(item)
    return out


def device_forecasts(conn: Connection, key: str) -> dict[int, dict[str, Any]]:
    """The newest forecast of each supply of one device, by supply index."""
    rows = conn.execute(select(m.supply_forecasts).where(F.device_key == key))
    return {r.idx: _forecast_row(r) for r in rows}


def days_text(fc: dict[str, Any] | None) -> str:
    """A forecast in words: "about 12 days (9–15), confidence 70 %", or why there is none."""
    if not fc:
        return "no forecast yet"
    days = fc.get("daysToEmpty")
    if days is None:
        return f"no forecast: {fc.get('reason') or 'not enough history'}"
    if days < 1:
        head = "empty within a day"
    else:
        head = f"about {days:.0f} day{'s' if round(days) != 1 else ''}"
    low, high = fc.get("low"), fc.get("high")
    span = f" ({low:.0f}–{high:.0f})" if low is not None and high is not None else ""
    return f"{head}{span}, confidence {round(100 * (fc.get('confidence') or 0))} %"
