"""Supply forecast benchmark: a seeded fleet history that knows the truth.

    .venv/bin/python bench/forecast.py [--printers 500] [--days 365] [--seed 13]

Generates hourly reads of a fleet (weekly cycle, holidays, bursts, per-cartridge coverage,
precise / 10 % / 20 % level steps, jitter, shaken cartridges, -3 "some remaining" and -2
unknown reads, early replacements, agent outages during which counters keep counting, counter
resets). Every read goes through `metersync_manager.fleet.forecast.LifeTracker`, the code the
manager runs. 30, 14 and 7 days before each true empty moment it asks for "days until empty"
from our forecast and from two baselines computed in the same run:

* threshold: a fixed 20 % rule; at level L it expects L/20 times the fleet's median days from
  20 % to empty (calibrated on 50 other printers of the same generator: generous to it);
* line: a straight line through the last two distinct levels read.

A method that gives no number counts its error as the horizon itself. It prints the mean
absolute error in days and the share within +/- 3 days, then orders: ours (one per cartridge
life, `order_due`), the threshold rule (order when the level crosses 20 %) and the line (order
when it says 7 days or less); duplicate orders per 1,000 cartridges and missed empties (a
cartridge that ran empty without an order before). Never run by the tests.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from array import array
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from metersync_manager.fleet.forecast import LifeTracker, Obs, OrderPolicy, order_due

START = datetime(2026, 1, 5)  # a Monday
HORIZONS = (30, 14, 7)
HOLIDAYS = {0, 1, 95, 96, 120, 139, 150, 275, 304, 357, 358, 359, 360}  # fleet-wide day numbers
LEAD = 7.0


@dataclass
class SupplyTruth:
    yield_pages: float
    share: float  # of the pages that use this supply
    level: array = field(default_factory=lambda: array("f"))  # true level after each hour
    offset: array = field(default_factory=lambda: array("f"))  # shake offset per hour
    life: array = field(default_factory=lambda: array("i"))  # true life number per hour
    empties: dict[int, float] = field(default_factory=dict)  # life → hour of true empty
    d20: list[float] = field(default_factory=list)  # days from 20 % to empty


@dataclass
class Printer:
    pages: array  # reported total counter per hour
    online: array  # 1 when the agent read the printer that hour
    supplies: list[SupplyTruth]
    mode: int  # 1 precise, 10 or 20: level step
    some_remaining: bool  # reports -3 below 10 %
    rng: random.Random


def simulate(seed: int, hours: int) -> Printer:
    rng = random.Random(seed)
    colour = rng.random() < 0.4
    weekday = rng.lognormvariate(math.log(120), 0.7)
    weekend = rng.uniform(0.02, 0.3)
    vacation = rng.randrange(0, max(1, hours // 24 - 14))
    supplies = [SupplyTruth(rng.choice((3000, 6000, 12000)), 1.0)]
    if colour:
        share = rng.uniform(0.15, 0.5)
        supplies += [
            SupplyTruth(rng.choice((2000, 4000)), share * rng.uniform(0.6, 1.2)) for _ in range(3)
        ]
    mode = rng.choices((1, 10, 20), (5, 3, 2))[0]
    online = array("b", [1]) * hours
    for _ in range(rng.choice((1, 2, 3, 4, 5))):  # agent outages
        a = rng.randrange(hours)
        for h in range(a, min(hours, a + rng.randrange(24, 24 * 6))):
            online[h] = 0
    reset_at = rng.randrange(hours) if rng.random() < 0.02 else -1
    pages_out = array("q")
    counter = rng.randrange(1000, 500000)
    state = [_new_life(rng, s, initial=True) for s in supplies]
    life_no = [0] * len(supplies)
    factor = 1.0
    for h in range(hours):
        day, hour = divmod(h, 24)
        dow = (START.weekday() + day) % 7
        if hour == 0:
            factor = rng.lognormvariate(0, 0.3) * (rng.uniform(2, 5) if rng.random() < 0.03 else 1)
            if day in HOLIDAYS or vacation <= day < vacation + 10:
                factor *= 0.1
            if dow >= 5:
                factor *= weekend
        share = 0.12 if 8 <= hour < 18 else 0.04 / 14 * 10
        expect = weekday * factor * share / 1.6
        printed = int(expect + rng.random())
        counter += printed
        if h == reset_at:
            counter = rng.randrange(0, 50)
        pages_out.append(counter)
        for i, s in enumerate(supplies):
            st = state[i]
            before = st["level"]
            st["level"] -= printed * s.share * st["usage"]
            if st["early"] is not None and st["level"] <= st["early"]:
                life_no[i] += 1
                state[i] = st = _new_life(rng, s)
            elif before > 20 >= st["level"]:
                st["at20"] = h
            if st["level"] <= 0 and before > 0:
                s.empties[life_no[i]] = h - 1 + before / max(1e-9, before - st["level"])
                if st.get("at20") is not None:
                    s.d20.append((s.empties[life_no[i]] - st["at20"]) / 24)
                st["replace_at"] = h + rng.randrange(0, 72)
            if st["level"] <= 0:
                st["level"] = 0.0
                if h >= st["replace_at"]:
                    life_no[i] += 1
                    state[i] = st = _new_life(rng, s)
            if st["level"] < 8 and not st["shaken"] and rng.random() < st["shake_p"]:
                st["shaken"], st["bump"] = True, rng.uniform(5, 15)
            st["bump"] = max(0.0, st["bump"] - rng.uniform(0.2, 0.6))
            s.level.append(st["level"])
            s.offset.append(st["bump"])
            s.life.append(life_no[i])
    return Printer(pages_out, online, supplies, mode, rng.random() < 0.15, rng)


def _new_life(rng: random.Random, s: SupplyTruth, initial: bool = False) -> dict:
    return {
        "level": rng.uniform(30, 100) if initial else 100.0,
        "usage": 100 / s.yield_pages * rng.uniform(0.75, 1.3),
        "early": rng.uniform(15, 45) if rng.random() < 0.15 else None,
        "shake_p": 0.02 if rng.random() < 0.3 else 0.0,
        "shaken": False,
        "bump": 0.0,
        "replace_at": 1 << 30,
    }


def reported(p: Printer, s: SupplyTruth, h: int) -> float | None:
    true = s.level[h]
    if p.rng.random() < 0.005:
        return None  # -2 unknown
    if p.some_remaining and 0 < true < 10:
        return None  # -3 some remaining
    shown = min(100.0, true + s.offset[h])
    if p.mode == 1:
        jitter = p.rng.choice((-1, 0, 0, 0, 1)) if shown > 1 else 0
        return float(max(0, min(100, round(shown) + jitter)))
    return float(min(100, round(shown / p.mode) * p.mode))


class Line:
    """Baseline: a straight line through the last two distinct levels."""

    def __init__(self) -> None:
        self.prev: tuple[datetime, float] | None = None
        self.last: tuple[datetime, float] | None = None

    def feed(self, at: datetime, level: float | None) -> None:
        if level is None:
            return
        if self.last is None or level != self.last[1]:
            self.prev, self.last = self.last, (at, level)

    def days(self, now: datetime) -> float | None:
        if self.prev is None or self.last is None or self.last[1] >= self.prev[1]:
            return None
        per_day = (self.prev[1] - self.last[1]) / (
            (self.last[0] - self.prev[0]).total_seconds() / 86400
        )
        return max(0.0, self.last[1] / per_day - (now - self.last[0]).total_seconds() / 86400)


@dataclass
class Tally:
    errors: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    orders: dict[str, dict[tuple[int, int, int], int]] = field(default_factory=dict)
    empties: set[tuple[int, int, int]] = field(default_factory=set)
    empty_at: dict[tuple[int, int, int], float] = field(default_factory=dict)
    first_order: dict[str, dict[tuple[int, int, int], int]] = field(default_factory=dict)
    lives: int = 0
    no_forecast: dict[tuple[str, int], int] = field(default_factory=dict)

    def error(self, method: str, h: int, predicted: float | None, truth: float) -> None:
        if predicted is None:
            self.no_forecast[(method, h)] = self.no_forecast.get((method, h), 0) + 1
            err = float(h)
        else:
            err = abs(predicted - truth)
        self.errors.setdefault((method, h), []).append(err)

    def order(self, method: str, life: tuple[int, int, int], hour: int) -> None:
        per = self.orders.setdefault(method, {})
        per[life] = per.get(life, 0) + 1
        self.first_order.setdefault(method, {}).setdefault(life, hour)


def run_printer(n: int, p: Printer, hours: int, d20: float, tally: Tally) -> None:
    policy = OrderPolicy(lead_days=LEAD)
    for i, s in enumerate(p.supplies):
        tracker, line = LifeTracker(), Line()
        lives = set(s.life)
        tally.lives += len(lives)
        for life, at in s.empties.items():
            tally.empties.add((n, i, life))
            tally.empty_at[(n, i, life)] = at
        due = {  # the read hour of each (horizon, life) question
            h_: [(max(0, math.ceil(at - 24 * h_)), life, at) for life, at in s.empties.items()]
            for h_ in HORIZONS
        }
        asks: dict[int, list[tuple[int, int, float]]] = {}
        for h_, items in due.items():
            for hour, life, at in items:
                if at - 24 * h_ >= 0:
                    asks.setdefault(hour, []).append((h_, life, at))
        armed = {"threshold": True, "line": True}
        ordered_life = None
        last_known = None
        forecast, forecast_at = None, -(1 << 30)
        pending: list[tuple[int, int, float]] = []
        for h in range(hours):
            pending += asks.get(h, [])
            if not p.online[h]:
                continue
            at = START + timedelta(hours=h)
            level = reported(p, s, h)
            tracker.feed(Obs(at, level, p.pages[h]))
            line.feed(at, level)
            if level is not None:
                last_known = level
            true_life = (n, i, s.life[h])
            for h_, life, empty in pending:
                if s.life[h] != life or (empty - h) / 24 > h_ + 1:
                    continue  # the cartridge asked about is not in the printer: no question
                truth = (empty - h) / 24
                tally.error("ours", h_, tracker.forecast(at).days, truth)
                tally.error(
                    "threshold", h_, None if last_known is None else d20 * last_known / 20, truth
                )
                tally.error("line", h_, line.days(at), truth)
            pending = []
            # orders
            if last_known is not None and last_known <= 50 and h - forecast_at >= 6:
                forecast, forecast_at = tracker.forecast(at), h
            life_obj = tracker.current
            if (
                forecast is not None
                and life_obj is not None
                and ordered_life is not life_obj
                and order_due(tracker, forecast, policy)
            ):
                ordered_life = life_obj
                tally.order("ours", true_life, h)
            if level is not None:
                if armed["threshold"] and level <= 20:
                    tally.order("threshold", true_life, h)
                armed["threshold"] = level > 20
            ld = line.days(at)
            if armed["line"] and ld is not None and ld <= LEAD:
                tally.order("line", true_life, h)
            armed["line"] = ld is None or ld > LEAD


def calibrate(seed: int, hours: int) -> float:
    d20: list[float] = []
    for n in range(50):
        for s in simulate(seed * 7919 + 1_000_003 + n, hours).supplies:
            d20 += s.d20
    return statistics.median(d20)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--printers", type=int, default=500)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args(argv)
    hours = args.days * 24
    t0 = time.perf_counter()
    d20 = calibrate(args.seed, hours)
    tally = Tally()
    reads = 0
    for n in range(args.printers):
        p = simulate(args.seed * 7919 + n, hours)
        reads += sum(p.online) * len(p.supplies)
        run_printer(n, p, hours, d20, tally)
    took = time.perf_counter() - t0
    print(
        f"{args.printers} printers x {args.days} days, {reads:,} supply reads, "
        f"{tally.lives:,} cartridge lives, {len(tally.empties):,} ran empty; "
        f"threshold baseline: {d20:.1f} days from 20 % to empty; {took:.0f} s"
    )
    print()
    print("| horizon | method | cases | MAE (days) | within +/-3 days | no forecast |")
    print("| --- | --- | --- | --- | --- | --- |")
    for h in HORIZONS:
        for method in ("ours", "threshold", "line"):
            errs = tally.errors.get((method, h), [])
            if not errs:
                continue
            within = sum(e <= 3 for e in errs) / len(errs)
            print(
                f"| {h} d | {method} | {len(errs)} | {statistics.fmean(errs):.2f} | "
                f"{within:.0%} | {tally.no_forecast.get((method, h), 0)} |"
            )
    print()
    print("| orders | orders | duplicate orders per 1,000 cartridges | missed empties |")
    print("| --- | --- | --- | --- |")
    for method in ("ours", "threshold", "line"):
        per = tally.orders.get(method, {})
        dup = sum(c - 1 for c in per.values())
        first = tally.first_order.get(method, {})
        missed = sum(
            1 for life in tally.empties if life not in first or first[life] > tally.empty_at[life]
        )
        print(
            f"| {method} | {sum(per.values())} | {1000 * dup / max(1, tally.lives):.1f} | "
            f"{missed} of {len(tally.empties)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
