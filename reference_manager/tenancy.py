"""Customers, sites and who owns what, over time (MS-OWN; storage functions on a Connection).

The `assignments` table keeps, per agent and per device, the intervals during which it
belonged to a customer and site (and, for a device, to an owning agent): the meter export
splits a period at these boundaries, so a bill for a past period uses the assignment in force
then.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select, update

from metersync_manager import models as m
from metersync_manager.scope import ScopeError, check_customer_id

DEFAULT_CUSTOMER = "default"


class TenancyError(ValueError):
    """An operator's request that names no such customer, site, agent or device."""


def _open(subject: str, subject_id: str) -> Any:
    a = m.assignments.c
    return and_(a.subject == subject, a.subject_id == subject_id, a.valid_to.is_(None))


def assign(
    conn: Connection,
    subject: str,
    subject_id: str,
    customer_id: str,
    site_id: int | None,
    at: datetime,
    reason: str,
    by: str | None = None,
    owner_agent_id: str | None = None,
) -> None:
    """Close the subject's open assignment at `at` and open a new one from `at`."""
    conn.execute(update(m.assignments).where(_open(subject, subject_id)).values(valid_to=at))
    conn.execute(
        m.assignments.insert().values(
            subject=subject,
            subject_id=subject_id,
            customer_id=customer_id,
            site_id=site_id,
            owner_agent_id=owner_agent_id,
            valid_from=at,
            reason=reason,
            by=by,
        )
    )


def first_reports(
    conn: Connection, agent_id: str, agent: Any, devs: list[Any], events: list[dict[str, Any]]
) -> None:
    """New devices belong to the reporting agent's customer and site. A new device at the
    address where another device of the same customer stood, as this agent saw it (addresses
    repeat across networks, MS-OWN-5), is a swap: an event on both, never a counter reset of
    the old one."""
    d, a = m.devices.c, m.assignments.c
    keys = sorted(x.device_key for x in devs)
    conn.execute(  # none is open for a new device; closed all the same, as assign() does
        update(m.assignments)
        .where(a.subject == "device", a.subject_id.in_(keys), a.valid_to.is_(None))
        .values(valid_to=min(x.reading["polled_at"] for x in devs))
    )
    conn.execute(
        m.assignments.insert(),
        [
            {
                "subject": "device",
                "subject_id": x.device_key,
                "customer_id": agent.customer_id,
                "site_id": agent.site_id,
                "owner_agent_id": agent_id,
                "valid_from": x.reading["polled_at"],
                "reason": "first-report",
                "by": None,
            }
            for x in devs
        ],
    )
    new_keys = {x.device_key for x in devs}
    by_ip = {x.ip: x for x in devs}
    previous = conn.execute(
        select(d.device_key, d.current_ip, d.last_seen).where(
            d.last_agent_id == agent_id,
            d.current_ip.in_(sorted(by_ip)),
            d.customer_id == agent.customer_id,
            d.device_key.not_in(sorted(new_keys)),
        )
    ).all()
    for old in previous:
        x = by_ip[old.current_ip]
        at = x.reading["polled_at"]
        if old.last_seen >= at:
            continue  # both answer now: two devices, not a swap
        events.append(
            {
                "device_key": x.device_key,
                "at": at,
                "kind": "swap-in",
                "detail": {"ip": x.ip, "replaced": old.device_key},
            }
        )
        events.append(
            {
                "device_key": old.device_key,
                "at": at,
                "kind": "swap-out",
                "detail": {"ip": x.ip, "replacedBy": x.device_key},
            }
        )


def hand_over(
    conn: Connection, device_key: str, old: str | None, new: str, agent: Any, at: datetime
) -> None:
    """The device's owner becomes `new` (of the same customer). The bill's interval is split
    only when the site changes; the hand-over itself is a device event."""
    d = m.devices.c
    site = conn.execute(select(d.site_id).where(d.device_key == device_key)).scalar()
    conn.execute(
        update(m.devices)
        .where(d.device_key == device_key)
        .values(owner_agent_id=new, site_id=agent.site_id)
    )
    if site == agent.site_id:
        conn.execute(
            update(m.assignments).where(_open("device", device_key)).values(owner_agent_id=new)
        )
        return
    assign(
        conn,
        "device",
        device_key,
        agent.customer_id,
        agent.site_id,
        at,
        "hand-over",
        by=old,
        owner_agent_id=new,
    )


# --- operator actions ----------------------------------------------------------------------


def create_customer(conn: Connection, customer_id: str, name: str, now: datetime) -> None:
    try:
        check_customer_id(customer_id)
    except ScopeError as exc:
        raise TenancyError(str(exc)) from None
    c = m.customers.c
    if conn.execute(select(c.customer_id).where(c.customer_id == customer_id)).first():
        raise TenancyError(f"customer {customer_id!r} exists already")
    conn.execute(m.customers.insert().values(customer_id=customer_id, name=name, created_at=now))


def site_id(
    conn: Connection, customer_id: str, name: str | None, create: bool, now: datetime
) -> int | None:
    """The id of a customer's site by name (created when `create`); None for no site."""
    if name is None:
        return None
    s = m.sites.c
    found = conn.execute(
        select(s.site_id).where(s.customer_id == customer_id, s.name == name)
    ).scalar()
    if found is not None:
        return int(found)
    if not create:
        raise TenancyError(f"customer {customer_id!r} has no site {name!r}")
    return int(
        conn.execute(
            m.sites.insert()
            .values(customer_id=customer_id, name=name, created_at=now)
            .returning(s.site_id)
        ).scalar_one()
    )


def require_customer(conn: Connection, customer_id: str) -> None:
    c = m.customers.c
    if not conn.execute(select(c.customer_id).where(c.customer_id == customer_id)).first():
        raise TenancyError(f"no such customer: {customer_id!r}")


def move_device(
    conn: Connection, device_key: str, customer_id: str, site: int | None, at: datetime, by: str
) -> None:
    d = m.devices.c
    row = conn.execute(select(d.owner_agent_id).where(d.device_key == device_key)).first()
    if row is None:
        raise TenancyError(f"no such device: {device_key}")
    conn.execute(
        update(m.devices)
        .where(d.device_key == device_key)
        .values(customer_id=customer_id, site_id=site)
    )
    assign(conn, "device", device_key, customer_id, site, at, "moved", by, row.owner_agent_id)
    _event(conn, device_key, at, "moved", customer_id, site, {"by": by})


def move_agent(
    conn: Connection, agent_id: str, customer_id: str, site: int | None, at: datetime, by: str
) -> int:
    """Move an agent and the devices it owns; how many devices moved."""
    a, d = m.agents.c, m.devices.c
    if not conn.execute(select(a.agent_id).where(a.agent_id == agent_id)).first():
        raise TenancyError(f"no such agent: {agent_id}")
    conn.execute(
        update(m.agents).where(a.agent_id == agent_id).values(customer_id=customer_id, site_id=site)
    )
    assign(conn, "agent", agent_id, customer_id, site, at, "moved", by)
    keys = conn.execute(select(d.device_key).where(d.owner_agent_id == agent_id)).scalars().all()
    for key in keys:
        move_device(conn, key, customer_id, site, at, by)
    return len(keys)


def _event(
    conn: Connection,
    device_key: str,
    at: datetime,
    kind: str,
    customer_id: str,
    site: int | None,
    detail: dict[str, Any],
) -> None:
    conn.execute(
        m.device_events.insert().values(
            device_key=device_key,
            at=at,
            kind=kind,
            customer_id=customer_id,
            site_id=site,
            detail=json.dumps(detail, sort_keys=True),
        )
    )
