"""Billing arithmetic (sans-IO): start and end reads, usage, resets. No database here.

One counter series is one device, counter kind, unit and OID. For a period (from, to]:

* start = the last read at or before `from`, else the first read in the period;
* end = the last read at or before `to`;
* usage = the sum of increases between consecutive reads from start to end. A read lower
  than the one before it, or one the agent flagged anomaly="decreased", is a reset (or a
  swap): the interval that spans it counts 0 and the reset is listed. Usage is never
  negative, and because the end read of a period is the start read of the next, consecutive
  periods never bill a page twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Read:
    polled_at: datetime
    value: int
    flagged: bool = False  # anomaly="decreased" from the agent


@dataclass(frozen=True)
class Reset:
    at: datetime
    before: int
    after: int
    flagged: bool


@dataclass
class Usage:
    start: Read
    end: Read
    usage: int
    reads_in_period: int
    start_in_period: bool
    resets: list[Reset] = field(default_factory=list)

    @property
    def stale(self) -> bool:
        return self.reads_in_period == 0


def _order(reads: list[Read]) -> list[Read]:
    # Equal poll times (two agents reading one device) sort by value: never a false reset.
    return sorted(reads, key=lambda r: (r.polled_at, r.value))


def usage(before: Read | None, in_period: list[Read]) -> Usage | None:
    """The usage of one series: `before` is the last read at or before `from` (if any),
    `in_period` the reads in (from, to]. None when there is no read at all."""
    reads = _order(in_period)
    if before is None and not reads:
        return None
    chain = [before, *reads] if before is not None else reads
    total = 0
    resets: list[Reset] = []
    for prev, cur in zip(chain, chain[1:], strict=False):
        if cur.flagged or cur.value < prev.value:
            resets.append(Reset(cur.polled_at, prev.value, cur.value, cur.flagged))
        else:
            total += cur.value - prev.value
    return Usage(
        start=chain[0],
        end=chain[-1],
        usage=total,
        reads_in_period=len(reads),
        start_in_period=before is None,
        resets=resets,
    )
