"""Adaptive polling (spec 19.3, MS-TRAP-7..11): when to poll each device next, without I/O.

    plan = Adaptive.from_provisioning(p)           # None: off, every device at pollInterval
    history.observe(snap, now)                     # the agent's own reading of its history
    interval = plan.interval(base, history.mood()) # seconds until the device's next poll
    budget.allow(pdus, now) / budget.spend(pdus, now)   # early reads share the site's budget

A device needing attention (alert, error flag, supply low or falling fast) or busy (its total
counter rose) is polled at a quarter of pollInterval, bounded below by minInterval; an idle one
(total unchanged since the previous poll, nothing else) at twice pollInterval, bounded above by
maxInterval. The interval chosen is what the snapshot says in `interval` (MS-TRAP-10).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import metersync_generated.v1 as model

DEFAULT_MIN = 60
DEFAULT_BUDGET = 600  # request PDUs per minute for early reads, over the whole site
WINDOW = 60.0
LOW_PERCENT = 10
FAST_WITHIN = 3  # falling fast: empty within this many poll intervals at the current rate
ATTENTION, BUSY, IDLE, NORMAL = "attention", "busy", "idle", "normal"


@dataclass(frozen=True)
class Adaptive:
    min_interval: float
    max_interval: float
    pdu_budget: int

    @classmethod
    def from_provisioning(cls, p: Any, poll_interval: float) -> Adaptive | None:
        a = getattr(p, "adaptive_polling", None)
        if a is None or not a.enabled:
            return None
        low = float(DEFAULT_MIN if a.min_interval is None else a.min_interval)
        high = float(4 * poll_interval if a.max_interval is None else a.max_interval)
        budget = DEFAULT_BUDGET if a.pdu_budget is None else int(a.pdu_budget)
        return cls(low, max(low, high), budget)

    def interval(self, base: float, mood: str) -> float:
        """Seconds until the next poll of a device in this mood (within the bounds)."""
        if mood in (ATTENTION, BUSY):
            wanted = base / 4
        elif mood == IDLE:
            wanted = base * 2
        else:
            wanted = base
        return min(self.max_interval, max(self.min_interval, wanted))


@dataclass
class History:
    """What the agent remembers of one device: recent totals and supply levels."""

    totals: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=3))
    levels: dict[int, deque[tuple[float, float]]] = field(default_factory=dict)
    alerting: bool = False
    base: float = 0.0

    def observe(self, snap: model.DeviceSnapshot, now: float, base: float) -> None:
        self.base = base
        total = total_counter(snap)
        if total is not None:
            self.totals.append((now, total))
        self.alerting = in_alert(snap)
        for s in snap.supply:
            pct = supply_percent(s)
            if pct is not None:
                self.levels.setdefault(s.index, deque(maxlen=4)).append((now, pct))

    def mood(self) -> str:
        if self.alerting or any(self._low_or_fast(h) for h in self.levels.values()):
            return ATTENTION
        t = [v for _, v in self.totals]
        if len(t) >= 2 and t[-1] > t[-2]:
            return BUSY
        if len(t) >= 2 and t[-1] == t[-2]:
            return IDLE
        return NORMAL

    def _low_or_fast(self, h: deque[tuple[float, float]]) -> bool:
        now, pct = h[-1]
        if pct <= LOW_PERCENT:
            return True
        then, before = h[0]
        if now <= then or pct >= before or self.base <= 0:
            return False
        rate = (before - pct) / (now - then)  # percent per second
        return pct / rate <= FAST_WITHIN * self.base


def total_counter(snap: model.DeviceSnapshot) -> int | None:
    values = [c.value for c in snap.counter if c.kind.value == "total"]
    return max(values) if values else None


def in_alert(snap: model.DeviceSnapshot) -> bool:
    severe = {"critical", "warning"}
    if any(a.severity.value.value in severe for a in snap.alert):
        return True
    des = snap.status.detected_error_state if snap.status else None
    return bool(des and des.flag)


def supply_percent(s: model.Supply) -> float | None:
    if s.percent is not None:
        return float(s.percent)
    return 0.0 if s.level.meaning.value == "someRemaining" else None


def estimate_pdus(snap: model.DeviceSnapshot | None) -> int:
    """An upper estimate of the request PDUs of a full read of a device like `snap`: the
    system GET, every table's GETBULKs at 25 varbinds each (10 columns a row), one past each
    table's end, and one retry in ten."""
    if snap is None:
        return 40
    rows = len(snap.counter) + len(snap.supply) + len(snap.input_tray) + len(snap.alert)
    pdus = 2 + math.ceil(rows * 10 / 25) + 12
    return math.ceil(pdus * 1.1)


