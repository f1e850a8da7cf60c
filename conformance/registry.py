"""The check registry: small functions, each named after the requirements it verifies.

A check is an async function of a harness context, decorated with the requirement ids it
verifies, the conformance classes it belongs to and the role under test::

    @check("MS-XML-4", "MS-ERR-1", classes=("Manager-Core",), role="manager")
    async def hostile_xml_refused(ctx: ManagerContext) -> list[Finding]:
        ...
        return [fail("MS-XML-4", "a DOCTYPE was accepted", expected="1002", actual="Receipt",
                     excerpt=body)]

A finding without a requirement applies to every id the check declares. A check that raises
never ends the run: it yields a verdict for each of its ids, with the exception as evidence.
When the exception comes from what the implementation did (no answer, a closed connection, a
TLS failure, an unreadable answer) the verdict is FAIL: it did not pass. Any other exception is
a fault of the harness, not of the implementation: ERROR, shown apart, and the run fails
without judging those requirements.
"""

from __future__ import annotations

import asyncio
import enum
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

EXCERPT_CHARS = 2500


class Status(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_TESTED = "NOT TESTED"
    ERROR = "ERROR"  # harness trouble: no verdict on the implementation


@dataclass(frozen=True)
class Finding:
    """One verdict of one check on one requirement (None: all the check's requirements)."""

    status: Status
    summary: str
    requirement: str | None = None
    expected: str | None = None
    actual: str | None = None
    excerpt: str | None = None


def excerpt_of(data: bytes | str | None, limit: int = EXCERPT_CHARS) -> str | None:
    """A readable excerpt of message bytes for evidence (start of the message, cut, marked)."""
    if data is None:
        return None
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if len(text) > limit:
        return text[:limit] + f"\n… ({len(text) - limit} more characters)"
    return text


def ok(summary: str, requirement: str | None = None, **kw: Any) -> Finding:
    return Finding(Status.PASS, summary, requirement, **_ev(kw))


def fail(summary: str, requirement: str | None = None, **kw: Any) -> Finding:
    return Finding(Status.FAIL, summary, requirement, **_ev(kw))


def not_tested(summary: str, requirement: str | None = None, **kw: Any) -> Finding:
    return Finding(Status.NOT_TESTED, summary, requirement, **_ev(kw))


class PeerError(Exception):
    """Raised by harness code when the implementation's answer makes a check impossible (an
    enrollment refused, a document missing): a FAIL of the check's requirements."""


def error(summary: str, requirement: str | None = None, **kw: Any) -> Finding:
    return Finding(Status.ERROR, summary, requirement, **_ev(kw))


def _ev(kw: dict[str, Any]) -> dict[str, Any]:
    out = dict(kw)
    if "excerpt" in out:
        out["excerpt"] = excerpt_of(out["excerpt"])
    for k in ("expected", "actual"):
        if out.get(k) is not None and not isinstance(out[k], str):
            out[k] = str(out[k])
    return out


CheckFn = Callable[[Any], Awaitable[Iterable[Finding] | Finding]]


@dataclass(frozen=True)
class Check:
    name: str
    requirements: tuple[str, ...]
    classes: tuple[str, ...]
    role: str  # "manager" or "agent": the role under test
    fn: CheckFn
    doc: str
    timeout: float
    informative: bool = False  # verifies no numbered requirement; never fails a claim


@dataclass(frozen=True)
class Verdict:
    """A finding bound to its check and requirement, as reported."""

    requirement: str
    status: Status
    check: str
    summary: str
    expected: str | None = None
    actual: str | None = None
    excerpt: str | None = None
    seconds: float = 0.0
    informative: bool = False


REGISTRY: dict[str, Check] = {}


def check(
    *requirements: str,
    classes: Sequence[str],
    role: str,
    timeout: float = 60.0,
    informative: bool = False,
) -> Callable[[CheckFn], CheckFn]:
    """Register an async check verifying `requirements` for `classes` of `role`."""
    if not requirements:
        raise ValueError("a check verifies at least one requirement")

    def deco(fn: CheckFn) -> CheckFn:
        name = fn.__name__
        if name in REGISTRY and REGISTRY[name].fn is not fn:
            raise ValueError(f"two checks are named {name}")
        REGISTRY[name] = Check(
            name=name,
            requirements=tuple(requirements),
            classes=tuple(classes),
            role=role,
            fn=fn,
            doc=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name,
            timeout=timeout,
            informative=informative,
        )
        return fn

    return deco


def load_all() -> dict[str, Check]:
    """Import every module that registers checks; the registry, complete."""
    from metersync_conformance import smtp_checks  # noqa: F401
    from metersync_conformance.agent.checks import (  # noqa: F401
        channel,
        core,
        senses,  # noqa: F401
        tls,
        updates,
    )
    from metersync_conformance.manager import channel as _mc  # noqa: F401
    from metersync_conformance.manager import core as _m  # noqa: F401
    from metersync_conformance.manager import updates as _mu  # noqa: F401

    return REGISTRY


def select(role: str, classes: Iterable[str]) -> list[Check]:
    wanted = set(classes)
    return [c for c in load_all().values() if c.role == role and wanted & set(c.classes)]


def _bind(chk: Check, findings: Iterable[Finding], seconds: float) -> list[Verdict]:
    out: list[Verdict] = []
    for f in findings:
        targets = (f.requirement,) if f.requirement else chk.requirements
        for req in targets:
            out.append(
                Verdict(
                    req,
                    f.status,
                    chk.name,
                    f.summary,
                    f.expected,
                    f.actual,
                    f.excerpt,
                    seconds,
                    chk.informative,
                )
            )
    return out


async def run_check(chk: Check, ctx: Any) -> list[Verdict]:
    start = time.monotonic()
    try:
        result = await asyncio.wait_for(chk.fn(ctx), chk.timeout)
        findings = [result] if isinstance(result, Finding) else list(result)
        if not findings:
            findings = [error("the check produced no verdict (a harness bug)")]
    except TimeoutError:
        findings = [fail(f"no conclusion within {chk.timeout:.0f} s")]
    except Exception as exc:  # never a crash: a verdict of the check's own requirements
        findings = [_exception_finding(exc)]
    return _bind(chk, findings, time.monotonic() - start)


def _caused_by_peer(exc: BaseException) -> bool:
    """Does the exception come from what the implementation did (its answers, its sockets)?"""
    if isinstance(exc, BaseExceptionGroup):
        return all(_caused_by_peer(e) for e in exc.exceptions)
    import subprocess

    import httpx

    from metersync.errors import ProtocolError

    # Sockets, TLS, SMTP (OSError), HTTP, closed streams, unreadable documents, a vendor
    # command that failed: all the implementation's doing.
    peer = (httpx.HTTPError, OSError, EOFError, ProtocolError, UnicodeDecodeError,
            subprocess.SubprocessError, PeerError)  # fmt: skip
    try:
        from websockets.exceptions import WebSocketException

        peer = (*peer, WebSocketException)
    except ImportError:  # pragma: no cover - websockets is a dependency
        pass
    return isinstance(exc, peer)


def _exception_finding(exc: BaseException) -> Finding:
    text = traceback.format_exception_only(type(exc), exc)[-1].strip()
    if isinstance(exc, BaseExceptionGroup):  # e.g. from schemathesis or a task group
        inner = [traceback.format_exception_only(type(e), e)[-1].strip() for e in exc.exceptions]
        text = f"{text}: " + "; ".join(inner[:5])
    if _caused_by_peer(exc):
        return fail(f"the check could not complete: {text}")
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno}" if where else ""
    return error(f"harness error{at}: {text}")


