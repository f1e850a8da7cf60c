"""The console's HTTP guard: session cookie → `g.scope`, CSRF on every form, safe headers.

A request resolves to the same `Scope` as an operator token (`g.scope`), so every query a
page makes filters by it. Every POST carries the form token of its session (the sign-in form:
the token of a short-lived pre-session cookie, double submit); a POST without it is refused
with 403 before anything runs. Cookies are HttpOnly and SameSite=Lax, and Secure when the
request came over TLS.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from quart import Response, g, request

SESSION_COOKIE = "metersync_session"
LOGIN_COOKIE = "metersync_login"  # the sign-in form's CSRF token before a session exists
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self' data:; "
    "script-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def secure() -> bool:
    return request.scheme in ("https", "wss")


def set_cookie(resp: Response, name: str, value: str, max_age: int | None, path: str) -> None:
    resp.set_cookie(
        name, value, max_age=max_age, path=path, httponly=True, secure=secure(), samesite="Lax"
    )


def login_csrf() -> str:
    """The sign-in form's token: the pre-session cookie's, or a new one."""
    token = request.cookies.get(LOGIN_COOKIE) or ""
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
    g.login_csrf = token
    return token


def csrf_ok(form: Any, expected: str | None) -> bool:
    got = form.get("csrf") or ""
    return bool(expected) and hmac.compare_digest(got.encode(), (expected or "").encode())


def client_address() -> str:
    return request.remote_addr or "?"
