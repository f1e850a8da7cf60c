"""Checks of an agent under test, judged from what the harness recorded (agent_harness).

Values are compared with the truth file of each recording; delivery rules with the requests
the harness manager received during the scenario's phases; the absence of servers with what
/proc showed of the agent's process tree.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

from metersync_conformance.agent.harness import (
    OUTAGE_SECONDS,
    RETRY_AFTER,
    AgentContext,
    Device,
)
from metersync_conformance.peers.manager import BASE_PATH, Received
from metersync_conformance.registry import Finding, check, excerpt_of, fail, not_tested, ok
from metersync_conformance.wire import CONTENT_TYPE

CORE = ("Agent-Core",)
HTTP = ("Agent-HTTP",)
RETRY_TOLERANCE = 0.15  # seconds: clocks and scheduling


def _name(v: Any) -> str:
    return v.value if hasattr(v, "value") else str(v)


def _excerpt(item: Received, limit: int = 600) -> str:
    return excerpt_of(item.body, limit) or ""


def _snapshot_xml(item: Received, key: str) -> str:
    """The <device> element of `key` in a received report, for evidence."""
    text = item.body.decode("utf-8", "replace")
    start = text.find(f"<deviceKey>{key}</deviceKey>")
    if start < 0:
        return _excerpt(item)
    begin = text.rfind("<device ", 0, start)
    stop = text.find("</device>", start)
    return excerpt_of(text[begin : stop + 9], 1500) or ""


def snapshot_for(ctx: AgentContext, dev: Device, phase: str) -> tuple[Any, Received] | None:
    """The device's snapshot at its address among the reports of a phase (see below)."""
    found = None
    clean = None
    slow = {"timeout", "budget-exceeded"} - set(dev.recording.truth.get("errors", []))
    for r in ctx.reports_in(phase):
        for d in r.obj.device:
            if d.identity.ip_address == dev.host:
                found = (d, r)
                if not {_name(e.code) for e in d.collection_error} & slow:
                    clean = (d, r)
    # A poll slowed down by a loaded test machine is not what the truth describes: prefer the
    # last snapshot without a timeout; when every one timed out, that is what gets judged.
    return clean or found


def observations(ctx: AgentContext) -> list[tuple[Device, Any, Received | None, str]]:
    """(device, snapshot or None, report, phase) for every truth the run can be judged on."""
    out: list[tuple[Device, Any, Received | None, str]] = []
    for dev in ctx.devices:
        if dev.role == "moved":
            continue
        got = snapshot_for(ctx, dev, "baseline")
        out.append((dev, got[0] if got else None, got[1] if got else None, "baseline"))
    for pair in (ctx.move, ctx.swap):
        if pair and "changes" in ctx.phases:
            dev = pair[1]
            got = snapshot_for(ctx, dev, "changes")
            out.append((dev, got[0] if got else None, got[1] if got else None, "changes"))
    return out


def _missing(dev: Device, phase: str, ctx: AgentContext, req: str | None = None) -> Finding:
    return fail(
        f"{dev.recording.name} ({dev.host}): no snapshot in phase {phase}",
        req,
        expected=f"a snapshot of {dev.recording.key}",
        actual="none",
        excerpt=ctx.agent_log(),
    )


def _phase_missing(ctx: AgentContext, name: str) -> Finding | None:
    """NOT TESTED when the run did not plan the phase; FAIL when the agent prevented it."""
    if name not in ctx.planned:
        return not_tested(f"the scenario phase {name!r} was not part of this run")
    if name not in ctx.phases:
        why = (
            "no report was ever accepted" if not ctx.rec.accepted_reports() else "an earlier phase"
        )
        return fail(f"the scenario never reached phase {name!r} ({why})", excerpt=ctx.agent_log())
    return None


def _needs_reports(ctx: AgentContext) -> Finding | None:
    if not ctx.rec.reports():
        return fail("the agent sent no report at all", excerpt=ctx.agent_log())
    return None


# --- messages ----------------------------------------------------------------------------


@check("MS-XML-9", "MS-MSG-1", classes=CORE, role="agent")
async def every_message_valid_against_xsd(ctx: AgentContext) -> list[Finding]:
    """Every document the agent sent is a MeterSync message valid against the XSD."""
    if not ctx.rec.received:
        return [fail("the agent sent nothing", excerpt=ctx.agent_log())]
    bad = [r for r in ctx.rec.received if r.problem]
    if bad:
        return [
            fail(
                f"{len(bad)} of {len(ctx.rec.received)} documents were refused at the XML "
                f"edge; first: {bad[0].problem}",
                expected="valid documents",
                actual=bad[0].problem,
                excerpt=_excerpt(bad[0], 2000),
            )
        ]
    return [ok(f"all {len(ctx.rec.received)} documents valid against the XSD")]