async def run_checks(
    checks: Sequence[Check], ctx: Any, progress: Callable[[Check, list[Verdict]], None] | None
) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for chk in checks:
        got = await run_check(chk, ctx)
        verdicts.extend(got)
        if progress:
            progress(chk, got)
    return verdicts


@dataclass
class RequirementResult:
    """All verdicts on one requirement, folded: any FAIL fails it, then any ERROR leaves it
    unjudged; otherwise any PASS passes it."""

    id: str
    level: str
    classes: tuple[str, ...]
    text: str
    manual: bool
    verdicts: list[Verdict] = field(default_factory=list)
    reason: str | None = None  # why it is NOT TESTED when no check ran

    @property
    def status(self) -> Status:
        st = {v.status for v in self.verdicts}
        if Status.FAIL in st:
            return Status.FAIL
        if Status.ERROR in st:  # no conclusion where the harness failed: not a pass
            return Status.ERROR
        if Status.PASS in st:
            return Status.PASS
        return Status.NOT_TESTED

    @property
    def evidence(self) -> str:
        order = {Status.FAIL: 0, Status.ERROR: 1, Status.PASS: 2, Status.NOT_TESTED: 3}
        if not self.verdicts:
            return self.reason or "no check"
        first = sorted(self.verdicts, key=lambda v: order[v.status])[0]
        return first.summary


def fold(
    verdicts: Sequence[Verdict],
    requirements: Sequence[Any],
    classes: Sequence[str],
    not_implemented: dict[str, str] | None = None,
) -> list[RequirementResult]:
    """Per requirement of the claimed classes (in spec order), its verdicts and status.

    Requirements with verdicts but unknown to the spec still appear (a check naming an id the
    spec does not have is a finding about the suite itself).
    """
    not_implemented = not_implemented or {}
    claimed = set(classes)
    by_id: dict[str, RequirementResult] = {}
    for r in requirements:
        if claimed & set(r.classes):
            by_id[r.id] = RequirementResult(r.id, r.level, tuple(r.classes), r.text, r.manual)
    for v in verdicts:
        if v.requirement not in by_id:
            level, text = (
                ("INFO", "(informative: no numbered requirement)")
                if v.informative
                else (
                    "?",
                    "(not in the specification)",
                )
            )
            by_id[v.requirement] = RequirementResult(v.requirement, level, (), text, False)
        by_id[v.requirement].verdicts.append(v)
    for res in by_id.values():
        if res.verdicts:
            continue
        cls = [c for c in res.classes if c in claimed]
        missing = [not_implemented[c] for c in cls if c in not_implemented]
        if res.manual:
            res.reason = "manual: verified by inspection, not by this suite"
        elif missing and len(missing) == len(cls):
            res.reason = missing[0]
        else:
            res.reason = "no automatic check for this requirement in this mode"
    return list(by_id.values())


def with_requirement(v: Verdict, req: str) -> Verdict:
    return replace(v, requirement=req)
