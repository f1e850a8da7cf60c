"""Supply forecasts, sans-IO: cartridge lives and "days until empty" with a confidence.

Input is one supply's history, oldest first: `Obs(at, level, pages)`, the level in percent
(None for the Printer-MIB's -2 unknown, -3 "some remaining") and the device's total page
counter (None when not read). `LifeTracker` takes observations one by one and keeps, per
cartridge life, a thinned series (a point when the level moves 2 points, or once a day) and
the pages printed per calendar day, so a forecast costs the same whatever the history's length.

* A new cartridge life starts when the level rises JUMP points above the lowest level of the
  current life and the next known level confirms it (a shaken cartridge or a bouncing level
  rises a few points; a -3/-2 read is no level at all, so it never starts a life).
* Usage per page: a least-squares line of level against pages over the current life, refitted
  once without the points far from it (shakes). While the current life has moved too little to
  measure, the previous life's usage per page stands in (a supply's yield is stable).
  Without page counters: level against time.
* Coarse levels (all levels multiples of 10 or 20): the level is taken at the step transitions,
  as the middle of the step (a printer reporting steps rounds to the nearest step).
* Pages per day: the last `RATE_DAYS` days of counter deltas (a gap in reads is spread over
  the days it spans: counters bridge an agent's outage), separately for weekdays and weekends;
  the forecast walks forward day by day with that pattern until the remaining pages are spent.
* Confidence: from the fit's residuals and the day-to-day spread of pages; an interval of days
  and a score from 0 to 1. No forecast, with the reason, when the history is too short.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

JUMP = 25.0  # points above the life's lowest level that mean a new cartridge
MIN_DROP = 8.0  # points the current life must have fallen to measure its own usage
MIN_SPAN = timedelta(days=2)
RATE_DAYS = 28
MAX_DAYS = 730
OUTLIER = 6.0  # points from the first fit beyond which a level is left out of the refit
KEEP_EVERY = timedelta(hours=24)
KEEP_MOVE = 2.0  # a point is kept when the level moved this much (jitter of 1 is not)
MAX_POINTS = 240


@dataclass(frozen=True)
class Obs:
    at: datetime
    level: float | None
    pages: int | None = None


@dataclass
class Life:
    started_at: datetime
    start_level: float | None
    start_pages: int | None
    points: list[tuple[datetime, float, int | None]] = field(default_factory=list)
    low: float | None = None  # the lowest known level of this life
    last_at: datetime | None = None
    last_level: float | None = None
    last_pages: int | None = None
    ended_at: datetime | None = None
    end_level: float | None = None  # the level at removal
    usage_per_page: float | None = None  # percent per page, set when the life ends

    def summary(self) -> dict[str, object]:
        """Pages printed, days in service and level at removal (yield, "replaced early")."""
        end = self.ended_at or self.last_at or self.started_at
        pages = (
            None
            if self.start_pages is None or self.last_pages is None
            else max(0, self.last_pages - self.start_pages)
        )
        return {
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "startLevel": self.start_level,
            "levelAtRemoval": self.end_level,
            "pages": pages,
            "daysInService": round((end - self.started_at).total_seconds() / 86400, 1),
        }


@dataclass(frozen=True)
class Forecast:
    days: float | None  # None: no forecast (see reason)
    low: float | None = None
    high: float | None = None
    confidence: float = 0.0  # 0..1
    level: float | None = None  # the estimated level now
    method: str | None = None  # "pages" | "time"
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "daysToEmpty": None if self.days is None else round(self.days, 1),
            "low": None if self.low is None else round(self.low, 1),
            "high": None if self.high is None else round(self.high, 1),
            "confidence": round(self.confidence, 2),
            "estimatedLevel": None if self.level is None else round(self.level, 1),
            "method": self.method,
            "reason": self.reason,
        }


class LifeTracker:
    """One supply's cartridge lives and page rate, fed observation by observation."""

    def __init__(self) -> None:
        self.lives: list[Life] = []
        self.days: dict[date, float] = {}  # pages per calendar day (last RATE_DAYS+ days)
        self._pending: Obs | None = None  # a jump waiting for its confirmation
        self._last_pages: tuple[datetime, int] | None = None
        self.steps: set[int] = set()  # distinct levels seen (coarse detection)

    @property
    def current(self) -> Life | None:
        return self.lives[-1] if self.lives else None

    def feed(self, obs: Obs) -> Life | None:
        """Add one observation; the life that ended with it (a replacement), if any."""
        self._count_pages(obs)
        if obs.level is None:
            if self.current is not None:
                self._touch(self.current, obs)
            return None
        if len(self.steps) < 64:
            self.steps.add(round(obs.level))
        life = self.current
        if life is None:
            self._start(obs)
            return None
        jumped = life.low is not None and obs.level >= life.low + JUMP
        if jumped and self._pending is not None:
            return self._replace(self._pending, obs)
        if jumped:
            self._pending = obs
            return None
        if self._pending is not None:  # a single high read: a glitch, not a new cartridge
            self._pending = None
        self._add(life, obs)
        return None

    def _start(self, obs: Obs) -> None:
        life = Life(obs.at, obs.level, obs.pages)
        self.lives.append(life)
        self._add(life, obs)

    def _replace(self, first: Obs, confirm: Obs) -> Life:
        old = self.lives[-1]
        old.ended_at = first.at
        old.end_level = old.last_level
        old.usage_per_page = _fit(old, self.coarse_step)[0] if old.points else None
        if old.usage_per_page is not None:
            old.usage_per_page = -old.usage_per_page if old.usage_per_page < 0 else None
        self._pending = None
        self._start(first)
        self._add(self.lives[-1], confirm)
        if len(self.lives) > 8:
            del self.lives[:-8]
        return old

    def _add(self, life: Life, obs: Obs) -> None:
        assert obs.level is not None
        life.low = obs.level if life.low is None else min(life.low, obs.level)
        last = life.points[-1] if life.points else None
        if last is None or abs(obs.level - last[1]) >= KEEP_MOVE or obs.at - last[0] >= KEEP_EVERY:
            life.points.append((obs.at, obs.level, obs.pages))
            if len(life.points) > MAX_POINTS:  # thin the older half, keep the newest
                half = len(life.points) // 2
                life.points[:half] = life.points[:half:2]
        life.last_level = obs.level
        self._touch(life, obs)

    @staticmethod
    def _touch(life: Life, obs: Obs) -> None:
        life.last_at = obs.at
        if obs.pages is not None:
            life.last_pages = obs.pages

    def _count_pages(self, obs: Obs) -> None:
        if obs.pages is None:
            return
        prev = self._last_pages
        self._last_pages = (obs.at, obs.pages)
        if prev is None or obs.pages < prev[1] or obs.at <= prev[0]:
            return  # the first count, or a counter reset: no delta
        _spread(self.days, prev[0], obs.at, obs.pages - prev[1])
        if len(self.days) > RATE_DAYS + 14:
            for d in sorted(self.days)[: len(self.days) - RATE_DAYS - 7]:
                del self.days[d]

    @property
    def coarse_step(self) -> int | None:
        """10 or 20 when every level seen is a multiple of it (and there are a few)."""
        if len(self.steps) < 3:
            return None
        for step in (20, 10):
            if all(v % step == 0 for v in self.steps):
                return step
        return None

    def forecast(self, now: datetime) -> Forecast:
        life = self.current
        if life is None or not life.points:
            return Forecast(None, reason="no level read yet")
        step = self.coarse_step
        slope, level, resid, method = _estimate(life, self.lives[:-1], step)
        if slope is None or level is None:
            return Forecast(None, reason=method)
        if level <= 0:
            return Forecast(0.0, 0.0, 0.0, 0.5, 0.0, method)
        if method == "pages":
            rates = _rates(self.days, now)
            if rates is None:
                return Forecast(None, level=level, reason="fewer than 7 days of page counts")
            (wd, we), spread = rates
            if wd + we <= 0:
                return Forecast(None, level=level, reason="no pages printed recently")
            days = _walk(level / slope, now, wd, we)
        else:
            spread = 0.3
            days = level / slope
        if days is None or days > MAX_DAYS:
            return Forecast(None, level=level, method=method, reason="more than two years")
        since = max(0.0, (now - (life.last_at or now)).total_seconds() / 86400)
        days = max(0.0, days - since) if method == "time" else days
        rel = math.sqrt((resid / max(level, 1.0)) ** 2 + spread**2 / 4)
        return Forecast(
            days,
            max(0.0, days * (1 - 2 * rel)),
            days * (1 + 2 * rel),
            max(0.0, min(1.0, 1 - rel)),
            level,
            method,
        )


