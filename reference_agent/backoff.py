"""The delivery rules as pure functions: what an answer means, and when to try again.

No I/O here. A transport turns what happened on the wire into `decide(...)`'s inputs; the
outbox stores the resulting wait. The rules are the spec's Table 11-1 and section 11.1:

- 200 with a Receipt for this message (accepted or duplicate): delivered (MS-DEL-3).
- Network errors, timeouts, 3xx, 5xx or 429 without a valid Error, codes 4000-4999, 2004,
  5004, 5005: try again after the backoff.
- Codes 2001, 2002, 2003, 2008, 2009 (the agent's enrollment or key): try again after the
  backoff, and alert the operator.
- Any other code, and an unknown reserved (7000-8999) or vendor (9000-9999) code with a status
  other than 429 or 5xx: refused;
  the report goes to the outbox's rejected area and is not retried automatically.
- The wait after the n-th consecutive failure is uniform(0, min(900 s, 5 s * 2**(n-1))) (full
  jitter), never shorter than the receiver's Retry-After (MS-DEL-10, MS-DEL-11).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from metersync.errors import BY_CODE

BASE_SECONDS = 5.0
CAP_SECONDS = 900.0
# Codes about the agent's enrollment or key: retried, and the operator is alerted.
AGENT_LEVEL_CODES = frozenset({2001, 2002, 2003, 2008, 2009})
RETRY_CODES = frozenset({2004, 5004, 5005})  # besides the whole 4000-4999 range
BY_STATUS_CODES = range(7000, 10000)  # reserved (7000-8999) and vendor codes: by HTTP status


@dataclass(frozen=True)
class Delivered:
    """The manager stored the message (now, or before: duplicate)."""

    duplicate: bool = False


@dataclass(frozen=True)
class RetryLater:
    """Not stored; send the same bytes again, not before retry_after seconds when given."""

    reason: str
    retry_after: float | None = None
    alert: bool = False  # the operator must act (the manager refuses this agent's key)
    action: str = "re-enroll it or restore its key at the manager"  # what the alert asks for


@dataclass(frozen=True)
class Refused:
    """The manager will never accept this message as it is."""

    code: int
    name: str
    message: str


Outcome = Delivered | RetryLater | Refused


def backoff_delay(
    attempt: int,
    rng: random.Random | None = None,
    *,
    base: float = BASE_SECONDS,
    cap: float = CAP_SECONDS,
) -> float:
    """Full jitter: uniform(0, min(cap, base * 2**attempt)); attempt = failures so far (from 0)."""
    ceiling = cap if attempt >= 64 else min(cap, base * (2**attempt))
    return (rng or random).uniform(0.0, ceiling)


def next_delay(
    attempt: int,
    retry_after: float | None,
    rng: random.Random | None = None,
    *,
    base: float = BASE_SECONDS,
    cap: float = CAP_SECONDS,
) -> float:
    """The wait before the next attempt: the jittered backoff, never below Retry-After."""
    delay = backoff_delay(attempt, rng, base=base, cap=cap)
    if retry_after is not None and retry_after > delay:
        delay = float(retry_after)
    return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from `now` (epoch seconds): delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def is_retryable_code(code: int, http_status: int) -> bool:
    """Whether an Error with this code is retried (Table 11-1)."""
    if code in RETRY_CODES or code in AGENT_LEVEL_CODES or code // 1000 == 4:
        return True
    if code in BY_STATUS_CODES and code not in BY_CODE:  # Table 13-2
        return http_status == 429 or http_status >= 500
    return False


def decide(
    http_status: int,
    *,
    receipt_ok: bool = False,
    error_code: int | None = None,
    error_name: str = "",
    error_message: str = "",
    retry_after: float | None = None,
) -> Outcome:
    """Map one HTTP answer to an outcome.

    receipt_ok: the body was a valid Receipt for this message. error_code/name/message: from
    the body when it was a valid Error. retry_after: the larger of the header and the Error's
    retryAfter, in seconds.
    """
    if http_status == 200 and receipt_ok:
        return Delivered()
    if error_code is not None:
        if is_retryable_code(error_code, http_status):
            reason = f"{error_code} {error_name}: {error_message}".strip()
            return RetryLater(reason, retry_after, alert=error_code in AGENT_LEVEL_CODES)
        return Refused(error_code, error_name, error_message)
    # No readable Error (3xx, a proxy's page, a 200 that is not our Receipt...). The manager
    # may or may not have stored it: sending again is safe because it is idempotent on
    # reportId, and dropping a reading is not.
    if http_status == 200:
        return RetryLater("200 without a valid Receipt for this message", retry_after)
    return RetryLater(f"HTTP {http_status} without a MeterSync Error", retry_after)
