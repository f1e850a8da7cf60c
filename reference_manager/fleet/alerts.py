"""Alerts in the database: apply the lifecycle's changes, and the operator's queries.

The query functions (`list_alerts`, `get_alert`, `acknowledge`, `resolve`, `settings`,
`put_settings`) are plain functions over a Store and a Scope returning dicts: the operator API,
the CLI and the console call the same ones. A row outside the scope is never loaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select, update

from metersync_manager import models as m
from metersync_manager.extract import utc_naive
from metersync_manager.fleet import notify
from metersync_manager.fleet.lifecycle import Changes, OpenAlert, as_ident, open_key
from metersync_manager.fleet.rules import DEFAULTS, RULES, Condition
from metersync_manager.scope import Scope
from metersync_manager.store import Store, iso

STATES = ("open", "acknowledged", "resolved")
SEVERITIES = ("critical", "warning", "info")
A = m.fleet_alerts.c


class AlertError(ValueError):
    """An operator action that cannot be done (the message says why)."""


def as_dict(row: Any) -> dict[str, Any]:
    return {
        "alertId": row.alert_id,
        "customerId": row.customer_id,
        "rule": row.rule,
        "subject": {"kind": row.subject_kind, "id": row.subject_id},
        "key": row.key,
        "state": row.state,
        "severity": row.severity,
        "title": row.title,
        "evidence": json.loads(row.evidence),
        "openedAt": iso(row.opened_at),
        "updatedAt": iso(row.updated_at),
        "lastTrueAt": iso(row.last_true_at),
        "flaps": row.flaps,
        "acknowledgedAt": iso(row.acknowledged_at),
        "acknowledgedBy": row.acknowledged_by,
        "resolvedAt": iso(row.resolved_at),
        "resolvedBy": row.resolved_by,
    }


# --- the evaluator's side -------------------------------------------------------------------


def unresolved(conn: Connection, rules: tuple[str, ...], kind: str, subjects: list[str] | None):
    """Alerts holding a key (unresolved, or resolved by an operator while the condition held)
    of these rules, for these subjects (None: all subjects of the kind)."""
    q = select(m.fleet_alerts).where(
        A.open_key.is_not(None), A.rule.in_(rules), A.subject_kind == kind
    )
    if subjects is not None:
        q = q.where(A.subject_id.in_(subjects))
    return conn.execute(q).all()


def to_open(rows: list[Any]) -> list[OpenAlert]:
    return [OpenAlert(r.alert_id, as_ident(r), r.state, r.severity, r.clear_count) for r in rows]


def apply(
    conn: Connection,
    changes: Changes,
    customer_of: Callable[[Condition], str],
    now: datetime,
) -> None:
    """Write one reconcile's changes and queue the notifications they make."""
    now = utc_naive(now)
    for c in changes.opened:
        row = conn.execute(
            m.fleet_alerts.insert()
            .values(
                customer_id=customer_of(c),
                rule=c.rule,
                subject_kind=c.subject_kind,
                subject_id=c.subject_id,
                key=c.key,
                open_key=open_key(c.ident),
                state="open",
                severity=c.severity,
                title=c.title,
                evidence=json.dumps(c.evidence, sort_keys=True),
                opened_at=now,
                updated_at=now,
                last_true_at=now,
                clear_count=0,
                flaps=0,
            )
            .returning(*m.fleet_alerts.c)
        ).one()
        notify.enqueue(conn, "alert.opened", row.customer_id, {"alert": as_dict(row)}, now)
    for a, c, news in changes.held:
        values: dict[str, Any] = {
            "severity": c.severity,
            "title": c.title,
            "evidence": json.dumps(c.evidence, sort_keys=True),
            "last_true_at": now,
            "clear_count": 0,
        }
        if a.clear_count:
            values["flaps"] = A.flaps + 1
        if news:
            values["updated_at"] = now
        row = conn.execute(
            update(m.fleet_alerts)
            .where(A.alert_id == a.alert_id)
            .values(**values)
            .returning(*m.fleet_alerts.c)
        ).one()
        if news:
            notify.enqueue(conn, "alert.updated", row.customer_id, {"alert": as_dict(row)}, now)
    for a in changes.cleared:
        conn.execute(
            update(m.fleet_alerts)
            .where(A.alert_id == a.alert_id)
            .values(clear_count=A.clear_count + 1)
        )
    for a in changes.resolved:
        row = conn.execute(
            update(m.fleet_alerts)
            .where(A.alert_id == a.alert_id)
            .values(state="resolved", resolved_at=now, updated_at=now, open_key=None)
            .returning(*m.fleet_alerts.c)
        ).one()
        notify.enqueue(conn, "alert.resolved", row.customer_id, {"alert": as_dict(row)}, now)
    for a in changes.released:
        conn.execute(update(m.fleet_alerts).where(A.alert_id == a.alert_id).values(open_key=None))


# --- the operator's side --------------------------------------------------------------------


