"""Which numbered requirements of the spec have an automatic check, per conformance class.

`metersync conformance coverage` prints, per class, the requirements no check verifies; the
list should shrink to those the spec marks {manual}. Checks naming an id the spec does not
have are listed too: they are a bug in the suite or a requirement that was renumbered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from metersync.requirements import CLASSES, Requirement, load_requirements
from metersync_conformance.registry import Check, load_all

# Classes whose behaviour the reference implementations do not have yet: every requirement
# in them is reported NOT TESTED with this reason, never PASS.
NOT_IMPLEMENTED: dict[str, str] = {}


@dataclass(frozen=True)
class Coverage:
    total: int
    checked: list[str]
    manual: list[str]
    uncovered: list[Requirement]
    unknown: dict[str, list[str]]  # requirement id not in the spec -> checks naming it
    per_class: dict[str, tuple[int, int, list[Requirement]]]  # total, checked, uncovered


def compute(
    requirements: Sequence[Requirement] | None = None, checks: Sequence[Check] | None = None
) -> Coverage:
    reqs = list(load_requirements() if requirements is None else requirements)
    chks = list(load_all().values() if checks is None else checks)
    checked_ids: dict[str, set[str]] = {}  # id -> classes of checks naming it
    for c in chks:
        for rid in c.requirements:
            checked_ids.setdefault(rid, set()).update(c.classes)
    known = {r.id for r in reqs}
    unknown: dict[str, list[str]] = {}
    for c in chks:
        if c.informative:
            continue
        for rid in c.requirements:
            if rid not in known:
                unknown.setdefault(rid, []).append(c.name)
    checked = [r.id for r in reqs if r.id in checked_ids]
    manual = [r.id for r in reqs if r.manual and r.id not in checked_ids]
    uncovered = [r for r in reqs if r.id not in checked_ids and not r.manual]
    per_class: dict[str, tuple[int, int, list[Requirement]]] = {}
    for cls in CLASSES:
        in_cls = [r for r in reqs if cls in r.classes]
        if not in_cls:
            continue
        hit = [r for r in in_cls if cls in checked_ids.get(r.id, set())]
        missing = [r for r in in_cls if r not in hit and not r.manual]
        per_class[cls] = (len(in_cls), len(hit), missing)
    return Coverage(len(reqs), checked, manual, uncovered, unknown, per_class)


def render(cov: Coverage) -> str:
    lines = [
        f"{cov.total} requirements: {len(cov.checked)} with checks, {len(cov.manual)} manual "
        f"only, {len(cov.uncovered)} uncovered",
    ]
    for cls, (total, hit, missing) in cov.per_class.items():
        note = f" — {NOT_IMPLEMENTED[cls]}" if cls in NOT_IMPLEMENTED else ""
        lines.append(f"\n{cls}: {hit}/{total} checked, {len(missing)} without a check{note}")
        for r in missing:
            lines.append(f"  {r.id:<12} {r.level:<6} {r.text[:80]}")
    if cov.unknown:
        lines.append("\nChecks naming requirements the spec does not have:")
        for rid, names in sorted(cov.unknown.items()):
            lines.append(f"  {rid}: {', '.join(names)}")
    return "\n".join(lines)