class PduBudget:
    """The site's PDU budget for early reads: at most `limit` PDUs in any WINDOW seconds.

    A read is charged at the time it is planned to start, when it is planned, so that an
    early poll the snapshot announced (MS-TRAP-10) is never refused later; a read fits when
    the reads planned within WINDOW of it on either side leave room (then every window that
    holds it does)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent: list[tuple[float, int]] = []

    def allow(self, pdus: int, at: float) -> bool:
        near = sum(n for t, n in self.spent if abs(t - at) < WINDOW)
        return near + pdus <= self.limit

    def spend(self, pdus: int, at: float) -> None:
        self.spent = [(t, n) for t, n in self.spent if t > at - 2 * WINDOW]
        self.spent.append((at, pdus))


Key = tuple[str, int]  # (host, port) of a polled device


@dataclass
class _Plan:
    plain_at: float = 0.0  # when the device is due on the plain schedule (monotonic)
    early: bool = False  # its next poll is earlier than the plain schedule
    last_poll: float = -math.inf


class Scheduler:
    """Per-device intervals, notification-triggered reads and the site's PDU budget: the
    collector asks it when a device is due and tells it what each poll read."""

    def __init__(self, poll_interval: float, adaptive: Adaptive | None,
                 trap_interval: float | None) -> None:  # fmt: skip
        self.base = poll_interval
        self.adaptive = adaptive
        self.trap_interval = trap_interval
        self.budget = PduBudget(adaptive.pdu_budget if adaptive else DEFAULT_BUDGET)
        self.history: dict[Key, History] = {}
        self.plans: dict[Key, _Plan] = {}
        self.estimate: dict[Key, int] = {}

    def polled(self, key: Key, snap: model.DeviceSnapshot | None, started: float) -> float:
        """Record a poll that started at `started`; the seconds until the device's next poll."""
        plan = self.plans.setdefault(key, _Plan())
        plan.last_poll = started
        interval = self.base
        if snap is not None:
            self.estimate[key] = estimate_pdus(snap)
            if self.adaptive is not None:
                h = self.history.setdefault(key, History())
                h.observe(snap, started, self.base)
                interval = self.adaptive.interval(self.base, h.mood())
        if plan.plain_at <= started:
            plan.plain_at = started + max(self.base, interval)
        plan.early = started + interval < plan.plain_at
        if plan.early:  # charged now, at its planned start: it is never refused later
            pdus = self.estimate.get(key, estimate_pdus(None))
            if self.budget.allow(pdus, started + interval):
                self.budget.spend(pdus, started + interval)
            else:
                plan.early, interval = False, plan.plain_at - started
        if not plan.early:
            plan.plain_at = started + interval
        return interval

    def trigger(self, key: Key, now: float) -> bool:
        """A notification from the device: True when a read may start now (MS-TRAP-4): the
        device was not read within traps/minInterval (and adaptivePolling/minInterval, when
        on: MS-TRAP-7) and the budget has room (MS-TRAP-9)."""
        plan = self.plans.setdefault(key, _Plan())
        gap = self.trap_interval if self.trap_interval is not None else DEFAULT_MIN
        if self.adaptive is not None:
            gap = max(gap, self.adaptive.min_interval)
        if now - plan.last_poll < gap:
            return False
        pdus = self.estimate.get(key, estimate_pdus(None))
        if not self.budget.allow(pdus, now):
            return False
        self.budget.spend(pdus, now)
        plan.last_poll = now
        return True

    def forget(self, key: Key) -> None:
        for table in (self.history, self.plans, self.estimate):
            table.pop(key, None)  # type: ignore[attr-defined]
