"""The send stage of the agent's pipeline: enroll when needed, then drain the outbox.

Oldest report first; a report is deleted only with a receipt; waits are the outbox's
persisted next-attempt times (MS-DEL). `svc` is the AgentService whose state it shares.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from metersync_agent import enrollment
from metersync_agent.backoff import CAP_SECONDS, Delivered, Refused, RetryLater, next_delay
from metersync_agent.outbox import OutboxError

log = logging.getLogger("metersync.agent")


async def run_sender(svc: Any, transport: Any, enroll_transport: Any = None) -> None:
    """Drain the outbox oldest first; a report leaves it only with a receipt."""
    assert svc.outbox is not None and svc.identity is not None
    s = svc.settings
    enroll_transport = enroll_transport or transport
    while not svc.stop.is_set():
        if not enrollment.is_enrolled(svc.state_dir, s.manager_url, s.enrollment_token):
            result = await enrollment.enroll(
                s, svc.identity, enroll_transport, svc.state_dir, stop=svc.stop, rng=svc.rng
            )
            if svc.stop.is_set():
                return
            if not result.ok:
                log.error("%s; trying again in %.0f s", result.message, CAP_SECONDS)
                if await svc._sleep(CAP_SECONDS):
                    return
                continue
        item = await asyncio.to_thread(svc.outbox.oldest)
        if item is None:
            svc._wake_sender.clear()
            waiters = {
                asyncio.create_task(svc._wake_sender.wait()),
                asyncio.create_task(svc.stop.wait()),
            }
            await asyncio.wait(waiters, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            continue
        wait = item.next_attempt_at - time.time()
        if wait > 0:
            if await svc._sleep(min(wait, 60.0)):
                return
            continue
        stopped, outcome = await svc._until_stopped(
            transport.post_report(item.body, item.signature, item.report_id)
        )
        if stopped:
            return  # the report stays queued; it is sent again, byte for byte, next time
        try:
            await _record(svc, item, outcome)
        except OutboxError as exc:  # e.g. a full disk: the sender goes on (MS-DEL-20)
            log.error("outbox could not record the outcome of report %s: %s", item.report_id, exc)
            if await svc._sleep(5.0):
                return


async def _record(svc: Any, item: Any, outcome: Any) -> None:
    """Record one attempt's outcome in the outbox and say what happened."""
    if isinstance(outcome, RetryLater):
        svc.http_failing_since = svc.http_failing_since or time.time()
    else:
        svc.http_failing_since = None
    if isinstance(outcome, Delivered):
        await asyncio.to_thread(svc.outbox.mark_delivered, item.sequence)
        log.debug("delivered report %s%s", item.report_id, " (duplicate)" * outcome.duplicate)
    elif isinstance(outcome, RetryLater):
        delay = next_delay(item.attempts, outcome.retry_after, svc.rng)
        await asyncio.to_thread(svc.outbox.mark_retry, item.sequence, delay, outcome.reason)
        if outcome.alert:
            log.error(
                "operator action needed (%s): %s; reports stay queued, next try in %.1f s",
                outcome.reason,
                outcome.action,
                delay,
            )
        else:
            log.warning(
                "report %s not delivered (%s); next try in %.1f s",
                item.report_id,
                outcome.reason,
                delay,
            )
    else:
        assert isinstance(outcome, Refused)
        text = f"{outcome.code} {outcome.name}: {outcome.message}"
        await asyncio.to_thread(svc.outbox.mark_refused, item.sequence, text)
        log.error(
            "report %s refused (%s); kept in the outbox's rejected area, not retried",
            item.report_id,
            text,
        )
