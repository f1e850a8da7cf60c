"""SMTP as a fallback for an agent with HTTP too (spec chapter 9, MS-SMTP-9).

When HTTP delivery has failed without a break for `transports/smtp/fallbackAfter` seconds,
every queued report is also mailed, oldest first, once. A mailed report stays in the outbox:
only an HTTP Receipt removes it (the HTTP sender goes on retrying), and the manager's
idempotence on reportId makes the double delivery harmless. SMTP has its own backoff
(one backoff per transport, section 11.1); nothing here changes the HTTP sender's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from metersync_agent.backoff import Delivered, Refused, RetryLater, next_delay
from metersync_agent.outbox import Outbox
from metersync_agent.transport_smtp import SmtpTransport

log = logging.getLogger("metersync.agent.smtp")

IDLE_SECONDS = 5.0  # how often to look again while HTTP works or nothing is queued


async def run_fallback(
    outbox: Outbox,
    transport: SmtpTransport,
    http_failing_since: Callable[[], float | None],
    fallback_after: float,
    stop: asyncio.Event,
    rng: random.Random | None = None,
) -> None:
    """Mail queued reports while HTTP has been failing for fallback_after seconds."""
    failures = 0

    async def sleep(seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, seconds))
        return stop.is_set()

    while not stop.is_set():
        since = http_failing_since()
        if since is None or time.time() - since < fallback_after:
            wait = IDLE_SECONDS if since is None else since + fallback_after - time.time()
            if await sleep(min(IDLE_SECONDS, max(0.1, wait))):
                return
            continue
        item = await asyncio.to_thread(outbox.next_unmailed)
        if item is None:
            if await sleep(IDLE_SECONDS):
                return
            continue
        outcome = await transport.post_report(item.body, item.signature, item.report_id)
        if isinstance(outcome, Delivered):
            failures = 0
            await asyncio.to_thread(outbox.mark_mailed, item.sequence)
            log.info("HTTP failing: report %s mailed; kept until an HTTP receipt", item.report_id)
        elif isinstance(outcome, Refused):
            # The report stays queued for HTTP; do not mail it again.
            await asyncio.to_thread(outbox.mark_mailed, item.sequence)
            log.error(
                "the relay refused report %s (%s %s: %s); it stays queued for HTTP",
                item.report_id,
                outcome.code,
                outcome.name,
                outcome.message,
            )
        else:
            assert isinstance(outcome, RetryLater)
            delay = next_delay(failures, outcome.retry_after, rng)
            failures += 1
            (log.error if outcome.alert else log.warning)(
                "mailing report %s failed (%s); next try in %.1f s",
                item.report_id,
                outcome.reason,
                delay,
            )
            if await sleep(delay):
                return
