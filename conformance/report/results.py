"""Results of a conformance run: terminal summary, JUnit XML, HTML certification report.

All three show the same thing: per requirement of the claimed classes, PASS / FAIL / NOT TESTED
/ ERROR (harness trouble: no verdict) with evidence, the counts per claimed class and the run's
duration. The exit code is 1 when a MUST requirement of a claimed class failed, else 3 when the
harness met trouble (ERROR) or the run was interrupted: it then concluded nothing about those.
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

from jinja2 import Environment, FileSystemLoader, select_autoescape

from metersync_conformance.registry import RequirementResult, Status

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass
class Run:
    """One conformance run: who was tested, for which classes, and the outcome."""

    role: str  # "manager" or "agent"
    classes: list[str]
    results: list[RequirementResult]
    vendor: str = "unknown"
    product: str = "unknown"
    version: str = "unknown"
    target: str = ""
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0
    not_implemented: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False  # stopped before every check ran (Ctrl-C): results so far

    @property
    def counts(self) -> Counter[str]:
        return Counter(r.status.value for r in self.results)

    def per_class(self) -> dict[str, Counter[str]]:
        """Per claimed class, its requirements' statuses counted."""
        return {
            cls: Counter(r.status.value for r in self.results if cls in r.classes)
            for cls in self.classes
        }

    @property
    def errors(self) -> list[RequirementResult]:
        return [r for r in self.results if r.status is Status.ERROR]

    @property
    def failed_must(self) -> list[RequirementResult]:
        return [r for r in self.results if r.status is Status.FAIL and r.level in ("MUST", "?")]

    @property
    def exit_code(self) -> int:
        if self.failed_must:
            return 1
        return 3 if self.errors or self.interrupted else 0

    @property
    def verdict(self) -> str:
        if self.failed_must:
            return "NOT CONFORMANT"
        if self.errors or self.interrupted:
            why = "interrupted" if self.interrupted else f"{len(self.errors)} harness errors"
            return f"INCOMPLETE ({why}: no verdict on those requirements)"
        if any(r.status is Status.FAIL for r in self.results):
            return "CONFORMANT WITH DEVIATIONS (SHOULD/MAY)"
        return "CONFORMANT (for the requirements tested)"


def _one_line(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def summary(run: Run, *, color: bool = False) -> str:
    paint = {
        Status.PASS: ("\x1b[32m", "\x1b[0m"),
        Status.FAIL: ("\x1b[31m", "\x1b[0m"),
        Status.NOT_TESTED: ("\x1b[33m", "\x1b[0m"),
        Status.ERROR: ("\x1b[35m", "\x1b[0m"),
    }
    lines = [
        f"MeterSync conformance: {run.role} {run.target}",
        f"  {run.vendor} / {run.product} / {run.version}; classes: {', '.join(run.classes)}",
    ]
    for r in run.results:
        st = r.status
        word = f"{st.value:<10}"
        if color:
            word = paint[st][0] + word + paint[st][1]
        lines.append(f"{word} {r.id:<12} {r.level:<6} {_one_line(r.evidence, 90)}")
    for cls, c in run.per_class().items():
        lines.append(f"  {cls:<16} {_counted(c)}")
    lines.append(
        f"{len(run.results)} requirements: {_counted(run.counts)} "
        f"({_duration(run.seconds)}) — {run.verdict}"
    )
    for cls, reason in run.not_implemented.items():
        if cls in run.classes:
            lines.append(f"  {cls}: not tested — {reason}")
    return "\n".join(lines)


def _counted(c: Counter[str]) -> str:
    text = f"{c.get('PASS', 0)} pass, {c.get('FAIL', 0)} fail, {c.get('NOT TESTED', 0)} not tested"
    return text + (f", {c['ERROR']} harness errors" if c.get("ERROR") else "")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{seconds:.1f} s" if seconds < 60 else f"{minutes} min {secs:02d} s"


def junit(run: Run) -> bytes:
    suite = ET.Element(
        "testsuite",
        name=f"metersync-conformance-{run.role}",
        tests=str(len(run.results)),
        failures=str(run.counts.get("FAIL", 0)),
        skipped=str(run.counts.get("NOT TESTED", 0)),
        errors=str(run.counts.get("ERROR", 0)),
        time=f"{run.seconds:.3f}",
        timestamp=run.started.strftime("%Y-%m-%dT%H:%M:%S"),
        hostname=platform.node(),
    )
    props = ET.SubElement(suite, "properties")
    for k, v in (
        ("vendor", run.vendor),
        ("product", run.product),
        ("version", run.version),
        ("classes", ",".join(run.classes)),
        ("target", run.target),
        ("duration", f"{run.seconds:.1f}"),
        ("interrupted", str(run.interrupted).lower()),
        *(
            (f"class.{cls}.{status.lower().replace(' ', '-')}", str(c.get(status, 0)))
            for cls, c in run.per_class().items()
            for status in ("PASS", "FAIL", "NOT TESTED", "ERROR")
        ),
    ):
        ET.SubElement(props, "property", name=k, value=v)
    for r in run.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{run.role}.{r.id.split('-')[1] if r.id.count('-') == 2 else 'MS'}",
            name=f"{r.id} [{r.level}]",
            time=f"{sum(v.seconds for v in r.verdicts):.3f}",
        )
        if r.status is Status.FAIL:
            bad = [v for v in r.verdicts if v.status is Status.FAIL]
            el = ET.SubElement(case, "failure", message=_one_line(bad[0].summary, 300))
            el.text = "\n\n".join(
                f"[{v.check}] {v.summary}\nexpected: {v.expected}\nactual: {v.actual}\n"
                f"{v.excerpt or ''}"
                for v in bad
            )
        elif r.status is Status.ERROR:
            bad = [v for v in r.verdicts if v.status is Status.ERROR]
            el = ET.SubElement(case, "error", message=_one_line(bad[0].summary, 300))
            el.text = "\n".join(f"[{v.check}] {v.summary}" for v in bad)
        elif r.status is Status.NOT_TESTED:
            ET.SubElement(case, "skipped", message=_one_line(r.evidence, 300))
        out = [f"{v.status.value} [{v.check}] {v.summary}" for v in r.verdicts]
        if out:
            ET.SubElement(case, "system-out").text = "\n".join(out)
    ET.indent(suite)
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def html(run: Run) -> str:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    areas: dict[str, list[RequirementResult]] = {}
    for r in run.results:
        areas.setdefault(r.id.rsplit("-", 1)[0], []).append(r)
    return env.get_template("report.html.j2").render(
        run=run,
        areas=areas,
        counts=run.counts,
        per_class=run.per_class(),
        duration=_duration(run.seconds),
        Status=Status,
    )


def write_outputs(run: Run, junit_path: Path | None, html_path: Path | None) -> None:
    if junit_path:
        junit_path.write_bytes(junit(run))
    if html_path:
        html_path.write_text(html(run), encoding="utf-8")


def requirement_rows(results: Sequence[RequirementResult]) -> list[tuple[str, str, str]]:
    """(id, status, one-line evidence), for tests and tools."""
    return [(r.id, r.status.value, _one_line(r.evidence)) for r in results]
