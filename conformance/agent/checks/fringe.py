"""Agent checks of the hard cases (agent_harness.FRINGE): scripted answers to report posts,
credentials in a bad order, a range with an exclusion, a non-printer, a printer that spends its
budget, and outbox retention limits after a re-provisioning."""

from __future__ import annotations

from collections import Counter

from metersync_conformance.agent.checks.core import (
    CORE,
    HTTP,
    _excerpt,
    _name,
    _needs_reports,
    _phase_missing,
    _snapshot_xml,
)
from metersync_conformance.agent.harness import (
    LIMIT_REPORTS,
    REPLACED,
    REPLACED_KEY,
    SLOW_KEY,
    AgentContext,
)
from metersync_conformance.peers import answers
from metersync_conformance.peers.manager import Received
from metersync_conformance.registry import Finding, check, fail, not_tested, ok

HTTP_TOLERANCE = 1.0  # seconds, around the provisioned HTTP timeout


def _judge_answers(ctx: AgentContext, wanted: set[str]) -> list[Finding]:
    if (f := _phase_missing(ctx, "answers")) is not None:
        return [f]
    t0 = ctx.phase("answers")[0]
    posts = [r for r in ctx.rec.reports() if r.t >= t0]
    out: list[Finding] = []
    played = [r for r in posts if r.script and r.script != "accept"]
    names = ctx.setup.script or answers.DEFAULT
    for name, req in answers.REQUIREMENT.items():
        if req not in wanted:
            continue
        if name not in names:
            out.append(not_tested(f"answer {name!r} was not part of this run", req))
            continue
        hit = [r for r in played if r.script == name]
        if not hit:
            out.append(
                fail(f"answer {name!r} was never played (the agent sent too few reports)", req)
            )
            continue
        first = hit[0]
        again = [r for r in posts if r.t > first.t and r.report_id == first.report_id]
        expect = answers.EXPECT[name]
        label = f"after answer {name!r} to report {first.sequence}"
        if expect == "retry" and not again:
            out.append(fail(f"{label}: never sent again (taken as delivered or refused)", req))
        elif expect == "retry" and again[0].body != first.body:
            out.append(fail(f"{label}: sent again with other bytes", req))
        elif expect != "retry" and again:
            out.append(
                fail(
                    f"{label}: sent again {again[0].t - first.t:.1f} s later",
                    req,
                    expected="never again" if expect == "delivered" else "rejected area",
                    actual=f"{len(again)} more posts",
                )
            )
        else:
            gap = f", again after {again[0].t - first.t:.1f} s" if again else ""
            out.append(ok(f"{label}: {expect}{gap}", req))
        if name == "slow" and again:
            timeout = ctx.setup.http_timeout
            gap = again[0].t - first.t
            if gap < timeout - HTTP_TOLERANCE or gap >= answers.HOLD_SECONDS:
                out.append(
                    fail(
                        f"the held request was given up after {gap:.1f} s",
                        req,
                        expected=f"{timeout} s (transports/http/timeout)",
                        actual=f"{gap:.1f} s",
                    )
                )
    strays = [p for _, _, p in ctx.rec.strays]
    for name, path, req in (
        ("redirect", answers.ELSEWHERE, "MS-HTTP-15"),
        ("doctype", answers.XXE_PATH, "MS-XML-8"),
    ):
        if req in wanted and name in names:
            went = [p for p in strays if p.endswith(path)]
            out.append(
                fail(f"the agent fetched {went[0]} named by answer {name!r}", req)
                if went
                else ok(f"nothing fetched from {path} (answer {name!r})", req)
            )
    return out


_CORE_ANSWERS = {r for r in answers.REQUIREMENT.values() if not r.startswith("MS-HTTP")}


@check(*sorted(_CORE_ANSWERS | {"MS-XML-8"}), classes=CORE, role="agent", timeout=30)
async def answers_handled_as_table_11_1(ctx: AgentContext) -> list[Finding]:
    """Receipts (duplicate, prefixed, extended) end a report; refusals park it; anything
    unreadable, unsafe, of another version or too deep is a failed attempt."""
    return _judge_answers(ctx, _CORE_ANSWERS | {"MS-XML-8"})