@check("MS-MSG-5", "MS-SEC-1", "MS-SEC-4", "MS-SEC-5", classes=CORE, role="agent")
async def enrollment_as_provisioned(ctx: AgentContext) -> list[Finding]:
    """The agent enrolls with the provisioned token, its software, capabilities and key."""
    enr = [r for r in ctx.rec.received if r.kind == "Enrollment"]
    if not enr:
        return [fail("the agent never sent an Enrollment", excerpt=ctx.agent_log())]
    e, first = enr[0].obj, enr[0]
    caps = {_name(c) for c in e.capability}
    out: list[Finding] = []
    if e.token != ctx.token:
        out.append(
            fail(
                "the Enrollment carries another token",
                "MS-MSG-5",
                expected=ctx.token,
                actual=e.token,
                excerpt=_excerpt(first),
            )
        )
    elif "http" not in caps:
        out.append(
            fail(
                "an agent enrolling over HTTP does not list the http capability",
                "MS-MSG-5",
                expected="capability http",
                actual=str(sorted(caps)),
                excerpt=_excerpt(first),
            )
        )
    else:
        out.append(
            ok(f"Enrollment with the provisioned token, capabilities {sorted(caps)}", "MS-MSG-5")
        )
    reports = ctx.rec.reports()
    if reports and reports[0].t < first.t:
        out.append(fail("a Report was sent before the Enrollment", "MS-SEC-1"))
    elif first.answer_kind not in ("accepted", "duplicate"):
        out.append(fail(f"the Enrollment was refused: {first.answer_kind}", "MS-SEC-1"))
    else:
        out.append(ok("enrolled (Receipt) before the first report", "MS-SEC-1"))
    key = e.public_key
    if _name(key.algorithm) != "ed25519" or len(key.value) != 32:
        out.append(
            fail(
                "publicKey is not a 32-byte Ed25519 key",
                "MS-SEC-4",
                expected="32 bytes, ed25519",
                actual=f"{len(key.value)} bytes, {_name(key.algorithm)}",
            )
        )
    else:
        out.append(ok("publicKey: 32-byte Ed25519", "MS-SEC-4"))
    if not first.headers.get("metersync-signature"):
        out.append(fail("the Enrollment is not signed", "MS-SEC-5", excerpt=_excerpt(first)))
    elif first.signature_problem:
        out.append(
            fail(
                f"the Enrollment's signature does not verify under its publicKey: "
                f"{first.signature_problem}",
                "MS-SEC-5",
                excerpt=_excerpt(first),
            )
        )
    else:
        out.append(ok("the Enrollment is signed with the enclosed key", "MS-SEC-5"))
    return out


@check("MS-HTTP-2", "MS-HTTP-3", "MS-HTTP-7", "MS-SEC-10", classes=HTTP, role="agent")
async def http_requests_well_formed(ctx: AgentContext) -> list[Finding]:
    """Right path per document, the MeterSync content type, a signature that verifies."""
    out: list[Finding] = []
    items = [r for r in ctx.rec.received if r.kind]
    if not items:
        return [fail("the agent sent no readable document", excerpt=ctx.agent_log())]
    wrong_path = [
        r
        for r in items
        if (r.kind, r.path)
        not in {("Enrollment", BASE_PATH + "/v1/enroll"), ("Report", BASE_PATH + "/v1/reports")}
    ]
    out.append(
        fail(f"{wrong_path[0].kind} posted to {wrong_path[0].path}", "MS-HTTP-2")
        if wrong_path
        else ok("Enrollment to /v1/enroll, Report to /v1/reports", "MS-HTTP-2")
    )
    ctypes = {r.headers.get("content-type", "").split(";")[0].strip().lower() for r in items}
    out.append(
        ok(f"Content-Type {CONTENT_TYPE}", "MS-HTTP-3")
        if ctypes == {CONTENT_TYPE}
        else fail(
            "wrong Content-Type",
            "MS-HTTP-3",
            expected=CONTENT_TYPE,
            actual=", ".join(sorted(ctypes)),
        )
    )
    unsigned = [r for r in items if not r.headers.get("metersync-signature")]
    bad_sig = [r for r in items if r.signature_problem]
    out += [_sig_finding(req, items, unsigned, bad_sig) for req in ("MS-HTTP-7", "MS-SEC-10")]
    return out


def _sig_finding(
    req: str, items: list[Received], unsigned: list[Received], bad_sig: list[Received]
) -> Finding:
    if unsigned:
        return fail(
            f"{len(unsigned)} requests without MeterSync-Signature (first: {unsigned[0].kind})",
            req,
            excerpt=_excerpt(unsigned[0]),
        )
    if bad_sig:
        return fail(
            f"a signature did not verify: {bad_sig[0].signature_problem}",
            req,
            excerpt=_excerpt(bad_sig[0]),
        )
    return ok(f"all {len(items)} requests signed; every signature verifies", req)


