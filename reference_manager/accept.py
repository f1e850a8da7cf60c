"""The one path a report takes at the manager, whichever binding carried it (MS-SMTP-4).

Spec section 8.3 from the signature on: signer known and not revoked, signature over the exact
bytes, the XML pipeline, agentId equals the signer, clock skew, idempotence, meaning, storage.
The HTTP adapter (app.py) checks media type, encoding and size before; the SMTP adapter
(smtp_ingest.py) extracts the `report.xml` part and its `report.xml.sig` line before.
Every refusal is a ProtocolError; database trouble propagates for the adapter to map.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import metersync_generated.v1 as model
from metersync_manager import ingest
from metersync_manager.store import Store

OFF_LOOP_BYTES = 64 * 1024  # bigger reports are parsed off the event loop (issue 9, case 8)
RunFn = Callable[..., Awaitable[Any]]  # runs a blocking store call in a worker thread


async def accept_report(
    store: Store,
    raw: bytes,
    signature: str | None,
    *,
    run: RunFn,
    clock: Callable[[], datetime] = ingest.utcnow,
    skew: timedelta = ingest.SKEW,
) -> model.Receipt:
    """Verify and store one report's exact bytes; the Receipt, or a ProtocolError."""
    sig = ingest.signer(signature)
    agent = await run(store.agent, sig.agent_id)
    if len(raw) > OFF_LOOP_BYTES:  # verify, parse and validate a big report in a thread
        superseded, rows = await asyncio.to_thread(_verify_and_read, sig, raw, agent)
    else:
        superseded, rows = _verify_and_read(sig, raw, agent)
    now = clock()
    ingest.check_report(rows, sig.agent_id, now, skew, superseded)
    stored = await asyncio.wrap_future(store.submit_report(rows, ingest.digest(raw), len(raw), now))
    return ingest.receipt(rows.report_id, rows.agent_id, stored.duplicate, now, stored.devices)


def _verify_and_read(sig: Any, raw: bytes, agent: Any) -> tuple[datetime | None, ingest.ReportRows]:
    """The signature over the exact bytes, then the XML pipeline (CPU-bound: big reports run
    this in a worker thread so that other requests are not held)."""
    superseded = ingest.authenticate(sig, raw, agent)  # a rotated-out key: when (MS-SEC-8)
    return superseded, ingest.read_report(raw)
