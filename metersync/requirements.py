"""The numbered requirements of spec/metersync.md, parsed (for PICS and conformance coverage).

Each requirement is one list item on one line:
    - **MS-XML-4** [MUST] (Agent-Core, Manager-Core) Text … {manual}
"""

from __future__ import annotations

import csv
import io
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
    "Agent-Trap",
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


def pics_template(reqs: tuple[Requirement, ...], classes: tuple[str, ...] = CLASSES) -> str:
    """A PICS to fill in (spec 18.3): CSV `requirement,classes,support,note`, one line per
    requirement of the claimed `classes`; {manual} requirements carry a note to complete."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["requirement", "classes", "support", "note"])
    for r in reqs:
        claimed = [c for c in r.classes if c in classes]
        if claimed:
            note = f"{r.level}; manual: say how it is met" if r.manual else r.level
            writer.writerow([r.id, " ".join(claimed), "", note])
    return out.getvalue()