@check("MS-MSG-10", "MS-DEL-1", "MS-DEL-5", classes=CORE, role="agent")
async def report_ids_fresh_and_sequences_unique(ctx: AgentContext) -> list[Finding]:
    """A new report has a new id and the next sequence; no device twice in one report."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    by_id: dict[str, set[str]] = defaultdict(set)
    by_seq: dict[tuple[str, int], set[str]] = defaultdict(set)
    first: dict[str, Received] = {}
    for r in ctx.rec.reports():
        by_id[r.report_id].add(r.digest)  # type: ignore[index]
        by_seq[(r.obj.agent_id, r.sequence)].add(r.report_id)  # type: ignore[index]
        first.setdefault(r.report_id, r)  # type: ignore[arg-type]
    out: list[Finding] = []
    reused = [i for i, d in by_id.items() if len(d) > 1]
    if reused:
        out.append(
            fail(
                f"report id {reused[0]} was sent with {len(by_id[reused[0]])} different contents",
                "MS-DEL-1",
                excerpt=_excerpt(first[reused[0]]),
            )
        )
    else:
        out.append(ok(f"{len(by_id)} reports, each id with one content", "MS-DEL-1"))
    twice = [(k, ids) for k, ids in by_seq.items() if len(ids) > 1]
    seqs = sorted(s for _, s in by_seq)
    dup_dev = []
    for r in ctx.rec.reports():
        keys = Counter(d.identity.device_key for d in r.obj.device)
        dup_dev += [(r, k) for k, n in keys.items() if n > 1]
    if dup_dev:
        r, k = dup_dev[0]
        out.append(
            fail(
                f"device key {k} twice in report {r.report_id}",
                "MS-MSG-10",
                excerpt=_snapshot_xml(r, k),
            )
        )
    else:
        out.append(ok("no device key twice in one report", "MS-MSG-10"))
    if seqs and seqs[0] != 1:
        out.append(
            fail(
                f"the first report has sequence {seqs[0]}",
                "MS-DEL-5",
                expected="sequence starting at 1",
                actual=str(seqs[0]),
            )
        )
    elif twice:
        (agent, seq), ids = twice[0]
        out.append(
            fail(
                f"sequence {seq} was used by {len(ids)} different reports: {sorted(ids)}",
                "MS-DEL-5",
                expected="one report per sequence number",
                actual=str(sorted(ids)),
            )
        )
    elif seqs and len(set(range(seqs[0], seqs[-1] + 1)) - set(seqs)) > _most_dropped(ctx):
        gaps = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))[:10]
        out.append(
            fail(
                f"sequence numbers have gaps: missing {gaps}",
                "MS-DEL-5",
                expected="consecutive sequence numbers",
                actual=f"{seqs[:20]}…",
            )
        )
    else:
        out.append(
            ok(
                f"{len(seqs)} reports with consecutive sequence numbers "
                f"{seqs[0] if seqs else '-'}..{seqs[-1] if seqs else '-'}",
                "MS-DEL-5",
            )
        )
    return out


def _most_dropped(ctx: AgentContext) -> int:
    """The largest droppedReports any report stated: gaps the retention limits explain."""
    return max((int(r.obj.agent_status.dropped_reports or 0) for r in ctx.rec.reports()), default=0)


# --- delivery ----------------------------------------------------------------------------


def _attempts(items: list[Received]) -> dict[str, list[Received]]:
    out: dict[str, list[Received]] = defaultdict(list)
    for r in items:
        if r.report_id:
            out[r.report_id].append(r)
    return out


@check("MS-DEL-7", "MS-DEL-15", "MS-MSG-13", classes=CORE, role="agent")
async def resend_keeps_id_and_bytes(ctx: AgentContext) -> list[Finding]:
    """A report refused with 503 is sent again later with the same id and the same bytes."""
    if (f := _phase_missing(ctx, "retry_after")) is not None:
        return [f]
    t0 = ctx.phase("retry_after")[0]
    refused = [r for r in ctx.rec.reports() if r.t >= t0 and r.answer_kind == "unavailable"]
    if not refused:
        return [
            fail("no report was posted while the manager answered 503", excerpt=ctx.agent_log())
        ]
    r0 = refused[0]
    later = [r for r in ctx.rec.reports() if r.t > r0.t and r.report_id == r0.report_id]
    if not later:
        return [
            fail(
                f"report {r0.report_id} refused with 503 was never sent again",
                expected="the same report again",
                actual="nothing",
                excerpt=ctx.agent_log(),
            )
        ]
    changed = [r for r in later if r.body != r0.body]
    if changed:
        return [
            fail(
                f"report {r0.report_id} was re-sent with different bytes",
                expected=excerpt_of(r0.body, 300),
                actual=excerpt_of(changed[0].body, 300),
            )
        ]
    new_ids = [
        r
        for r in ctx.rec.reports()
        if r.t > r0.t and r.sequence == r0.sequence and r.report_id != r0.report_id
    ]
    if new_ids:
        return [fail(f"sequence {r0.sequence} re-sent under a new id {new_ids[0].report_id}")]
    return [ok(f"report {r0.report_id} re-sent {len(later)}× with the same id and bytes")]


@check("MS-DEL-11", classes=CORE, role="agent")
async def retry_after_honoured(ctx: AgentContext) -> list[Finding]:
    """After a 503 with Retry-After, nothing is posted before that many seconds passed."""
    if (f := _phase_missing(ctx, "retry_after")) is not None:
        return [f]
    t0, t1 = ctx.phase("retry_after")
    posts = [r for r in ctx.rec.reports() if r.t >= t0]
    refused = [r for r in posts if r.answer_kind == "unavailable" and r.t < t1]
    if not refused:
        return [fail("no report was posted while the manager answered 503 with Retry-After")]
    early = []
    for r in refused:
        nxt = next((p for p in posts if p.t > r.t), None)
        if nxt is not None and nxt.t - r.t < RETRY_AFTER - RETRY_TOLERANCE:
            early.append((r, nxt))
    if early:
        r, nxt = early[0]
        return [
            fail(
                f"posted again {nxt.t - r.t:.2f} s after a 503 with Retry-After: {RETRY_AFTER}",
                expected=f">= {RETRY_AFTER} s",
                actual=f"{nxt.t - r.t:.2f} s",
            )
        ]
    gaps = [f"{(next((p for p in posts if p.t > r.t), r).t - r.t):.1f}s" for r in refused]
    return [
        ok(
            f"{len(refused)} answers with Retry-After: {RETRY_AFTER}; next posts after "
            f"{', '.join(gaps)}"
        )
    ]


def max_attempts(window: float, base: float = 0.5) -> int:
    """The most posts of one report an exponential backoff allows in `window` seconds.

    With full jitter single waits may be short, but the ceilings double: more than
    2 + log2(window / base) attempts in the window cannot be an exponential backoff whose
    first ceiling is at least `base` seconds, except by a chance below 1 in 10^4.
    """
    return 2 + math.ceil(math.log2(max(window / base, 1.0)))


@check("MS-DEL-10", classes=CORE, role="agent")
async def retries_back_off(ctx: AgentContext) -> list[Finding]:
    """During an outage (503 without Retry-After) retries of a report space out exponentially."""
    if (f := _phase_missing(ctx, "outage")) is not None:
        return [f]
    t0, t1 = ctx.phase("outage")
    posts = [r for r in ctx.rec.reports() if t0 <= r.t < t1]
    if not posts:
        return [
            not_tested(
                f"no report was posted during the {OUTAGE_SECONDS:.0f} s outage; "
                "backoff could not be observed"
            )
        ]
    per_id = _attempts(posts)
    worst_id, worst = max(per_id.items(), key=lambda kv: len(kv[1]))
    limit = max_attempts(t1 - t0)
    gaps = [b.t - a.t for a, b in zip(worst, worst[1:], strict=False)]
    shown = ", ".join(f"{g:.2f}" for g in gaps[:12])
    if len(worst) > limit or len(posts) > limit + len(per_id):
        return [
            fail(
                f"{len(worst)} posts of report {worst_id} ({len(posts)} in all) in a "
                f"{t1 - t0:.0f} s outage; gaps {shown} s",
                expected=f"at most {limit} attempts (exponential backoff)",
                actual=f"{len(worst)} attempts",
            )
        ]
    return [
        ok(
            f"{len(worst)} posts of one report in a {t1 - t0:.0f} s outage (limit {limit}); "
            f"gaps {shown or '-'} s"
        )
    ]


@check("MS-DEL-9", "MS-DEL-16", "MS-SEC-3", classes=CORE, role="agent", timeout=30)
async def outbox_survives_outage_and_restart(ctx: AgentContext) -> list[Finding]:
    """Reports queued during an outage, across an agent restart, all arrive, once, unchanged."""
    for phase in ("outage", "recovery"):
        if (f := _phase_missing(ctx, phase)) is not None:
            return [f]
    reports = ctx.rec.reports()
    outage_t0 = ctx.phase("outage")[0]
    queued = {r.report_id for r in reports if r.t >= outage_t0 and r.answer_kind == "unavailable"}
    done = {r.report_id for r in reports if r.answer_kind in ("accepted", "duplicate")}
    lost = sorted(i for i in queued if i not in done)  # type: ignore[type-var]
    out: list[Finding] = []
    if not queued:
        out.append(not_tested("no report was refused during the outage", "MS-DEL-9"))
    elif lost:
        out.append(
            fail(
                f"{len(lost)} of {len(queued)} reports refused during the outage never "
                f"arrived after it (first {lost[0]})",
                "MS-DEL-9",
                expected="every queued report delivered",
                actual=f"missing {lost[:5]}",
                excerpt=ctx.agent_log(),
            )
        )
    else:
        out.append(
            ok(
                f"all {len(queued)} reports queued during the outage and restart were "
                "delivered afterwards",
                "MS-DEL-9",
            )
        )
    # Across the restart: the same agent, no report re-created under a new id.
    agents = {r.obj.agent_id for r in reports}
    restart = ctx.restart_at or float("inf")
    before = {r.sequence: r for r in reports if r.t < restart}
    recreated = [
        r
        for r in reports
        if r.t >= restart and r.sequence in before and before[r.sequence].report_id != r.report_id
    ]
    if len(agents) > 1:
        out.append(fail(f"the agent id changed across the restart: {sorted(agents)}", "MS-SEC-3"))
    elif ctx.restart_at is not None:
        out.append(ok("the same agent id before and after the restart", "MS-SEC-3"))
    if recreated:
        r = recreated[0]
        out.append(
            fail(
                f"after the restart, sequence {r.sequence} came again under a new id "
                f"{r.report_id} (was {before[r.sequence].report_id})",
                "MS-DEL-16",
                excerpt=_excerpt(r),
            )
        )
    elif ctx.restart_at is None:
        out.append(not_tested("the agent was not restarted", "MS-DEL-16"))
    else:
        out.append(
            ok(
                "after the restart: the same agent id, no report re-created under a new id",
                "MS-DEL-16",
            )
        )
    return out


# --- values against the truth ------------------------------------------------------------


def applied(snap: Any) -> list[str]:
    return (snap.profiles or "").split()


def vendor_profiles(dev: Device) -> list[str]:
    """The vendor profiles the truth file's values come from (its `profiles` but standard)."""
    return [p for p in str(dev.recording.truth.get("profiles", "")).split() if p != "standard"]