def _spread(days: dict[date, float], start: datetime, end: datetime, pages: int) -> None:
    """Attribute pages printed in (start, end] to calendar days, evenly over the time."""
    total = (end - start).total_seconds()
    t = start
    while t < end:
        nxt = min(end, datetime.combine(t.date() + timedelta(days=1), datetime.min.time()))
        share = pages * (nxt - t).total_seconds() / total
        days[t.date()] = days.get(t.date(), 0.0) + share
        t = nxt


def _rates(days: dict[date, float], now: datetime) -> tuple[tuple[float, float], float] | None:
    """Mean pages per weekday and per weekend day over the last RATE_DAYS whole days, and the
    relative spread of weekly totals."""
    start = now.date() - timedelta(days=RATE_DAYS)
    known = sorted(d for d in days if start <= d < now.date())
    if len(known) < 7:
        return None
    wd = [days[d] for d in known if d.weekday() < 5]
    we = [days[d] for d in known if d.weekday() >= 5]
    mean_wd = statistics.fmean(wd) if wd else 0.0
    mean_we = statistics.fmean(we) if we else mean_wd * 0.2
    weeks = [sum(days[d] for d in known[i : i + 7]) for i in range(0, len(known) - 6, 7)]
    mean_w = statistics.fmean(weeks)
    spread = statistics.pstdev(weeks) / mean_w if len(weeks) > 1 and mean_w > 0 else 0.3
    return (mean_wd, mean_we), spread


