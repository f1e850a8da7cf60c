"""Devices that drop out (MS-DEV-26), sans-IO: an agent's poll interval and the stale flag.

An agent's poll interval is the time between the starts of two consecutive poll cycles, read
from `agentStatus/lastCycle/startedAt` of its reports. A device is stale when no complete
snapshot of it (one without `collectionError`) was polled within the last three intervals of
the agent that sent its newest snapshot, counted back from the manager's clock.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

INTERVALS = 3  # MS-DEV-26
SAMPLE = 21  # the newest cycle starts an interval is learned from (20 gaps)


def poll_interval(cycle_starts: Iterable[datetime]) -> timedelta | None:
    """The median gap between consecutive distinct cycle starts (robust to a missed cycle or a
    restart); None before two cycles are known."""
    starts = sorted(set(cycle_starts))
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    return statistics.median_low(gaps) if gaps else None


@dataclass(frozen=True)
class Staleness:
    stale: bool
    reason: str | None = None  # "missing": not polled in the window; "partial": only partly


def device_flag(
    last_complete: datetime | None,
    last_snapshot: datetime,
    interval: timedelta | None,
    now: datetime,
) -> Staleness:
    """The flag of a device from the polledAt of its newest complete and newest snapshot."""
    if interval is None:
        return Staleness(False)  # the agent's interval is not known yet: nothing to judge by
    since = now - INTERVALS * interval
    if last_complete is not None and last_complete >= since:
        return Staleness(False)
    return Staleness(True, "partial" if last_snapshot >= since else "missing")