def unapplied(dev: Device, snap: Any) -> str | None:
    """The first vendor profile of the truth that this agent did not apply, if any."""
    return next((p for p in vendor_profiles(dev) if p not in applied(snap)), None)


def _profile_dependent(problems: list[tuple[str, ...]], snap: Any) -> tuple[list, list]:
    """(problems to judge, problems whose truth comes from a vendor profile the agent does not
    apply: spec 4.1 makes those values profile-dependent). A problem's optional 4th item names
    the profile its truth comes from."""
    judged, dependent = [], []
    for p in problems:
        own = len(p) > 3 and p[3] not in (None, "standard") and p[3] not in applied(snap)
        (dependent if own else judged).append(p)
    return judged, dependent


def _per_device(ctx: AgentContext, req: str, judge: Any) -> list[Finding]:
    out: list[Finding] = []
    for dev, snap, rep, phase in observations(ctx):
        if snap is None:
            out.append(_missing(dev, phase, ctx, req))
            continue
        problems, dependent = _profile_dependent(judge(dev, snap), snap)
        name = f"{dev.recording.name} ({dev.host}, {phase})"
        if not problems and dependent:
            what, _, _, profile = dependent[0][:4]
            out.append(
                not_tested(
                    f"{name}: profile-dependent: {what}: the truth comes from the profile "
                    f"'{profile}', which this agent does not apply (profiles "
                    f"'{snap.profiles or ''}'); such values are judged only for an agent that "
                    "applies that profile, against its own truth files (spec 4.1)",
                    req,
                )
            )
        elif problems:
            what, expected, actual = problems[0][:3]
            more = f" (+{len(problems) - 1} more, below)" if len(problems) > 1 else ""
            # Every problem is named in the evidence, not only the first.
            others = "".join(f"\n- {w}: expected {e}, got {a}" for w, e, a, *_ in problems[1:])
            snapshot = _snapshot_xml(rep, snap.identity.device_key) or ""
            out.append(
                fail(
                    f"{name}: {what}{more}",
                    req,
                    expected=expected,
                    actual=actual,
                    excerpt=(f"further problems:{others}\n\n" if others else "") + snapshot,
                )
            )
        else:
            out.append(ok(f"{name}: as the truth says", req))
    return out