def list_alerts(
    store: Store,
    scope: Scope,
    *,
    state: str | None = None,
    rule: str | None = None,
    severity: str | None = None,
    subject: str | None = None,
    customer: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Alerts newest first. state "active" means open or acknowledged."""
    q = select(m.fleet_alerts).where(scope.where(A.customer_id))
    if state == "active":
        q = q.where(A.state.in_(("open", "acknowledged")))
    elif state:
        q = q.where(A.state == state)
    for col, value in ((A.rule, rule), (A.severity, severity), (A.subject_id, subject)):
        if value:
            q = q.where(col == value)
    if customer:
        q = q.where(A.customer_id == customer)
    if since:
        q = q.where(A.updated_at >= utc_naive(since))
    q = q.order_by(A.opened_at.desc(), A.alert_id.desc()).limit(limit).offset(offset)
    with store._read() as conn:
        return [as_dict(r) for r in conn.execute(q)]


def get_alert(store: Store, scope: Scope, alert_id: int) -> dict[str, Any] | None:
    with store._read() as conn:
        row = _scoped(conn, scope, alert_id)
        return None if row is None else as_dict(row)


def _scoped(conn: Connection, scope: Scope, alert_id: int) -> Any:
    return conn.execute(
        select(m.fleet_alerts).where(A.alert_id == alert_id, scope.where(A.customer_id))
    ).first()


def acknowledge(store: Store, scope: Scope, alert_id: int, now: datetime) -> dict[str, Any] | None:
    """Acknowledge an open alert (None: not in scope); an acknowledged one stays as it was."""
    return _act(store, scope, alert_id, now, "acknowledged")


def resolve(store: Store, scope: Scope, alert_id: int, now: datetime) -> dict[str, Any] | None:
    """Resolve an alert by hand; it keeps its key until its condition clears."""
    return _act(store, scope, alert_id, now, "resolved")


def _act(
    store: Store, scope: Scope, alert_id: int, now: datetime, to: str
) -> dict[str, Any] | None:
    if not scope.can_write:
        raise PermissionError(f"a {scope.role} may not change alerts")
    now = utc_naive(now)
    with store._write() as conn:
        row = _scoped(conn, scope, alert_id)
        if row is None:
            return None
        if row.state == "resolved":
            if to == "acknowledged":
                raise AlertError(f"alert {alert_id} is resolved")
            return as_dict(row)  # resolving twice changes nothing
        if row.state == to:
            return as_dict(row)
        values: dict[str, Any] = {"state": to, "updated_at": now}
        if to == "acknowledged":
            values.update(acknowledged_at=now, acknowledged_by=scope.operator or "operator")
        else:
            values.update(resolved_at=now, resolved_by=scope.operator or "operator")
        row = conn.execute(
            update(m.fleet_alerts)
            .where(and_(A.alert_id == alert_id))
            .values(**values)
            .returning(*m.fleet_alerts.c)
        ).one()
        event = "alert.acknowledged" if to == "acknowledged" else "alert.resolved"
        notify.enqueue(conn, event, row.customer_id, {"alert": as_dict(row)}, now)
        return as_dict(row)


# --- rule settings --------------------------------------------------------------------------


def stored_settings(conn: Connection) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (r.customer_id, r.rule): json.loads(r.settings)
        for r in conn.execute(select(m.alert_settings))
    }


def settings(store: Store, scope: Scope, customer: str = "*") -> dict[str, Any]:
    """The effective settings of every rule for a customer ("*": the dealer's defaults)."""
    from metersync_manager.fleet.rules import settings_for

    if customer != "*" and not scope.allows(customer):
        raise LookupError(customer)
    with store._read() as conn:
        stored = stored_settings(conn)
    return {"customerId": customer, "rules": {r: settings_for(r, stored, customer) for r in RULES}}


def put_settings(
    store: Store, scope: Scope, customer: str, rule: str, values: dict[str, Any]
) -> dict[str, Any]:
    """Override a rule's settings for a customer (dealer admins: also "*", the defaults)."""
    if rule not in DEFAULTS:
        raise AlertError(f"unknown rule {rule!r}; one of {', '.join(RULES)}")
    if customer == "*" and not scope.can_admin:
        raise PermissionError("only a dealer admin sets the dealer defaults")
    if customer != "*" and not (scope.allows(customer) and scope.can_write):
        raise PermissionError(f"no write access to customer {customer!r}")
    for k, v in values.items():
        if k not in DEFAULTS[rule]:
            raise AlertError(
                f"rule {rule} has no setting {k!r}; it has {', '.join(DEFAULTS[rule])}"
            )
        want = type(DEFAULTS[rule][k])
        ok = (
            isinstance(v, bool)
            if want is bool
            else isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
        )
        if not ok:
            raise AlertError(
                f"{rule}.{k} must be {'true or false' if want is bool else 'a number ≥ 0'}"
            )
    s = m.alert_settings.c
    with store._write() as conn:
        old = conn.execute(
            select(s.settings).where(s.customer_id == customer, s.rule == rule)
        ).scalar()
        merged = {**(json.loads(old) if old else {}), **values}
        if old is None:
            conn.execute(
                m.alert_settings.insert().values(
                    customer_id=customer, rule=rule, settings=json.dumps(merged)
                )
            )
        else:
            conn.execute(
                update(m.alert_settings)
                .where(s.customer_id == customer, s.rule == rule)
                .values(settings=json.dumps(merged))
            )
    return settings(store, scope, customer)
