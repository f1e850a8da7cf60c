"""The alert lifecycle, sans-IO: open, update, damp and resolve from the conditions of now.

* A condition without an alert opens one (deduplication: one alert per rule, subject, key).
* An alert whose condition holds is updated; a change of severity is news, other evidence not.
* An alert whose condition is gone counts clear evaluations and resolves after `settle` of
  them in a row (flap damping); a condition back before that is a flap, not a new alert.
* An alert an operator resolved keeps its key until the condition clears, so the same
  condition does not open it again at the next evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from metersync_manager.fleet.rules import Condition

SETTLE = 2  # clear evaluations in a row before an alert resolves


@dataclass
class OpenAlert:
    alert_id: int
    ident: tuple[str, str, str, str]
    state: str  # open | acknowledged | resolved (by an operator, key still held)
    severity: str
    clear_count: int


@dataclass
class Changes:
    opened: list[Condition] = field(default_factory=list)
    held: list[tuple[OpenAlert, Condition, bool]] = field(default_factory=list)  # news?
    cleared: list[OpenAlert] = field(default_factory=list)  # counting towards resolution
    resolved: list[OpenAlert] = field(default_factory=list)
    released: list[OpenAlert] = field(default_factory=list)  # operator-resolved, now clear


def reconcile(
    alerts: Iterable[OpenAlert], conditions: Iterable[Condition], settle: int = SETTLE
) -> Changes:
    """What to do, given the unresolved alerts of some rules and subjects and the conditions
    that hold for those same rules and subjects now."""
    now: dict[tuple[str, str, str, str], Condition] = {c.ident: c for c in conditions}
    ch = Changes()
    for a in alerts:
        cond = now.pop(a.ident, None)
        if a.state == "resolved":
            if cond is None:
                ch.released.append(a)
            continue
        if cond is not None:
            ch.held.append((a, cond, cond.severity != a.severity))
        elif a.clear_count + 1 >= settle:
            ch.resolved.append(a)
        else:
            ch.cleared.append(a)
    ch.opened = list(now.values())
    return ch


def open_key(ident: tuple[str, str, str, str]) -> str:
    return "|".join(ident)


def as_ident(row: Any) -> tuple[str, str, str, str]:
    return (row.rule, row.subject_kind, row.subject_id, row.key)