@check("MS-ID-2", "MS-ID-3", "MS-ID-9", classes=CORE, role="agent")
async def device_keys_match_truth(ctx: AgentContext) -> list[Finding]:
    """Each printer's deviceKey is the key its truth file gives, whatever profiles the agent
    applies: a vendor serial of Table 3-2 is everyone's (MS-ID-9)."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]

    def judge(dev: Device, snap: Any) -> list[tuple[str, str, str]]:
        got = snap.identity.device_key
        return [] if got == dev.recording.key else [("device key", dev.recording.key, got)]

    return [f for req in ("MS-ID-2", "MS-ID-3", "MS-ID-9") for f in _per_device(ctx, req, judge)]


@check("MS-DEV-9", classes=CORE, role="agent")
async def identity_matches_truth(ctx: AgentContext) -> list[Finding]:
    """vendor, model, serial number and firmware as the truth files give them."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    fields = {
        "vendor": "vendor",
        "model": "model",
        "serial": "serial_number",
        "firmware": "firmware",
    }

    def judge(dev: Device, snap: Any) -> list[tuple[str, str, str]]:
        out = []
        for t_name, attr in fields.items():
            if t_name in dev.recording.truth:
                want, got = str(dev.recording.truth[t_name]), getattr(snap.identity, attr)
                if want != (got or ""):
                    # the serial is Table 3-2's (MS-ID-9); the others a profile's (spec 4.1)
                    source = None if t_name == "serial" else unapplied(dev, snap)
                    out.append((f"identity {attr}", want, str(got), source))
        return out

    return _per_device(ctx, "MS-DEV-9", judge)


