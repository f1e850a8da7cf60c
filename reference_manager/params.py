"""Query parameters and problem documents of the operator API (shared by its blueprints)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from quart import request

import metersync_generated.v1 as model

_DEVICE_KEY = re.compile(r"^(sn|mac|sys):[!-~]{1,250}$")
_INT = re.compile(r"^[0-9]{1,10}$")
_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)$"
)
COUNTER_KINDS = frozenset(k.value for k in model.CounterKind)


class BadParam(Exception):
    pass


def problem(status: int, title: str, detail: str | None = None) -> tuple[dict[str, Any], int]:
    body: dict[str, Any] = {"status": status, "title": title}
    if detail:
        body["detail"] = detail
    return body, status


def parse_time(value: str, name: str) -> datetime:
    """An RFC 3339 query time → aware UTC; out-of-range years are clamped, never an error."""
    m = _RFC3339.match(value)
    if not m:
        raise BadParam(f"{name} must be an RFC 3339 date-time with a time zone")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    frac = int((m.group(7) or "0")[:6].ljust(6, "0"))
    tz = m.group(8).upper()
    if not (1 <= mo <= 12 and 0 <= h <= 23 and 0 <= mi <= 59 and 0 <= s <= 60):
        raise BadParam(f"{name} is not a valid date-time")
    offset = (
        timedelta(0)
        if tz == "Z"
        else (1 if tz[0] == "+" else -1) * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    )
    if s == 60:  # a leap second: the last instant of that minute
        s, frac = 59, 999999
    try:
        local = datetime(max(y, 1), mo, d, h, mi, s, frac)
    except ValueError:
        raise BadParam(f"{name} is not a valid date-time") from None
    try:
        return (local - offset).replace(tzinfo=UTC)
    except OverflowError:
        return (datetime.min if offset > timedelta(0) else datetime.max).replace(tzinfo=UTC)


def int_param(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _INT.match(raw) or not lo <= int(raw) <= hi:
        raise BadParam(f"{name} must be an integer from {lo} to {hi}")
    return int(raw)


def time_param(name: str, required: bool = False) -> datetime | None:
    raw = request.args.get(name)
    if raw is None:
        if required:
            raise BadParam(f"{name} is required")
        return None
    return parse_time(raw, name)


def key_param(name: str) -> str | None:
    raw = request.args.get(name)
    if raw is not None and not _DEVICE_KEY.match(raw):
        raise BadParam(f"{name} is not a device key")
    return raw


def kind_param() -> str | None:
    raw = request.args.get("kind")
    if raw is not None and raw not in COUNTER_KINDS:
        raise BadParam("kind is not a counter kind")
    return raw


def check_key(device_key: str) -> None:
    if not _DEVICE_KEY.match(device_key):
        raise BadParam("not a device key")
