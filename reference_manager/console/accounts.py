"""Console accounts: users (argon2id hashes), sessions and the login rate limit.

A signed-in user resolves to the same `Scope` as an operator token of that role and customers.
The session cookie holds a random token; the database only its sha256, with the session's
CSRF form token. Failed sign-ins are counted per user name and per client address over a
window; past the limit a sign-in is refused without checking the password.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from metersync_manager import models as m
from metersync_manager.extract import utc_naive
from metersync_manager.scope import Scope, ScopeError
from metersync_manager.store import Store

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 12
SESSION_TTL = timedelta(hours=12)
WINDOW = timedelta(minutes=15)
MAX_USER_FAILURES = 5  # per user name in WINDOW
MAX_ADDRESS_FAILURES = 20  # per client address in WINDOW

_hasher = PasswordHasher()  # argon2id, the library's defaults (RFC 9106 second choice)
# A hash to verify against when the user does not exist: the answer takes as long either way.
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A user name, password or account that cannot be used; the message says why."""


@dataclass(frozen=True)
class Session:
    scope: Scope
    csrf: str
    user_id: int
    username: str


def new_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_username(name: str) -> str:
    if not USERNAME.fullmatch(name):
        raise AccountError(
            f"user name {name!r}: 1-64 letters, digits, '.', '_', '@' or '-', starting with a "
            "letter or digit"
        )
    return name


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password has at least {MIN_PASSWORD} characters")


class Accounts:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- administration (CLI and the admin page) ----------------------------------------------

    def create(self, username: str, password: str, scope: Scope, now: datetime) -> None:
        check_username(username)
        _check_password(password)
        u = m.console_users
        with self.store.writing() as conn:
            self.store._check_customers(conn, scope.customers)
            if conn.execute(select(u.c.user_id).where(u.c.username == username)).first():
                raise AccountError(f"the user {username!r} exists already")
            conn.execute(
                u.insert().values(
                    username=username,
                    password_hash=_hasher.hash(password),
                    role=scope.role,
                    customers=scope.encode(),
                    created_at=utc_naive(now),
                    password_at=utc_naive(now),
                )
            )

    def reset(self, username: str, password: str, now: datetime) -> None:
        """A new password (and the account enabled again); its sessions end."""
        _check_password(password)
        self._update(
            username,
            now,
            password_hash=_hasher.hash(password),
            password_at=utc_naive(now),
            disabled_at=None,
        )

    def disable(self, username: str, now: datetime) -> None:
        self._update(username, now, disabled_at=utc_naive(now))

    def _update(self, username: str, now: datetime, **values: Any) -> None:
        u, s = m.console_users, m.console_sessions
        with self.store.writing() as conn:
            user_id = conn.execute(
                select(u.c.user_id).where(u.c.username == username)
            ).scalar_one_or_none()
            if user_id is None:
                raise AccountError(f"no user {username!r}")
            conn.execute(u.update().where(u.c.user_id == user_id).values(**values))
            conn.execute(s.delete().where(s.c.user_id == user_id))

    def users(self) -> list[dict[str, Any]]:
        u = m.console_users.c
        with self.store.reading() as conn:
            rows = conn.execute(
                select(u.username, u.role, u.customers, u.created_at, u.disabled_at).order_by(
                    u.username
                )
            ).mappings()
            return [dict(r) for r in rows]

    # --- sign-in ------------------------------------------------------------------------------

    def blocked(self, username: str, address: str, now: datetime) -> bool:
        a = m.login_attempts.c
        since = utc_naive(now) - WINDOW
        with self.store.reading() as conn:

            def failures(*cond: Any) -> int:
                q = select(func.count()).where(a.at > since, a.ok.is_(False), *cond)
                return int(conn.execute(q).scalar_one())

            return (
                failures(a.username == username) >= MAX_USER_FAILURES
                or failures(a.address == address) >= MAX_ADDRESS_FAILURES
            )

    def sign_in(
        self, username: str, password: str, address: str, now: datetime
    ) -> tuple[str, Session] | None:
        """(cookie token, session) for a right password of an enabled account, else None.
        Every attempt is recorded for the rate limit; call `blocked` first."""
        u = m.console_users.c
        with self.store.reading() as conn:
            row = conn.execute(
                select(m.console_users).where(u.username == username, u.disabled_at.is_(None))
            ).first()
        ok = False
        try:
            ok = _hasher.verify(row.password_hash if row else _DUMMY, password) and row is not None
        except (VerificationError, InvalidHashError):
            ok = False
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        with self.store.writing() as conn:
            conn.execute(
                m.login_attempts.insert().values(
                    at=utc_naive(now), username=username[:64], address=address[:64], ok=ok
                )
            )
            if not ok or row is None:
                return None
            conn.execute(
                m.console_sessions.insert().values(
                    token_hash=_digest(token),
                    user_id=row.user_id,
                    csrf=csrf,
                    created_at=utc_naive(now),
                    expires_at=utc_naive(now + SESSION_TTL),
                )
            )
            # Old attempts are not needed beyond the window.
            la = m.login_attempts
            conn.execute(la.delete().where(la.c.at < utc_naive(now) - 2 * WINDOW))
        try:
            scope = Scope.decode(row.role, row.customers, row.username)
        except ScopeError:
            return None
        return token, Session(scope, csrf, row.user_id, row.username)

    def session(self, token: str, now: datetime) -> Session | None:
        """The live session of a cookie token, with its account's current scope."""
        s, u = m.console_sessions.c, m.console_users.c
        with self.store.reading() as conn:
            row = conn.execute(
                select(s.csrf, u.user_id, u.username, u.role, u.customers)
                .join(m.console_users, u.user_id == s.user_id)
                .where(
                    s.token_hash == _digest(token),
                    s.expires_at > utc_naive(now),
                    u.disabled_at.is_(None),
                )
            ).first()
        if row is None:
            return None
        return Session(
            Scope.decode(row.role, row.customers, row.username), row.csrf, row.user_id, row.username
        )

    def sign_out(self, token: str) -> None:
        s = m.console_sessions
        with self.store.writing() as conn:
            conn.execute(s.delete().where(s.c.token_hash == _digest(token)))