def _series(c: Any) -> tuple[str, ...]:
    """A counter's series identity (MS-BILL-1); an absent attribute counts as absent."""
    return tuple(
        "" if v is None else str(v)
        for v in (_name(c.kind), _name(c.unit), c.oid, c.source, c.label, c.marker)
    )


def _series_problems(dev: Device, snap: Any) -> dict[str, list[tuple[str, str, str]]]:
    probs: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    twice = [k for k, n in Counter(_series(c) for c in snap.counter).items() if n > 1]
    for k in twice:
        probs["MS-BILL-2"].append((f"two counters of one series {'/'.join(k)}", "one", "two"))
    # Counters of the truth that share an OID (vendor records) stay apart: each its own value.
    shared: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for t in dev.recording.counters():
        shared[(str(t["oid"]), str(t["source"]))].append(t)
    for (oid, source), ts in shared.items():
        if len(ts) < 2:
            continue
        got = {_series(c) for c in snap.counter if (c.oid, c.source) == (oid, source)}
        if len(got) < len(ts):
            probs["MS-BILL-1"].append(
                (f"{len(ts)} counters at {oid} ({source})", f"{len(ts)} series", str(len(got)),
                 source)
            )  # fmt: skip
    return probs


@check("MS-BILL-1", "MS-BILL-2", classes=CORE, role="agent")
async def counter_series_kept_apart(ctx: AgentContext) -> list[Finding]:
    """Counters of different series stay apart, and no series appears twice in a snapshot."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    out: list[Finding] = []
    for req in ("MS-BILL-1", "MS-BILL-2"):
        out += _per_device(ctx, req, lambda d, s, r=req: _series_problems(d, s).get(r, []))
    return out


@check("MS-DEV-4", classes=CORE, role="agent")
async def profiles_match_truth(ctx: AgentContext) -> list[Finding]:
    """The snapshot's profiles attribute names the profiles the truth file expects."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]

    def judge(dev: Device, snap: Any) -> list[tuple[str, ...]]:
        truth = str(dev.recording.truth.get("profiles", ""))
        want, got = truth.split(), applied(snap)
        # every profile a value names as its source was applied, so `profiles` names it
        sources = {x.source for x in [*snap.counter, *snap.supply] if x.source}
        if unnamed := sorted(sources - set(got)):
            return [(f"profiles without {', '.join(unnamed)}", "every source", snap.profiles)]
        if not want or set(want) == set(got):
            return []
        if "standard" in want and got[:1] != ["standard"]:
            return [("profiles: standard first", truth, snap.profiles or "")]
        # Profile names are the agent's own: judged only when it applies the truth's.
        return [("profiles", truth, snap.profiles or "", unapplied(dev, snap))]

    return _per_device(ctx, "MS-DEV-4", judge)


def _counter_problems(dev: Device, snap: Any) -> dict[str, list[tuple[str, str, str]]]:
    probs: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for t in dev.recording.counters():
        label = f"counter {t['kind']} {t['oid']} ({t['source']})"
        same = [c for c in snap.counter if (c.oid, c.source) == (str(t["oid"]), str(t["source"]))]
        # One OID may carry several counters (Brother's binary records): match the kind (and
        # the label, where the truth gives one) first.
        c = next(
            (x for x in same if _name(x.kind) == t["kind"] and t.get("label") in (None, x.label)),
            None,
        ) or next((x for x in same if _name(x.kind) == t["kind"]), same[0] if same else None)
        if c is None:
            have = ", ".join(f"{_name(x.kind)}@{x.oid}" for x in snap.counter) or "no counters"
            probs["MS-DEV-12"].append((f"{label} missing", label, have, str(t["source"])))
            continue
        if _name(c.kind) != t["kind"]:
            probs["MS-DEV-10"].append((f"{label}: kind", str(t["kind"]), _name(c.kind)))
        if int(c.value) != int(t["value"]):
            probs["MS-DEV-11"].append((f"{label}: value", str(t["value"]), str(c.value)))
        if "unit" in t and _name(c.unit) != t["unit"]:
            probs["MS-DEV-11"].append((f"{label}: unit", str(t["unit"]), _name(c.unit)))
    return probs


