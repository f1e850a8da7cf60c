"""What the admin page lists and creates: customers, sites, enrollment and operator tokens."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from metersync_manager import ingest
from metersync_manager import models as m
from metersync_manager.extract import utc_naive
from metersync_manager.scope import Scope, check_customer_id
from metersync_manager.store import Store


class AdminError(ValueError):
    pass


def overview(store: Store) -> dict[str, list[dict[str, Any]]]:
    c, s, t, e = m.customers.c, m.sites.c, m.operator_tokens.c, m.enrollment_tokens.c
    with store.reading() as conn:

        def rows(q: Any) -> list[dict[str, Any]]:
            return [dict(x) for x in conn.execute(q).mappings()]

        return {
            "customers": rows(select(m.customers).order_by(c.customer_id)),
            "sites": rows(select(m.sites).order_by(s.customer_id, s.name)),
            "operator_tokens": rows(
                select(t.name, t.role, t.customers, t.created_at, t.revoked_at).order_by(
                    t.created_at.desc()
                )
            ),
            "enrollment_tokens": rows(
                select(e.created_at, e.expires_at, e.used_by, e.customer_id, e.site_id)
                .order_by(e.created_at.desc())
                .limit(50)
            ),
        }


def create_customer(store: Store, customer_id: str, name: str, now: datetime) -> None:
    check_customer_id(customer_id)
    if not name.strip():
        raise AdminError("a customer needs a name")
    try:
        with store.writing() as conn:
            conn.execute(
                m.customers.insert().values(
                    customer_id=customer_id, name=name.strip(), created_at=utc_naive(now)
                )
            )
    except IntegrityError:
        raise AdminError(f"the customer {customer_id!r} exists already") from None


def create_site(store: Store, customer_id: str, name: str, now: datetime) -> None:
    if not name.strip():
        raise AdminError("a site needs a name")
    try:
        with store.writing() as conn:
            store._check_customers(conn, {customer_id})
            conn.execute(
                m.sites.insert().values(
                    customer_id=customer_id, name=name.strip(), created_at=utc_naive(now)
                )
            )
    except IntegrityError:
        raise AdminError(f"the customer {customer_id!r} has a site {name!r} already") from None


def create_enrollment_token(
    store: Store, customer_id: str, site_id: int | None, valid: timedelta, now: datetime
) -> str:
    """A one-time enrollment token bound to the customer (and site); shown once."""
    token = ingest.new_token()
    with store.writing() as conn:
        store._check_customers(conn, {customer_id})
        if site_id is not None:
            s = m.sites.c
            found = conn.execute(
                select(s.site_id).where(s.site_id == site_id, s.customer_id == customer_id)
            ).first()
            if found is None:
                raise AdminError("that site is not one of the customer's")
        conn.execute(
            m.enrollment_tokens.insert().values(
                token_hash=ingest.hash_token(token),
                created_at=utc_naive(now),
                expires_at=utc_naive(now + valid),
                customer_id=customer_id,
                site_id=site_id,
            )
        )
    return token


def create_operator_token(store: Store, name: str, scope: Scope, now: datetime) -> str:
    if not name.strip():
        raise AdminError("a token needs a name")
    token = ingest.new_token()
    store.add_operator_token(ingest.hash_token(token), name.strip(), now, scope)
    return token
