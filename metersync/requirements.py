"""The numbered requirements of spec/metersync.md, parsed (for PICS and conformance coverage).

Each requirement is one list item on one line:
    - **MS-XML-4** [MUST] (Agent-Core, Manager-Core) Text … {manual}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import metersync_spec

CLASSES = (
    "Agent-Core",
    "Agent-HTTP",
    "Agent-SMTP",
    "Agent-Channel",
    "Agent-Update",
    "Manager-Core",
    "Manager-HTTP",
    "Manager-SMTP",
    "Manager-Channel",
    "Manager-Update",
)
_LINE = re.compile(
    r"^- \*\*(?P<id>MS-[A-Z]+-\d+)\*\* \[(?P<level>MUST|SHOULD|MAY)\] "
    r"\((?P<classes>[A-Za-z, \-]+)\) (?P<text>.+?)(?P<manual> \{manual\})?$"
)


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str
    classes: tuple[str, ...]
    text: str
    manual: bool

    @property
    def area(self) -> str:
        return self.id.split("-")[1]


@cache
def load_requirements() -> tuple[Requirement, ...]:
    text = (metersync_spec.ROOT / "metersync.md").read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            out.append(
                Requirement(
                    id=m["id"],
                    level=m["level"],
                    classes=tuple(c.strip() for c in m["classes"].split(",")),
                    text=m["text"],
                    manual=bool(m["manual"]),
                )
            )
    return tuple(out)


def pics_template(reqs: tuple[Requirement, ...]) -> str:
    """A PICS (implementation conformance statement) to fill in, one row per requirement."""
    rows = [
        "| Requirement | Level | Classes | Status (M/O/C) | Supported (yes/no) | Test |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in reqs:
        status = {"MUST": "M", "SHOULD": "O", "MAY": "O"}[r.level]
        test = "manual" if r.manual else "automatic"
        rows.append(f"| {r.id} | {r.level} | {', '.join(r.classes)} | {status} |  | {test} |")
    return "\n".join(rows)