def _walk(pages: float, now: datetime, wd: float, we: float) -> float | None:
    """Days until `pages` are printed at wd/we pages per weekday/weekend day."""
    if pages <= 0:
        return 0.0
    t = 0.0
    day = now
    first = 1 - (now - datetime.combine(now.date(), datetime.min.time())).total_seconds() / 86400
    frac = first
    while t < MAX_DAYS + 1:
        rate = wd if day.weekday() < 5 else we
        use = rate * frac
        if use >= pages and rate > 0:
            return t + pages / rate
        pages -= use
        t += frac
        day = datetime.combine(day.date() + timedelta(days=1), datetime.min.time())
        frac = 1.0
    return None


def _points(life: Life, step: int | None) -> list[tuple[datetime, float, int | None]]:
    """The life's levels; for coarse levels the transitions only, at the middle of the step."""
    if step is None:
        return life.points
    out: list[tuple[datetime, float, int | None]] = []
    prev = None
    for at, level, pages in life.points:
        if level != prev:
            out.append((at, min(100.0, level + step / 2) if prev is not None else level, pages))
        prev = level
    return out


def _fit(life: Life, step: int | None, by_pages: bool = True) -> tuple[float | None, float, float]:
    """(slope per page or per day, level now, residual spread) by least squares + one refit."""
    pts = _points(life, step)
    origin = pts[0][0] if pts else life.started_at
    xy = [
        ((p if by_pages else (at - origin).total_seconds() / 86400), lvl)
        for at, lvl, p in pts
        if (p is not None or not by_pages)
    ]
    if len(xy) < 2:
        return None, 0.0, 0.0
    line = _ls(xy)
    if line is None:
        return None, 0.0, 0.0
    a, b = line
    kept = [(x, y) for x, y in xy if abs(y - (a + b * x)) <= OUTLIER]
    if len(kept) >= 2 and len(kept) < len(xy):
        line = _ls(kept) or line
        a, b = line
        xy = kept
    resid = math.sqrt(sum((y - (a + b * x)) ** 2 for x, y in xy) / len(xy))
    if by_pages:
        x_now = life.last_pages if life.last_pages is not None else xy[-1][0]
    else:
        x_now = ((life.last_at or origin) - origin).total_seconds() / 86400
    return b, a + b * x_now, resid


def _ls(xy: list[tuple[float, float]]) -> tuple[float, float] | None:
    n = len(xy)
    mx = sum(x for x, _ in xy) / n
    my = sum(y for _, y in xy) / n
    sxx = sum((x - mx) ** 2 for x, _ in xy)
    if sxx <= 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in xy) / sxx
    return my - b * mx, b


def _estimate(
    life: Life, earlier: list[Life], step: int | None
) -> tuple[float | None, float | None, float, str]:
    """(usage per page or per day as a positive number, level now, residual, method)."""
    have_pages = life.last_pages is not None and life.start_pages is not None
    drop = (life.start_level or 0) - (life.low or 0)
    span = (life.last_at or life.started_at) - life.started_at
    prior = next((x.usage_per_page for x in reversed(earlier) if x.usage_per_page), None)
    if have_pages:
        slope, level, resid = _fit(life, step)
        if slope is not None and slope < 0 and drop >= MIN_DROP and span >= MIN_SPAN:
            return -slope, _clamp(level), resid, "pages"
        if prior is not None and life.start_pages is not None and life.last_pages is not None:
            start = life.start_level if life.start_level is not None else 100.0
            level = start - prior * (life.last_pages - life.start_pages)
            if life.last_level is not None and step is None:
                level = min(level, life.last_level + OUTLIER)
            return prior, _clamp(level), max(3.0, (step or 0) / 2), "pages"
        return None, None, 0.0, "the current cartridge has not used enough to measure yet"
    slope, level, resid = _fit(life, step, by_pages=False)
    if slope is not None and slope < 0 and drop >= MIN_DROP and span >= MIN_SPAN:
        return -slope, _clamp(level), resid, "time"
    return None, None, 0.0, "the current cartridge has not used enough to measure yet"


def _clamp(level: float) -> float:
    return max(0.0, min(100.0, level))


@dataclass(frozen=True)
class OrderPolicy:
    lead_days: float = 7.0  # order when the forecast is at most this
    threshold: float = 10.0  # or when the estimated level is at most this (percent)


def order_due(tracker: LifeTracker, forecast: Forecast, policy: OrderPolicy) -> bool:
    """Whether the current cartridge life needs its (one) order now."""
    life = tracker.current
    if life is None:
        return False
    if forecast.days is not None and forecast.days <= policy.lead_days:
        return True
    low = forecast.level if forecast.level is not None else life.last_level
    return low is not None and low <= policy.threshold
