"""Notifications: a durable queue in the database, delivered by webhook and e-mail.

`enqueue` runs in the transaction that changed the alert or placed the order, so an event is
queued exactly when it happened, whatever crashes after. `Sender` delivers due rows at least
once: it leases a row (moves its next_at on), sends, then marks it sent; a restart resends
what was leased and not marked. The receiver de-duplicates by the event id.

Webhook (schema `metersync.webhook/1`, spec/openapi/manager.yaml `webhooks`): POST of the
JSON event with `X-MeterSync-Event`, `X-MeterSync-Delivery` (the event id),
`X-MeterSync-Timestamp` (Unix seconds) and `X-MeterSync-Signature: v1=<hex HMAC-SHA256 of
"<timestamp>.<exact body>" under the target's secret>`. A non-2xx answer or no answer is
retried with exponential backoff and full jitter; `max_failures` in a row disable the target
and open a `webhook-failing` alert. E-mail goes through the configured relay (aiosmtplib),
immediately or as a digest per recipient; a resolved alert sends a recovery notice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import Connection, or_, select, update

from metersync_manager import models as m
from metersync_manager.extract import utc_naive
from metersync_manager.scope import Scope
from metersync_manager.store import Store, iso

log = logging.getLogger("metersync.manager.notify")

SCHEMA = "metersync.webhook/1"
EVENTS = (
    "alert.opened",
    "alert.updated",
    "alert.acknowledged",
    "alert.resolved",
    "supply.order",
)
EMAIL_DEFAULT_EVENTS = ("alert.opened", "alert.updated", "alert.resolved", "supply.order")
N, T = m.notifications.c, m.notify_targets.c


class TargetError(ValueError):
    """A notification target that cannot be created (the message says why)."""


@dataclass(frozen=True)
class SmtpRelay:
    host: str
    port: int = 25
    sender: str = "metersync@localhost"
    tls: str = "starttls"  # starttls (when offered… required unless "none") | tls | none
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class NotifyConfig:
    smtp: SmtpRelay | None = None
    max_failures: int = 8
    backoff: float = 30.0  # seconds before the first retry; doubled per attempt
    backoff_cap: float = 3600.0
    lease: float = 120.0  # a claimed row is due again after this if never marked
    timeout: float = 10.0  # webhook request timeout


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


# --- queueing -------------------------------------------------------------------------------


def enqueue(
    conn: Connection, event: str, customer_id: str, data: dict[str, Any], now: datetime
) -> str:
    """Queue `event` for every enabled target of the customer that wants it; its event id."""
    event_id = str(uuid.uuid4())
    body = json.dumps(
        {
            "schema": SCHEMA,
            "eventId": event_id,
            "type": event,
            "occurredAt": iso(now),
            "customerId": customer_id,
            **data,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    targets = conn.execute(
        select(m.notify_targets).where(
            T.enabled, or_(T.customer_id == customer_id, T.customer_id == "*")
        )
    ).all()
    for t in targets:
        wanted = (
            t.events.split()
            if t.events
            else (EMAIL_DEFAULT_EVENTS if t.kind == "email" else EVENTS)
        )
        if event not in wanted:
            continue
        due = now
        if t.kind == "email" and t.mode == "digest":
            due = now + timedelta(minutes=t.digest_minutes)
        conn.execute(
            m.notifications.insert().values(
                target_id=t.target_id,
                event_id=event_id,
                event_type=event,
                customer_id=customer_id,
                payload=body,
                state="pending",
                attempts=0,
                next_at=due,
                created_at=now,
            )
        )
    return event_id


# --- targets (operator API, CLI, console) ---------------------------------------------------


def target_dict(row: Any) -> dict[str, Any]:
    return {
        "targetId": row.target_id,
        "customerId": row.customer_id,
        "kind": row.kind,
        "address": row.address,
        "mode": row.mode,
        "digestMinutes": row.digest_minutes,
        "events": row.events.split(),
        "enabled": bool(row.enabled),
        "failures": row.failures,
        "disabledAt": iso(row.disabled_at),
        "createdAt": iso(row.created_at),
    }


def add_target(
    store: Store,
    scope: Scope,
    *,
    kind: str,
    address: str,
    customer: str,
    now: datetime,
    mode: str = "immediate",
    events: list[str] | None = None,
    secret: str | None = None,
    digest_minutes: int = 60,
) -> dict[str, Any]:
    """A webhook (the answer carries its secret, once) or an e-mail recipient."""
    if customer == "*" and not scope.can_admin:
        raise PermissionError("only a dealer admin adds targets for every customer")
    if customer != "*" and not (scope.allows(customer) and scope.can_write):
        raise PermissionError(f"no write access to customer {customer!r}")
    if kind == "webhook":
        if not address.startswith(("https://", "http://")):
            raise TargetError("a webhook address is an http(s) URL")
        secret = secret or secrets.token_urlsafe(32)
    elif kind == "email":
        if "@" not in address or any(c in address for c in " \r\n<>,"):
            raise TargetError("an e-mail address like dealer@example.com")
        secret = None
    else:
        raise TargetError("kind is webhook or email")
    if mode not in ("immediate", "digest") or (mode == "digest" and kind != "email"):
        raise TargetError("mode is immediate, or digest for e-mail")
    if not 1 <= digest_minutes <= 10080:
        raise TargetError("digestMinutes is from 1 to 10080 (a week)")
    bad = [e for e in events or [] if e not in EVENTS]
    if bad:
        raise TargetError(f"unknown event types {bad}; known: {', '.join(EVENTS)}")
    with store._write() as conn:
        if customer != "*":
            store._check_customers(conn, {customer})
        row = conn.execute(
            m.notify_targets.insert()
            .values(
                customer_id=customer,
                kind=kind,
                address=address,
                secret=secret,
                mode=mode,
                digest_minutes=digest_minutes,
                events=" ".join(events or []),
                enabled=True,
                failures=0,
                created_at=utc_naive(now),
            )
            .returning(*m.notify_targets.c)
        ).one()
    out = target_dict(row)
    if secret:
        out["secret"] = secret
    return out


def list_targets(store: Store, scope: Scope) -> list[dict[str, Any]]:
    with store._read() as conn:
        q = select(m.notify_targets).where(scope.where(T.customer_id)).order_by(T.target_id)
        return [target_dict(r) for r in conn.execute(q)]


def set_enabled(
    store: Store, scope: Scope, target_id: int, enabled: bool, now: datetime
) -> dict[str, Any] | None:
    """Enable (failures start from 0, queued events become due, the webhook-failing alert
    resolves) or disable a target."""
    from metersync_manager.fleet import alerts, lifecycle

    if not scope.can_write:
        raise PermissionError(f"a {scope.role} may not change targets")
    now = utc_naive(now)
    with store._write() as conn:
        row = conn.execute(
            select(m.notify_targets).where(T.target_id == target_id, scope.where(T.customer_id))
        ).first()
        if row is None:
            return None
        conn.execute(
            update(m.notify_targets)
            .where(T.target_id == target_id)
            .values(enabled=enabled, failures=0, disabled_at=None if enabled else now)
        )
        if enabled:
            conn.execute(
                update(m.notifications)
                .where(N.target_id == target_id, N.state == "pending")
                .values(next_at=now)
            )
            held = alerts.unresolved(conn, ("webhook-failing",), "webhook", [str(target_id)])
            changes = lifecycle.reconcile(alerts.to_open(held), [], settle=1)
            alerts.apply(conn, changes, lambda c: row.customer_id, now)
        row = conn.execute(select(m.notify_targets).where(T.target_id == target_id)).one()
        return target_dict(row)


def deliveries(store: Store, scope: Scope, limit: int = 100) -> list[dict[str, Any]]:
    """The queue, newest first: what was sent, what waits, and why it failed."""
    with store._read() as conn:
        q = (
            select(m.notifications)
            .where(scope.where(N.customer_id))
            .order_by(N.id.desc())
            .limit(limit)
        )
        return [
            {
                "id": r.id,
                "targetId": r.target_id,
                "eventId": r.event_id,
                "type": r.event_type,
                "customerId": r.customer_id,
                "state": r.state,
                "attempts": r.attempts,
                "nextAt": iso(r.next_at),
                "createdAt": iso(r.created_at),
                "sentAt": iso(r.sent_at),
                "lastError": r.last_error,
            }
            for r in conn.execute(q)
        ]


# --- delivery -------------------------------------------------------------------------------


class Sender:
    """Deliver due notifications: `await sender.run_once()` sends one batch."""

    def __init__(self, store: Store, config: NotifyConfig, clock: Any) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.rng = random.Random()
        self._client: httpx.AsyncClient | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _claim(self, limit: int = 20) -> list[tuple[Any, list[Any]]]:
        """Lease due rows: (target, rows) groups; a digest target takes all its pending rows."""
        now = utc_naive(self.clock())
        lease = now + timedelta(seconds=self.config.lease)
        with self.store._write() as conn:
            q = (
                select(m.notifications, m.notify_targets)
                .join(m.notify_targets, T.target_id == N.target_id)
                .where(N.state == "pending", N.next_at <= now, T.enabled)
                .order_by(N.next_at, N.id)
                .limit(limit)
            )
            if self.store.dialect == "postgresql":
                q = q.with_for_update(skip_locked=True, of=m.notifications)
            rows = conn.execute(q).all()
            groups: dict[int, tuple[Any, list[Any]]] = {}
            for r in rows:
                groups.setdefault(r.target_id, (r, []))[1].append(r)
            for tid, (t, _items) in list(groups.items()):
                if t.kind == "email" and t.mode == "digest":
                    rest = conn.execute(
                        select(m.notifications).where(N.target_id == tid, N.state == "pending")
                    ).all()
                    groups[tid] = (t, list(rest))
            ids = [r.id for _, items in groups.values() for r in items]
            if ids:
                conn.execute(update(m.notifications).where(N.id.in_(ids)).values(next_at=lease))
        return list(groups.values())

    async def run_once(self) -> int:
        """Send what is due; how many notifications were delivered."""
        groups = await asyncio.to_thread(self._claim)
        sent = 0
        for target, rows in groups:
            if target.kind == "webhook":
                for r in rows:
                    error = await self._webhook(target, r.payload.encode())
                    await asyncio.to_thread(self._finish, target, [r], error)
                    sent += error is None
            else:
                batches = [rows] if target.mode == "digest" else [[r] for r in rows]
                for batch in batches:
                    error = await self._email(target, batch)
                    await asyncio.to_thread(self._finish, target, batch, error)
                    sent += len(batch) if error is None else 0
        return sent

    async def _webhook(self, target: Any, body: bytes) -> str | None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.config.timeout)
        ts = int(time.time())
        event = json.loads(body)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "metersync-manager",
            "X-MeterSync-Event": event["type"],
            "X-MeterSync-Delivery": event["eventId"],
            "X-MeterSync-Timestamp": str(ts),
            "X-MeterSync-Signature": signature(target.secret, ts, body),
        }
        try:
            resp = await self._client.post(target.address, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        return None if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code}"

    async def _email(self, target: Any, rows: list[Any]) -> str | None:
        import aiosmtplib

        relay = self.config.smtp
        if relay is None:
            return "no SMTP relay configured (serve --smtp-relay)"
        msg = render_mail([json.loads(r.payload) for r in rows], relay.sender, target.address)
        try:
            await aiosmtplib.send(
                msg,
                hostname=relay.host,
                port=relay.port,
                use_tls=relay.tls == "tls",
                start_tls=relay.tls == "starttls",
                username=relay.username,
                password=relay.password,
                timeout=relay.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        return None

    def _backoff(self, attempts: int) -> float:
        """Exponential with full jitter, capped."""
        ceiling = min(self.config.backoff_cap, self.config.backoff * 2 ** (attempts - 1))
        return self.rng.uniform(ceiling / 2, ceiling)

    def _finish(self, target: Any, rows: list[Any], error: str | None) -> None:
        from metersync_manager.fleet import alerts, lifecycle
        from metersync_manager.fleet.rules import Condition

        now = utc_naive(self.clock())
        ids = [r.id for r in rows]
        with self.store._write() as conn:
            if error is None:
                conn.execute(
                    update(m.notifications)
                    .where(N.id.in_(ids))
                    .values(state="sent", sent_at=now, attempts=N.attempts + 1, last_error=None)
                )
                conn.execute(
                    update(m.notify_targets)
                    .where(T.target_id == target.target_id)
                    .values(failures=0)
                )
                return
            attempts = max(r.attempts for r in rows) + 1
            conn.execute(
                update(m.notifications)
                .where(N.id.in_(ids))
                .values(
                    attempts=N.attempts + 1,
                    last_error=error,
                    next_at=now + timedelta(seconds=self._backoff(attempts)),
                )
            )
            failures = conn.execute(
                update(m.notify_targets)
                .where(T.target_id == target.target_id)
                .values(failures=T.failures + 1)
                .returning(T.failures)
            ).scalar_one()
            log.warning(
                "notification to target %s failed (%s): %s", target.target_id, failures, error
            )
            if target.kind != "webhook" or failures < self.config.max_failures:
                return
            conn.execute(
                update(m.notify_targets)
                .where(T.target_id == target.target_id)
                .values(enabled=False, disabled_at=now)
            )
            cond = Condition(
                "webhook-failing",
                "webhook",
                str(target.target_id),
                "",
                "critical",
                f"webhook {target.address} disabled after {failures} failed deliveries",
                {"address": target.address, "failures": failures, "lastError": error},
            )
            held = alerts.unresolved(conn, ("webhook-failing",), "webhook", [str(target.target_id)])
            changes = lifecycle.reconcile(alerts.to_open(held), [cond])
            customer = target.customer_id if target.customer_id != "*" else "default"
            alerts.apply(conn, changes, lambda c: customer, now)


def render_mail(events: list[dict[str, Any]], sender: str, to: str) -> EmailMessage:
    """One event, or a digest of several, as a plain-text mail."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    lines = [_line(e) for e in events]
    if len(events) == 1:
        msg["Subject"] = f"[MeterSync] {lines[0]}"
    else:
        msg["Subject"] = f"[MeterSync] digest: {len(events)} events"
    msg["Message-ID"] = f"<{events[0]['eventId']}@metersync>"
    body = "\n".join(f"- {ln}" for ln in lines)
    body += "\n\n" + "\n".join(f"{e['type']} {e['eventId']} at {e['occurredAt']}" for e in events)
    msg.set_content(body + "\n")
    return msg


VERBS = {
    "alert.opened": "Alert",
    "alert.updated": "Changed",
    "alert.acknowledged": "Acknowledged",
    "alert.resolved": "Resolved",
}


def _line(event: dict[str, Any]) -> str:
    kind = event["type"]
    if kind == "supply.order":
        o = event["order"]
        part = f" (part {o['partNumber']})" if o.get("partNumber") else ""
        what = o.get("description") or f"supply {o['supply']}"
        return f"Order: {what}{part} for {o['deviceKey']}"
    a = event["alert"]
    verb = VERBS[kind]
    return f"{verb} [{a['severity']}] {a['title']} — {a['subject']['kind']} {a['subject']['id']}"