@check("MS-HTTP-10", "MS-HTTP-14", "MS-HTTP-15", classes=HTTP, role="agent", timeout=30)
async def http_answers_judged(ctx: AgentContext) -> list[Finding]:
    """A receipt for another report or agent is no receipt; a held request is abandoned after
    the HTTP timeout; a redirect is not followed."""
    return _judge_answers(ctx, {"MS-HTTP-10", "MS-HTTP-14", "MS-HTTP-15"})


def _fringe(ctx: AgentContext) -> Finding | None:
    if not ctx.setup.fringe:
        return not_tested("this run had no wrong credentials, exclusions or odd devices")
    return _needs_reports(ctx)


@check("MS-SNMP-1", "MS-SNMP-4", "MS-DEV-4", classes=CORE, role="agent")
async def first_answering_credential_used(ctx: AgentContext) -> list[Finding]:
    """The device answers the first credential that works in document order, and polls use it
    at once (remembered), not after the failing ones again."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    want = "1" if ctx.setup.fringe else "3" if ctx.setup.v3 else "2c"
    from metersync_conformance.agent.harness import DECOY_COMMUNITY

    decoys = ctx.relay.seen.communities.get(DECOY_COMMUNITY.encode(), 0) if ctx.relay else 0
    starts = 1 + ("limits" in ctx.phases)
    out: list[Finding] = []
    versions: dict[str, int] = {}
    for r in ctx.rec.reports():
        for d in r.obj.device:
            if d.snmp_version is None or d.identity.device_key == SLOW_KEY:
                continue
            v = _name(d.snmp_version)
            versions[v] = versions.get(v, 0) + 1
    wrong = {v: n for v, n in versions.items() if v != want}
    for req in ("MS-SNMP-1", "MS-DEV-4"):
        out.append(
            fail(f"snmpVersion {sorted(wrong)} where the first that works is v{want}", req)
            if wrong
            else ok(f"{sum(versions.values())} snapshots with snmpVersion {want}", req)
        )
    if not ctx.setup.fringe:
        out.append(not_tested("one credential only in this run", "MS-SNMP-4"))
    elif wrong:
        out.append(fail(f"answered by {sorted(wrong)}, not the first that works", "MS-SNMP-4"))
    elif ctx.relay is None:
        out.append(not_tested("no printer behind the relay: remembering not observed", "MS-SNMP-4"))
    elif decoys > starts:
        out.append(
            fail(
                f"the wrong community reached the printer {decoys} times in {starts} agent "
                "start(s): polls did not try the remembered credential first",
                "MS-SNMP-4",
                expected=f"at most {starts} (one discovery per start)",
                actual=str(decoys),
            )
        )
    elif decoys == 0:
        out.append(
            fail(
                "the wrong community (second in document order) was never tried before the "
                "working v1 community (third)",
                "MS-SNMP-4",
            )
        )
    else:
        out.append(
            ok(
                f"credentials in document order (the wrong community {decoys}× in {starts} "
                "start(s)), v1 answered and was tried first at every poll",
                "MS-SNMP-4",
            )
        )
    return out


@check("MS-SNMP-5", "MS-SNMP-6", "MS-SNMP-7", classes=CORE, role="agent")
async def budget_and_wrong_v3_bounded(ctx: AgentContext) -> list[Finding]:
    """No poll outlasts the device budget (a wrong SNMPv3 key included); the slow printer's
    poll ends with budget-exceeded, keeping what it read."""
    if (f := _fringe(ctx)) is not None:
        return [f]
    budget_ms = ctx.setup.snmp[2] * 1000
    out: list[Finding] = []
    over = [
        (d, r)
        for r in ctx.rec.reports()
        for d in r.obj.device
        if d.duration_ms is not None and d.duration_ms > budget_ms + 1500
    ]
    if over:
        d, r = over[0]
        msg = f"a poll of {d.identity.device_key} took {d.duration_ms} ms, budget {budget_ms} ms"
        out += [fail(msg, req, excerpt=_snapshot_xml(r, d.identity.device_key))
                for req in ("MS-SNMP-5", "MS-SNMP-6", "MS-SNMP-7")]  # fmt: skip
        return out
    out.append(ok("with a wrong SNMPv3 user first, every poll within the budget", "MS-SNMP-5"))
    slow = [
        (d, r) for r in ctx.rec.reports() for d in r.obj.device if d.identity.device_key == SLOW_KEY
    ]
    if not slow and "limits" not in ctx.planned:
        msg = "the slow printer is served only in phase limits, not part of this run"
        return out + [not_tested(msg, "MS-SNMP-6"), not_tested(msg, "MS-SNMP-7")]
    if not slow:
        msg = "the slow printer was never reported"
        return out + [fail(msg, "MS-SNMP-6", excerpt=ctx.agent_log()),
                      fail(msg, "MS-SNMP-7", excerpt=ctx.agent_log())]  # fmt: skip
    d, r = slow[-1]
    codes = {_name(e.code) for e in d.collection_error}
    out.append(
        ok(f"slow printer polled in {d.duration_ms} ms: {sorted(codes)}", "MS-SNMP-6")
        if d.duration_ms is not None and d.duration_ms <= budget_ms + 1500
        else fail(f"slow printer poll took {d.duration_ms} ms", "MS-SNMP-6")
    )
    kept = d.identity.sys_name == "slow"
    out.append(
        ok("slow printer: budget-exceeded, identity read before it kept", "MS-SNMP-7")
        if "budget-exceeded" in codes and kept
        else fail(
            "slow printer: no budget-exceeded, or what was read was dropped",
            "MS-SNMP-7",
            expected="budget-exceeded and sysName 'slow'",
            actual=f"{sorted(codes)}, sysName {d.identity.sys_name!r}",
            excerpt=_snapshot_xml(r, SLOW_KEY),
        )
    )
    return out


@check("MS-SNMP-14", "MS-SNMP-15", "MS-PRV-3", "MS-PRV-1", classes=CORE, role="agent")
async def targets_as_provisioned(ctx: AgentContext) -> list[Finding]:
    """A range minus an excluded address: every printer in it reported, the excluded address
    never sent a packet, the router in the range never reported."""
    if (f := _fringe(ctx)) is not None:
        return [f]
    out: list[Finding] = []
    snaps = [d for r in ctx.rec.reports() for d in r.obj.device]
    hosts = {d.identity.ip_address for d in snaps}
    assert ctx.excluded is not None
    if ctx.not_printer in hosts:
        out.append(fail(f"the device at {ctx.not_printer} (a router) was reported", "MS-SNMP-14"))
    else:
        out.append(ok(f"the router at {ctx.not_printer} was not reported", "MS-SNMP-14"))
    ex = ctx.excluded[0]
    if ctx.excluded_hits or ex in hosts:
        msg = f"{ctx.excluded_hits} datagrams sent to the excluded {ex}"
        out += [fail(msg, "MS-SNMP-15"), fail(msg, "MS-PRV-3")]
    else:
        out.append(ok(f"no packet to the excluded {ex}", "MS-SNMP-15"))
        missing = [d.host for d in ctx.devices if d.host not in hosts]
        out.append(
            fail(f"printers in the range not reported: {missing}", "MS-PRV-3")
            if missing
            else ok(
                f"range expanded: {len(ctx.devices)} printers reported, exclusion kept", "MS-PRV-3"
            )
        )
    out.append(
        ok("configured by the Provisioning document alone: enrolled, polled, reported", "MS-PRV-1")
        if ctx.rec.accepted_reports()
        else fail("nothing delivered with the Provisioning document alone", "MS-PRV-1")
    )
    return out


def _dropped(r: Received) -> int:
    return int(r.obj.agent_status.dropped_reports or 0)


@check("MS-DEL-13", "MS-DEL-14", "MS-PRV-8", "MS-PRV-2", "MS-PRV-5", classes=CORE, role="agent")
async def retention_limits_after_reprovisioning(ctx: AgentContext) -> list[Finding]:
    """Re-provisioned with outbox/maxReports 1 during an outage: the oldest unsent reports are
    dropped, only as many as needed, counted in droppedReports; identity and sequence kept."""
    if (f := _phase_missing(ctx, "limits")) is not None:
        return [f]
    if (f := _phase_missing(ctx, "recovery")) is not None:
        return [f]
    reports = ctx.rec.reports()
    t_lim = ctx.phase("limits")[0]
    t_rec = ctx.phase("recovery")[0]
    first: dict[str, Received] = {}
    for r in reports:
        first.setdefault(r.report_id, r)  # type: ignore[arg-type]
    refused = {
        r.report_id
        for r in reports
        if r.answer_kind.startswith("Error") or answers.EXPECT.get(r.script or "") == "refused"
    }
    delivered = {r.report_id for r in reports if r.answer_kind in ("accepted", "duplicate")}
    delivered |= {r.report_id for r in reports if answers.EXPECT.get(r.script or "") == "delivered"}
    seqs = {r.sequence for r in first.values()}
    top = max(s for s in seqs if s is not None)
    never_seen = set(range(1, top + 1)) - seqs
    posted_lost = {first[i].sequence for i in first if i not in delivered and i not in refused}
    lost = sorted(never_seen | {s for s in posted_lost if s is not None})
    after = [r for r in ctx.rec.accepted_reports() if r.t >= t_rec]
    dropped = max((_dropped(r) for r in after), default=0)
    out: list[Finding] = []
    kept_after = sorted(
        r.sequence for r in first.values() if r.t >= t_rec and r.report_id in delivered
    )
    if dropped == 0:
        out.append(fail(f"no report was dropped though {LIMIT_REPORTS} were allowed", "MS-DEL-13",
                        excerpt=ctx.agent_log()))  # fmt: skip
    elif lost and kept_after and max(lost) > min(kept_after):
        out.append(
            fail(
                f"report {max(lost)} was dropped while older report {min(kept_after)} was kept",
                "MS-DEL-13",
                expected="the oldest dropped first",
            )
        )
    else:
        out.append(ok(f"{len(lost)} oldest reports dropped, {dropped} counted", "MS-DEL-13"))
    # A report whose answer the agent gave up waiting for (the held "slow" answer) was stored
    # by the manager, yet is unsent for the agent: dropping it may be counted too.
    unsure = {r.report_id for r in reports if r.script == "slow"}
    out.append(
        ok(f"droppedReports {dropped}; reports never delivered: {len(lost)}", "MS-DEL-14")
        if len(lost) <= dropped <= len(lost) + len(unsure) and dropped > 0
        else fail(
            "droppedReports does not count the reports that never arrived",
            "MS-DEL-14",
            expected=f"{len(lost)} (sequences {lost[:10]})",
            actual=str(dropped),
        )
    )
    before = [r for r in reports if r.t < t_lim]
    later = [r for r in reports if r.t >= t_lim]
    agents = {r.obj.agent_id for r in reports}
    re_enrolled = [r for r in ctx.rec.received if r.kind == "Enrollment" and r.t >= t_lim]
    new_seq = [r.sequence or 0 for r in later if r.report_id not in {b.report_id for b in before}]
    old_top = max((r.sequence or 0 for r in before), default=0)
    if len(agents) > 1 or re_enrolled or (new_seq and min(new_seq) <= old_top):
        out.append(
            fail(
                "after re-provisioning: agent id, enrollment or sequence not kept",
                "MS-PRV-8",
                actual=f"agents {sorted(agents)}, enrollments {len(re_enrolled)}, "
                f"sequences from {min(new_seq, default=0)} (before: up to {old_top})",
            )
        )
    else:
        out.append(
            ok("re-provisioned: same agent id, no new enrollment, sequence continued", "MS-PRV-8")
        )
    for req in ("MS-PRV-2", "MS-PRV-5"):
        out.append(
            ok(
                f"{len(ctx.provisioned)} Provisioning documents taken from a file; outbox/"
                f"maxReports {LIMIT_REPORTS} applied",
                req,
            )  # fmt: skip
            if dropped > 0
            else fail("the second Provisioning document's outbox limit had no effect", req)
        )
    return out


@check("MS-ID-5", classes=CORE, role="agent")
async def other_serial_is_other_device(ctx: AgentContext) -> list[Finding]:
    """Another serial number at a known address is another device: its own key, no counter
    baseline (no decrease) carried over from the printer that was there."""
    if (f := _phase_missing(ctx, "limits")) is not None:
        return [f]
    if ctx.replaced is None:
        return [not_tested(f"no {REPLACED[0]} printer to replace in this run")]
    t0 = ctx.phase("limits")[0]
    # The printer also answering at a second address (MS-ID-8) may be reported at that one.
    twin = ctx.twin[0] if ctx.twin and ctx.twin[1].host == ctx.replaced else None
    addrs = {ctx.replaced, twin} - {None}
    snaps = [
        (d, r)
        for r in ctx.rec.reports()
        if r.t >= t0
        for d in r.obj.device
        if d.identity.ip_address in addrs and d.identity.serial_number == REPLACED[2]
    ]
    if not snaps:
        return [
            fail(
                f"the replacing printer at {' or '.join(sorted(addrs))} was never reported",
                excerpt=ctx.agent_log(),
            )
        ]
    d, r = snaps[0]
    if d.identity.device_key != REPLACED_KEY:
        return [
            fail(
                "another serial number at the same address kept the old device's key",
                expected=REPLACED_KEY,
                actual=d.identity.device_key,
                excerpt=_snapshot_xml(r, d.identity.device_key),
            )
        ]
    carried = [c for c in d.counter if c.anomaly is not None or c.previous is not None]
    if carried:
        return [
            fail(
                "the new device's counter was compared with the old device's baseline",
                expected="no anomaly, no previous",
                actual=f"anomaly={_name(carried[0].anomaly)} previous={carried[0].previous}",
                excerpt=_snapshot_xml(r, REPLACED_KEY),
            )
        ]
    return [ok(f"{REPLACED_KEY} at {ctx.replaced}: a new key, no baseline carried over")]


__all__ = ["_excerpt"]


@check("MS-SNMP-9", "MS-SNMP-11", "MS-SNMP-15", classes=CORE, role="agent")
async def snmp_requests_seen_by_the_relay(ctx: AgentContext) -> list[Finding]:
    """At the relayed printer: no SET, one outstanding request at a time, walks by GETBULK
    (max-repetitions at most 25) over v2c and by GETNEXT over v1."""
    if ctx.relay is None:
        return [not_tested("no printer of this run was behind the relay")]
    seen = ctx.relay.seen
    if not seen.requests:
        return [fail("the relayed printer never received a request", excerpt=ctx.agent_log())]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(seen.requests.items()))
    out: list[Finding] = []
    out.append(
        fail(f"SET requests sent: {counts}", "MS-SNMP-15")
        if seen.requests.get("set")
        else ok(f"no SET among the requests ({counts})", "MS-SNMP-15")
    )
    out.append(
        fail(f"{seen.most_outstanding} requests outstanding at once to one printer", "MS-SNMP-9")
        if seen.most_outstanding > 1
        else ok("at most one request outstanding to the printer at a time", "MS-SNMP-9")
    )
    v1 = 0 in seen.versions
    if v1 and seen.requests.get("getbulk"):
        out.append(fail("GETBULK over SNMPv1", "MS-SNMP-11"))
    elif not v1 and seen.requests.get("getnext"):
        out.append(fail(f"GETNEXT walks over SNMPv2c ({counts})", "MS-SNMP-11"))
    elif seen.max_repetitions > 25:
        out.append(fail(f"max-repetitions {seen.max_repetitions}", "MS-SNMP-11"))
    else:
        how = "GETNEXT (v1)" if v1 else f"GETBULK, max-repetitions {seen.max_repetitions}"
        out.append(ok(f"walks by {how}", "MS-SNMP-11"))
    return out


@check("MS-SNMP-3", classes=CORE, role="agent")
async def trap_content_not_reported(ctx: AgentContext) -> list[Finding]:
    """A trap sent to UDP 162 during the run: its content never appears in a report."""
    if not ctx.trap_payload:
        return [not_tested("no trap was sent in this run")]
    for r in ctx.rec.reports():
        if ctx.trap_payload in r.body:
            return [fail("a trap's content was reported", excerpt=_excerpt(r))]
    return [ok(f"trap content absent from {len(ctx.rec.reports())} reports; polls went on")]


@check("MS-PRV-7", "MS-PRV-2", classes=CORE, role="agent")
async def bad_provisioning_refused(ctx: AgentContext) -> list[Finding]:
    """No transport, plain http to a remote host, an invalid document: refused with the code,
    nothing sent."""
    if not ctx.refusals:
        return [not_tested("no bad Provisioning document was given in this run")]
    out: list[Finding] = []
    for name, code, rc, text, sent in sorted(ctx.refusals):
        req = "MS-PRV-2" if code == "1008" else "MS-PRV-7"
        if rc is None or rc == 0 or sent:
            out.append(
                fail(
                    f"document {name!r} not refused: exit {rc}, {sent} requests sent",
                    req,
                    excerpt=text,
                )
            )
        elif code not in text:
            out.append(fail(f"document {name!r} refused without naming {code}", req, excerpt=text))
        else:
            out.append(ok(f"document {name!r} refused with {code}, nothing sent", req))
    return out


@check("MS-HTTP-11", classes=HTTP, role="agent")
async def plain_http_to_remote_refused(ctx: AgentContext) -> list[Finding]:
    """A manager URL with http:// to a host that is not loopback is refused (3001).

    TLS versions and certificate verification are checked by the TLS run (agent/checks/tls.py)."""
    got = [x for x in ctx.refusals if x[0] == "plain-http-remote"]
    if not got:
        return [not_tested("no http:// URL to a remote host was given in this run")]
    _, code, rc, text, sent = got[0]
    if rc is None or rc == 0 or sent or code not in text:
        return [fail(f"not refused with {code}: exit {rc}, {sent} requests", excerpt=text)]
    return [ok("http:// to a non-loopback manager refused with 3001")]


@check("MS-HTTP-13", classes=HTTP, role="agent")
async def requests_through_the_proxy(ctx: AgentContext) -> list[Finding]:
    """With manager/proxy set, every request goes through that proxy, with its login."""
    import base64

    from metersync_conformance.agent.harness import PROXY_LOGIN
    from metersync_conformance.peers.proxy import MARK

    if ctx.proxy is None:
        return [not_tested("no proxy was provisioned in this run")]
    direct = [r for r in ctx.rec.received if MARK.lower() not in r.headers]
    if direct:
        return [
            fail(
                f"{len(direct)} of {len(ctx.rec.received)} requests reached the manager "
                "without the proxy",
                excerpt=_excerpt(direct[0]),
            )
        ]
    want = "Basic " + base64.b64encode(":".join(PROXY_LOGIN).encode()).decode()
    bad = [line for line, auth in ctx.proxy.log.requests if auth != want]
    if bad:
        return [fail(f"request {bad[0]!r} without the proxy login", expected=want)]
    return [ok(f"all {len(ctx.rec.received)} requests through the proxy, with its login")]


@check("MS-ID-8", classes=CORE, role="agent")
async def one_snapshot_for_two_addresses(ctx: AgentContext) -> Finding:
    """A printer answering at two addresses in the range is reported once per poll cycle: no
    two reports of one cycle (same agentStatus/lastCycle) hold a snapshot of its key."""
    if (f := _fringe(ctx)) is not None:
        return f
    if ctx.twin is None:
        return not_tested("no printer was served at two addresses")
    twin, dev = ctx.twin
    addrs = {twin, dev.host}
    # One entry per report (a resent report counts once), grouped by the cycle it reports.
    cycles: dict[tuple[str, ...], dict[str, Received]] = {}
    for r in ctx.rec.reports():
        st = r.obj.agent_status
        last = st.last_cycle
        cycle = (
            (str(st.started_at), str(last.started_at), str(last.finished_at))
            if last
            else (r.report_id,)
        )
        cycles.setdefault(cycle, {})[r.report_id] = r
    # The scenario later replaces that printer (another serial number): judged per key.
    carrying: Counter[str] = Counter()
    for cycle, reports in cycles.items():
        seen: Counter[str] = Counter()
        for r in reports.values():
            seen.update(
                d.identity.device_key for d in r.obj.device if d.identity.ip_address in addrs
            )
        for key, n in seen.items():
            if n > 1:
                where = [
                    r
                    for r in reports.values()
                    if key in {d.identity.device_key for d in r.obj.device}
                ]
                msg = (
                    f"{n} snapshots of {key} for the poll cycle started {cycle[1]} "
                    f"(reports {', '.join(str(r.sequence) for r in where)})"
                )
                return fail(
                    msg, expected="one snapshot per cycle", excerpt=_snapshot_xml(where[-1], key)
                )
        carrying.update(seen)
    if not carrying:
        return fail(f"the printer served at {sorted(addrs)} was never reported")
    shown = ", ".join(f"{k} in {n}" for k, n in sorted(carrying.items()))
    return ok(f"served at {sorted(addrs)}: one snapshot per poll cycle ({shown} cycles)")
