"""What the admin page lists and creates: customers, sites, enrollment and operator tokens."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from metersync_manager import ingest
from metersync_manager import models as m
from metersync_manager.scope import Scope
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
    if not name.strip():
        raise AdminError("a customer needs a name")
    store.create_customer(customer_id, name.strip(), now)


def create_site(store: Store, customer_id: str, name: str, now: datetime) -> None:
    if not name.strip():
        raise AdminError("a site needs a name")
    store.create_site(customer_id, name.strip(), now)


def create_enrollment_token(
    store: Store, customer_id: str, site: str | None, valid: timedelta, now: datetime
) -> str:
    """A one-time enrollment token bound to the customer (and site); shown once."""
    token = ingest.new_token()
    store.add_token(ingest.hash_token(token), now + valid, now, None, customer_id, site)
    return token


def create_operator_token(store: Store, name: str, scope: Scope, now: datetime) -> str:
    if not name.strip():
        raise AdminError("a token needs a name")
    token = ingest.new_token()
    store.add_operator_token(ingest.hash_token(token), name.strip(), now, scope)
    return token
