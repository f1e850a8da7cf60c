"""Device ownership (MS-OWN, sans-IO): which snapshots make a device's state and bill.

A device belongs to the agent that first reported it, and to that agent's customer and site,
until an operator moves it or it is handed over: it went silent at its owner for
HANDOVER_INTERVALS of the owner's poll intervals (at least MIN_HANDOVER) and an agent of the
same customer reports it. A snapshot from any other agent is a conflict: stored, shown and
alerted, never applied. A snapshot of the owner not newer than the last one applied is out of
order: stored, never applied (a backdated read must not change a bill).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

HANDOVER_INTERVALS = 3
MIN_HANDOVER = timedelta(hours=1)
DEFAULT_HANDOVER = timedelta(hours=24)  # when the owner's poll interval is not known


class Disposition(StrEnum):
    APPLIED = "applied"
    CONFLICT = "conflict"
    OUT_OF_ORDER = "out-of-order"


@dataclass(frozen=True)
class DeviceState:
    owner_agent_id: str | None
    customer_id: str
    last_polled_at: datetime | None
    current_ip: str


@dataclass(frozen=True)
class Verdict:
    disposition: Disposition
    new: bool = False
    hand_over: bool = False


def handover_after(owner_interval: timedelta | None) -> timedelta:
    if owner_interval is None:
        return DEFAULT_HANDOVER
    return max(MIN_HANDOVER, HANDOVER_INTERVALS * owner_interval)


def judge(
    state: DeviceState | None,
    agent_id: str,
    agent_customer: str,
    polled_at: datetime,
    owner_interval: timedelta | None = None,
) -> Verdict:
    """What to do with one snapshot of `agent_id` polled at `polled_at` (naive UTC)."""
    if state is None:
        return Verdict(Disposition.APPLIED, new=True)
    last = state.last_polled_at
    if state.owner_agent_id in (None, agent_id):
        if last is not None and polled_at <= last:
            return Verdict(Disposition.OUT_OF_ORDER)
        return Verdict(Disposition.APPLIED)
    if (
        agent_customer == state.customer_id
        and last is not None
        and polled_at - last >= handover_after(owner_interval)
    ):
        return Verdict(Disposition.APPLIED, hand_over=True)
    return Verdict(Disposition.CONFLICT)