@check("MS-DEV-10", "MS-DEV-11", "MS-DEV-12", classes=CORE, role="agent")
async def counters_match_truth(ctx: AgentContext) -> list[Finding]:
    """Every counter of the truth, by oid and source: present, kind, unit and value exact."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    out: list[Finding] = []
    for req in ("MS-DEV-10", "MS-DEV-11", "MS-DEV-12"):
        out += _per_device(ctx, req, lambda d, s, r=req: _counter_problems(d, s).get(r, []))
    return out


def _supply_problems(dev: Device, snap: Any) -> dict[str, list[tuple[str, str, str]]]:
    probs: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    got = {(int(s.index), s.source): s for s in snap.supply}
    for t in dev.recording.supplies():
        s = got.get((int(t["index"]), str(t["source"])))
        label = f"supply {t['index']} ({t['source']})"
        if s is None:
            probs["MS-DEV-14"].append(
                (f"{label} missing", label, f"supplies {sorted(got)}", str(t["source"]))
            )
            continue
        want = (int(t["level"]), str(t["meaning"]), int(t["max"]), str(t["max_meaning"]))
        have = (
            int(s.level.raw),
            _name(s.level.meaning),
            int(s.max_capacity.raw),
            _name(s.max_capacity.meaning),
        )
        if want != have:
            probs["MS-DEV-15"].append(
                (f"{label}: raw level/meaning, max/meaning", str(want), str(have))
            )
        over = want[1] == want[3] == "exact" and want[0] > want[2]
        if over and (want != have or s.percent is not None):
            probs["MS-DEV-16"].append(
                (
                    f"{label}: level above capacity adjusted",
                    f"{want}, no percent",
                    f"{have}, percent {s.percent}",
                )
            )
        flagged = {e.oid for e in snap.collection_error if _name(e.code) == "inconsistent"}
        if over and s.level.oid not in flagged:
            probs["MS-DEV-16"].append(
                (
                    f"{label}: level above capacity without a collectionError",
                    f"collectionError inconsistent naming {s.level.oid}",
                    f"inconsistent for {sorted(str(o) for o in flagged)}",
                )
            )
        tp = t.get("percent")
        sp = s.percent
        if tp is None and sp is not None:
            probs["MS-DEV-17"].append(
                (
                    f"{label}: percent where none is defined (level "
                    f"{t['level']} {t['meaning']}, max {t['max']})",
                    "no percent",
                    str(sp),
                )
            )
        elif tp is not None and (sp is None or Decimal(str(sp)) != Decimal(str(tp))):
            probs["MS-DEV-17"].append((f"{label}: percent", str(tp), str(sp)))
    return probs


@check("MS-DEV-14", "MS-DEV-15", "MS-DEV-16", "MS-DEV-17", classes=CORE, role="agent")
async def supplies_match_truth(ctx: AgentContext) -> list[Finding]:
    """Every supply of the truth: present, raw level and max with meanings, percent if defined."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    out: list[Finding] = []
    for req in ("MS-DEV-14", "MS-DEV-15", "MS-DEV-16", "MS-DEV-17"):
        out += _per_device(ctx, req, lambda d, s, r=req: _supply_problems(d, s).get(r, []))
    return out


@check("MS-DEV-8", classes=CORE, role="agent")
async def error_state_flags_match_truth(ctx: AgentContext) -> list[Finding]:
    """detectedErrorState flags are the bits set in the recording."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]

    def judge(dev: Device, snap: Any) -> list[tuple[str, str, str]]:
        if "flags" not in dev.recording.truth:
            return []
        want = sorted(dev.recording.truth["flags"])
        st = snap.status.detected_error_state if snap.status else None
        got = sorted(_name(f) for f in st.flag) if st else []
        return [] if want == got else [("detectedErrorState flags", str(want), str(got))]

    return _per_device(ctx, "MS-DEV-8", judge)


@check("MS-DEV-22", classes=CORE, role="agent")
async def alerts_match_truth(ctx: AgentContext) -> list[Finding]:
    """One alert per prtAlertTable row, with its raw code."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]

    def judge(dev: Device, snap: Any) -> list[tuple[str, str, str]]:
        if "alert_codes" not in dev.recording.truth:
            return []
        want = sorted(int(c) for c in dev.recording.truth["alert_codes"])
        got = sorted(int(a.code.raw) for a in snap.alert)
        return [] if want == got else [("alert codes", str(want), str(got))]

    return _per_device(ctx, "MS-DEV-22", judge)


