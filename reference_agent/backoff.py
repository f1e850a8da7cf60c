"""The delivery rules as pure functions: what an answer means, and when to try again (MS-DEL-*).

No I/O here. A transport turns what happened on the wire into `decide(...)`'s inputs; the
outbox stores the resulting delay. Rules:

- 200 with a Receipt (accepted or duplicate): delivered; the report leaves the outbox.
- An Error whose code the spec marks retryable (4001 RATE_LIMITED, 4002 SERVICE_UNAVAILABLE,
  4003 INTERNAL_ERROR, and any unknown 4xxx), any 5xx or 429 without a readable Error, and every
  network failure: try again later.
- Any other Error: refused. Codes about the agent itself (unknown, revoked, bad signature) stop
  the whole queue until an operator acts; codes about the document dead-letter that report only.
- The wait is exponential with full jitter, uniform(0, min(cap, base * 2**attempt)), and never
  shorter than the receiver's Retry-After.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from metersync.errors import BY_CODE

BASE_SECONDS = 5.0
CAP_SECONDS = 3600.0
# A refusal that concerns the agent, not the report: no report can pass until it is fixed.
AGENT_LEVEL_CODES = frozenset({2001, 2002, 2003, 2006, 2007, 2008, 2009, 2010})


@dataclass(frozen=True)
class Delivered:
    """The manager stored the message (now, or before: duplicate)."""

    duplicate: bool = False


@dataclass(frozen=True)
class RetryLater:
    """Not stored; send the same bytes again, not before retry_after seconds when given."""

    reason: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Refused:
    """The manager will never accept this message as it is."""

    code: int
    name: str
    message: str
    agent_level: bool = False


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


def is_retryable_code(code: int) -> bool:
    """Retryable per the spec's table; an unknown code is judged by its thousand (MS-ERR-3)."""
    spec = BY_CODE.get(code)
    if spec is not None:
        return spec.retry
    return code // 1000 == 4


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
        if is_retryable_code(error_code):
            return RetryLater(f"{error_code} {error_name}: {error_message}".strip(), retry_after)
        return Refused(
            error_code, error_name, error_message, agent_level=error_code in AGENT_LEVEL_CODES
        )
    # No readable Error. The manager may or may not have stored it: sending again is safe
    # because it is idempotent on reportId, and dropping a reading is not.
    if http_status == 200:
        return RetryLater("200 without a valid Receipt for this message", retry_after)
    return RetryLater(f"HTTP {http_status} without a MeterSync Error", retry_after)