@check("MS-DEV-30", classes=CORE, role="agent")
async def collection_errors_match_truth(ctx: AgentContext) -> list[Finding]:
    """What could not be read is reported as collectionError with the right codes."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]

    def judge(dev: Device, snap: Any) -> list[tuple[str, str, str]]:
        if "errors" not in dev.recording.truth:
            return []
        want = sorted(set(dev.recording.truth["errors"]))
        got = sorted({_name(e.code) for e in snap.collection_error})
        return [] if want == got else [("collectionError codes", str(want), str(got))]

    return _per_device(ctx, "MS-DEV-30", judge)


# --- identity over time ------------------------------------------------------------------


@check("MS-ID-6", "MS-ID-4", "MS-ID-1", classes=CORE, role="agent")
async def identity_kept_after_move(ctx: AgentContext) -> list[Finding]:
    """A printer found at a new address is reported under its existing key."""
    if ctx.move is None:
        return [not_tested("the walks have no <name>_moved recording")]
    if (f := _phase_missing(ctx, "changes")) is not None:
        return [f]
    before, after = ctx.move
    if not ctx.reached.get("changes"):
        got = snapshot_for(ctx, after, "changes")
        if got is None:
            return [
                fail(
                    f"the printer moved from {before.host} to {after.host} was never "
                    "reported at its new address",
                    expected=f"{after.recording.key} at {after.host}",
                    actual="nothing",
                    excerpt=ctx.agent_log(),
                )
            ]
    old = snapshot_for(ctx, before, "baseline")
    new = snapshot_for(ctx, after, "changes")
    if old is None or new is None:
        return [fail("the printer was not reported both before and after its move")]
    k0, k1 = old[0].identity.device_key, new[0].identity.device_key
    if k0 != k1:
        return [
            fail(
                f"after moving from {before.host} to {after.host} the printer got a new key",
                expected=k0,
                actual=k1,
                excerpt=_snapshot_xml(new[1], k1),
            )
        ]
    return [ok(f"{k0} kept when it moved from {before.host} to {after.host}")]


@check("MS-DEV-13", classes=CORE, role="agent")
async def counter_decrease_flagged(ctx: AgentContext) -> list[Finding]:
    """A counter lower than the last one sent carries anomaly="decreased" and the previous value."""
    if ctx.swap is None:
        return [not_tested("the walks have no <prefix>_before/<prefix>_after pair")]
    if (f := _phase_missing(ctx, "changes")) is not None:
        return [f]
    before, after = ctx.swap
    key = before.recording.key
    # The snapshots of the device in creation order (sequence), each report once.
    seen: dict[str, Received] = {}
    for r in ctx.rec.reports():
        seen.setdefault(r.report_id, r)  # type: ignore[arg-type]
    ordered = sorted(seen.values(), key=lambda r: r.sequence or 0)
    last: dict[tuple[str, str], int] = {}
    out: list[Finding] = []
    for r in ordered:
        for d in r.obj.device:
            if d.identity.device_key != key:
                continue
            for c in d.counter:
                p = last.get((c.oid, c.source))
                last[(c.oid, c.source)] = int(c.value)
                if p is None or int(c.value) >= p:
                    continue
                anomaly = _name(c.anomaly) if c.anomaly is not None else None
                if anomaly != "decreased" or c.previous is None or int(c.previous) != p:
                    out.append(
                        fail(
                            f"counter {c.oid} went from {p} to {c.value} without the anomaly",
                            expected=f'anomaly="decreased" previous="{p}"',
                            actual=f"anomaly={anomaly} previous={c.previous}",
                            excerpt=_snapshot_xml(r, key),
                        )
                    )
                else:
                    out.append(ok(f"counter {c.oid}: {p} → {c.value} flagged decreased"))
    return out or [fail("no counter of the swapped printer went down; the swap was not seen")]


# --- no server ---------------------------------------------------------------------------


@check("MS-CONF-2", classes=CORE, role="agent")
async def agent_holds_no_listening_socket(ctx: AgentContext) -> list[Finding]:
    """No TCP listener and no UDP socket on a fixed port (other than 162) in the agent's tree."""
    if ctx.inspected == 0:
        return [fail("the agent's process was never seen running", excerpt=ctx.agent_log())]
    if ctx.listening:
        return [
            fail(
                f"listening: {', '.join(str(x) for x in ctx.listening[:5])}",
                expected="no listening socket",
                actual=str(ctx.listening[0]),
            )
        ]
    return [
        ok(f"no listening socket in {ctx.inspected} inspections of {len(ctx.pids_seen)} processes")
    ]


# The other agent check modules register on import (one module per concern).
from metersync_conformance.agent.checks import (  # noqa: E402, F401
    devices,
    documents,
    fringe,
    walk,
)
