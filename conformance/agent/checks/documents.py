"""Agent checks on the documents and requests themselves: encoding, namespace, version,
identifiers, time zones, agent status, schedule, base path, gzip, secrets, extensions."""

from __future__ import annotations

import re
import statistics
import uuid
from typing import Any

from lxml import etree

from metersync_conformance.agent.checks.core import (
    CORE,
    HTTP,
    _excerpt,
    _name,
    _needs_reports,
    _sig_finding,
)
from metersync_conformance.agent.harness import AgentContext
from metersync_conformance.peers.manager import BASE_PATH, Received
from metersync_conformance.registry import Finding, check, fail, not_tested, ok

NS = "urn:metersync:v1"
MAX_BYTES = 16 * 1024 * 1024
_DATETIME = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)([^<\"']{0,6})")
_ZONE = re.compile(rb"^(Z|[+-]\d\d:\d\d)")
_ENCODING = re.compile(rb"""^<\?xml[^>]*encoding\s*=\s*["']([^"']+)["']""")


def _docs(ctx: AgentContext) -> list[Received]:
    return [r for r in ctx.rec.received if r.body]


def _root(item: Received) -> Any:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(item.body, parser)


@check(
    "MS-XML-1",
    "MS-XML-2",
    "MS-VER-1",
    "MS-MSG-2",
    "MS-VER-3",
    "MS-LIM-1",
    "MS-LIM-3",
    "MS-LIM-4",
    classes=CORE,
    role="agent",
)
async def documents_are_v1_utf8(ctx: AgentContext) -> list[Finding]:
    """UTF-8 without BOM, root in urn:metersync:v1 with version 1.0, within the size limit.

    Occurrence and text-length limits (MS-LIM-3, MS-LIM-4) and the absence of elements of a
    later minor version (MS-VER-3) follow from validity against the 1.0 XSD, judged here on the
    same documents (MS-XML-9 reports any invalid one)."""
    docs = _docs(ctx)
    if not docs:
        return [fail("the agent sent nothing", excerpt=ctx.agent_log())]
    probs: dict[str, list[tuple[str, Received]]] = {}

    def bad(req: str, what: str, item: Received) -> None:
        probs.setdefault(req, []).append((what, item))

    for d in docs:
        body = d.body
        if body[:3] == b"\xef\xbb\xbf" or body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            bad("MS-XML-2", "starts with a byte order mark", d)
        enc = _ENCODING.match(body)
        if enc and enc.group(1).decode("ascii", "replace").lower() not in ("utf-8", "utf8"):
            bad("MS-XML-2", f"declares encoding {enc.group(1)!r}", d)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad("MS-XML-2", f"not UTF-8: {exc}", d)
        if len(body) > MAX_BYTES:
            bad("MS-LIM-1", f"{len(body)} bytes", d)
        try:
            root = _root(d)
        except etree.XMLSyntaxError as exc:
            bad("MS-XML-1", f"not well-formed: {exc}", d)
            continue
        if etree.QName(root).namespace != NS:
            bad("MS-XML-1", f"root in namespace {etree.QName(root).namespace}", d)
            bad("MS-VER-1", f"root in namespace {etree.QName(root).namespace}", d)
        if root.get("version") != "1.0":
            bad("MS-MSG-2", f"version={root.get('version')!r}", d)
            bad("MS-VER-1", f"version={root.get('version')!r}", d)
        if d.problem:
            for req in ("MS-VER-3", "MS-LIM-3", "MS-LIM-4"):
                bad(req, f"refused at the XML edge: {d.problem}", d)
    out: list[Finding] = []
    for req in ctx_reqs(documents_are_v1_utf8):
        if req in probs:
            what, item = probs[req][0]
            out.append(
                fail(
                    f"{len(probs[req])} document(s): {what}",
                    req,
                    excerpt=_excerpt(item),
                )
            )
        else:
            out.append(ok(f"all {len(docs)} documents: UTF-8, urn:metersync:v1, version 1.0", req))
    return out


def ctx_reqs(fn: Any) -> tuple[str, ...]:
    from metersync_conformance.registry import REGISTRY

    return REGISTRY[fn.__name__].requirements


def _uuid_ok(value: str) -> bool:
    try:
        u = uuid.UUID(value)
    except (ValueError, TypeError):
        return False
    return str(u) == value and u.version in (4, 7)


@check("MS-MSG-4", classes=CORE, role="agent")
async def identifiers_are_uuids(ctx: AgentContext) -> list[Finding]:
    """reportId, Enrollment messageId and agentId: random (v4) or time-ordered (v7) UUIDs."""
    items = [r for r in ctx.rec.received if r.kind in ("Report", "Enrollment")]
    if not items:
        return [fail("the agent sent no Report or Enrollment", excerpt=ctx.agent_log())]
    for r in items:
        ids = [r.obj.agent_id, r.obj.report_id if r.kind == "Report" else r.obj.message_id]
        for value in ids:
            if not _uuid_ok(value):
                return [
                    fail(
                        f"{r.kind} identifier {value!r} is not a lower-case v4/v7 UUID",
                        excerpt=_excerpt(r),
                    )
                ]
    return [ok(f"{len(items)} documents: every id a canonical v4/v7 UUID")]


@check("MS-MSG-3", "MS-DEV-2", classes=CORE, role="agent")
async def times_have_zones(ctx: AgentContext) -> list[Finding]:
    """Every date-time has a time zone; polledAt precedes createdAt by at most the poll."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    out: list[Finding] = []
    naked = []
    for r in _docs(ctx):
        for m in _DATETIME.finditer(r.body):
            if not _ZONE.match(m.group(2)):
                naked.append((m.group(0).decode("ascii", "replace"), r))
    out.append(
        fail(
            f"date-time without time zone: {naked[0][0]}", "MS-MSG-3", excerpt=_excerpt(naked[0][1])
        )
        if naked
        else ok("every date-time carries Z or an offset", "MS-MSG-3")
    )
    late = []
    n = 0
    budget = ctx.setup.snmp[2]
    for r in ctx.rec.reports():
        created = r.obj.created_at.to_datetime()
        for d in r.obj.device:
            n += 1
            polled = d.polled_at.to_datetime()
            if polled.tzinfo is None:
                late.append((f"polledAt {d.polled_at} without time zone", r))
                continue
            age = (created - polled).total_seconds()
            if age < -1 or age > budget + ctx.setup.poll_interval + 5:
                late.append((f"polledAt {d.polled_at} is {age:.0f} s before createdAt", r))
    out.append(
        fail(late[0][0], "MS-DEV-2", excerpt=_excerpt(late[0][1]))
        if late
        else ok(f"{n} snapshots: polledAt with zone, at most one poll before createdAt", "MS-DEV-2")
    )
    return out


@check("MS-MSG-12", "MS-UPD-20", "MS-UPD-23", classes=CORE, role="agent")
async def agent_status_as_running(ctx: AgentContext) -> list[Finding]:
    """agentStatus: software, startedAt, queue depth and oldest entry, dropped reports, last
    cycle, licence state (none installed: missing), channel and update mode as provisioned."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    probs: list[tuple[str, Received]] = []
    licence = set()
    channel_on = ctx.phases.get("channel", (float("inf"), None))[0]  # re-provisioned: on
    for r in ctx.rec.reports():
        st = r.obj.agent_status
        created = r.obj.created_at.to_datetime()
        if st.software is None or not st.software.product:
            probs.append(("no software", r))
        if st.started_at.to_datetime() > created:
            probs.append((f"startedAt {st.started_at} after createdAt {r.obj.created_at}", r))
        depth = int(st.queue_depth)
        if (depth > 0) != (st.oldest_queued_at is not None):
            probs.append((f"queueDepth {depth} with oldestQueuedAt {st.oldest_queued_at}", r))
        if st.dropped_reports is None:
            probs.append(("no droppedReports", r))
        if st.last_cycle is None:
            probs.append(("no lastCycle", r))
        if bool(st.channel_enabled) and r.t < channel_on:
            probs.append(("channelEnabled true, provisioned false", r))
        if _name(st.update_mode) != "manual":
            probs.append((f"updateMode {_name(st.update_mode)}, provisioned manual", r))
        if st.licence is None:
            probs.append(("no licence state", r))
        else:
            licence.add(_name(st.licence.state))
    out: list[Finding] = []
    if probs:
        out.append(fail(f"agentStatus: {probs[0][0]}", "MS-MSG-12", excerpt=_excerpt(probs[0][1])))
    else:
        out.append(ok(f"agentStatus complete; queueDepth up to {_max_depth(ctx)}", "MS-MSG-12"))
    # Outside the update phase no licence is ever installed by the harness: the state must say
    # so (with Agent-Update, update_checks judges the states after installing licences).
    if ctx.update is not None:
        out.append(not_tested("licences are judged by the update checks in this run", "MS-UPD-20"))
    elif licence - {"missing"}:
        out.append(
            fail(
                "a licence state other than missing, though no licence was installed",
                "MS-UPD-20",
                expected="missing",
                actual=str(sorted(licence)),
            )
        )
    else:
        out.append(ok("agentStatus/licence: missing (none installed)", "MS-UPD-20"))
    accepted = ctx.rec.accepted_reports()
    out.append(
        ok(f"without a licence: {len(accepted)} reports delivered, status in each", "MS-UPD-23")
        if accepted
        else fail("without a licence the agent delivered nothing", "MS-UPD-23")
    )
    return out


def _max_depth(ctx: AgentContext) -> int:
    return max(int(r.obj.agent_status.queue_depth) for r in ctx.rec.reports())


def _cycles(ctx: AgentContext) -> list[list[tuple[float, float, Received]]]:
    """Per agent process (startedAt), the distinct cycles (start, finish) in creation order."""
    per: dict[str, dict[float, tuple[float, float, Received]]] = {}
    for r in ctx.rec.reports():
        st = r.obj.agent_status
        if st.last_cycle is None:
            continue
        lc = st.last_cycle
        start = lc.started_at.to_datetime().timestamp()
        per.setdefault(str(st.started_at), {}).setdefault(
            start, (start, lc.finished_at.to_datetime().timestamp(), r)
        )
    return [sorted(c.values(), key=lambda x: x[0]) for c in per.values()]


@check("MS-PRV-4", "MS-MSG-11", classes=CORE, role="agent")
async def cycles_every_poll_interval(ctx: AgentContext) -> list[Finding]:
    """Poll cycles start every pollInterval (jitter 0), each followed by its report."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    interval = ctx.setup.poll_interval
    gaps: list[float] = []
    bad: list[str] = []
    for cycles in _cycles(ctx):
        for (s0, f0, _), (s1, _, r1) in zip(cycles, cycles[1:], strict=False):
            gap = s1 - s0
            gaps.append(gap)
            # times are whole seconds; a cycle longer than the interval delays the next one
            if gap < interval - 1.5 or gap > max(interval, f0 - s0) + interval + 2:
                bad.append(f"cycle at +{gap:.0f} s after the previous (report {r1.report_id})")
    if not gaps:
        return [not_tested("fewer than two poll cycles were reported")]
    med = statistics.median(gaps)
    out: list[Finding] = []
    if bad:
        out.append(
            fail(
                f"{len(bad)} of {len(gaps)} cycle gaps off the {interval} s interval: {bad[0]}",
                expected=f"{interval} s",
                actual=f"median {med:.1f} s",
            )
        )
    else:
        out.append(ok(f"{len(gaps) + 1} reported cycles, median gap {med:.1f} s ({interval} s)"))
    return out


@check("MS-DEL-18", classes=CORE, role="agent")
async def first_sends_in_sequence_order(ctx: AgentContext) -> list[Finding]:
    """Queued reports are first sent in ascending sequence order."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    seen: set[str] = set()
    last = 0
    for r in ctx.rec.reports():
        if r.report_id in seen:
            continue
        seen.add(r.report_id)  # type: ignore[arg-type]
        if r.sequence is not None and r.sequence < last:
            return [
                fail(
                    f"report {r.sequence} first sent after report {last}",
                    expected="ascending sequence",
                    actual=f"{last} then {r.sequence}",
                )
            ]
        last = max(last, r.sequence or 0)
    return [ok(f"{len(seen)} reports first sent in ascending sequence order")]


@check("MS-CONF-6", classes=CORE, role="agent")
async def capabilities_match_classes(ctx: AgentContext) -> list[Finding]:
    """The Enrollment declares exactly the capabilities of the classes under test."""
    enr = [r for r in ctx.rec.received if r.kind == "Enrollment"]
    if not enr:
        return [fail("the agent never sent an Enrollment", excerpt=ctx.agent_log())]
    caps = {_name(c) for c in enr[0].obj.capability} - {"snmpv3"}
    by_class = {
        "http": "Agent-HTTP",
        "smtp": "Agent-SMTP",
        "channel-websocket": "Agent-Channel",
        "channel-longpoll": "Agent-Channel",
        "update": "Agent-Update",
    }
    want = {c for c, cls in by_class.items() if cls in ctx.classes}
    claimed_elsewhere = caps - want  # classes the vendor may claim beyond this run's
    paired = {"channel-websocket", "channel-longpoll"}
    if not want <= caps or (caps & paired and not paired <= caps):
        return [
            fail(
                "capabilities do not match the claimed classes",
                expected=f"{sorted(want)} (channel capabilities both or none)",
                actual=str(sorted(caps)),
                excerpt=_excerpt(enr[0]),
            )
        ]
    extra = (
        f"; also {sorted(claimed_elsewhere)} (classes not tested here)" if claimed_elsewhere else ""
    )
    return [ok(f"capabilities {sorted(want)} for classes {', '.join(ctx.classes)}{extra}")]


@check("MS-HTTP-1", "MS-HTTP-6", classes=HTTP, role="agent")
async def base_path_and_gzip(ctx: AgentContext) -> list[Finding]:
    """Every request under the base URL's path; gzip bodies as provisioned, marked and decodable."""
    items = list(ctx.rec.received)
    if not items:
        return [fail("the agent sent nothing", excerpt=ctx.agent_log())]
    out: list[Finding] = []
    outside = [r for r in items if not r.path.startswith(BASE_PATH + "/v1/")]
    out.append(
        fail(
            f"{len(outside)} requests outside the base path, first {outside[0].path}",
            "MS-HTTP-1",
            expected=f"{BASE_PATH}/v1/…",
            actual=outside[0].path,
        )
        if outside
        else ok(f"all {len(items)} requests under {BASE_PATH}/v1/", "MS-HTTP-1")
    )
    zipped = [r for r in items if r.encoding.lower() == "gzip"]
    other = [r for r in items if r.encoding.lower() not in ("", "gzip", "identity")]
    broken = [r for r in zipped if r.kind is None]
    if other:
        out.append(fail(f"Content-Encoding {other[0].encoding!r}", "MS-HTTP-6"))
    elif broken:
        out.append(fail("a gzip body did not decode to a document", "MS-HTTP-6"))
    elif not ctx.setup.gzip and zipped:
        out.append(fail("gzip used though provisioning says gzip false", "MS-HTTP-6"))
    elif ctx.setup.gzip and not zipped:
        out.append(fail("provisioning says gzip true but no body was compressed", "MS-HTTP-6"))
    else:
        out.append(ok(f"{len(zipped)} of {len(items)} bodies gzip, each decodes", "MS-HTTP-6"))
    return out


@check("MS-CH-1", "MS-CONF-1", classes=CORE, role="agent")
async def only_posts_no_channel(ctx: AgentContext) -> list[Finding]:
    """With the channel off, the agent only posts Enrollments and Reports: no channel, no GET."""
    # With Agent-Channel the channel is switched on in the last phase: judged until then.
    until = ctx.phases.get("channel", (float("inf"), None))[0]
    strays = [s for s in ctx.rec.strays if s[0] < until]
    chan = [p for _, _, p in strays if "/channel" in p]
    peer = getattr(ctx.rec, "peer", None)
    attempts = [a for a in getattr(peer, "attempts", []) if getattr(a, "t", 0.0) < until]
    if attempts:
        return [fail(f"a channel request with the channel disabled: {attempts[0]}")]
    if chan:
        return [fail(f"a channel request with the channel disabled: {chan[0]}")]
    gets = [f"{m} {p}" for _, m, p in strays if m != "POST" and "/xxe" not in p]
    gets = [g for g in gets if "/v1/elsewhere" not in g]
    if gets:
        return [fail(f"requests other than the two POST endpoints: {gets[:3]}")]
    return [ok(f"{len(ctx.rec.received)} requests, all POSTs of Enrollment or Report; no channel")]


@check("MS-SEC-14", "MS-SNMP-16", classes=CORE, role="agent")
async def secrets_never_written(ctx: AgentContext) -> list[Finding]:
    """No token, community or USM key in any report or in the agent's log."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    log = ctx.log_path.read_text(errors="replace") if ctx.log_path else ""
    secrets = [s for s in ctx.secrets if s]
    for s in secrets:
        for r in ctx.rec.reports():
            if s.encode() in r.body:
                return [
                    fail(
                        f"a secret of the provisioning ({s[:4]}…) in a report", excerpt=_excerpt(r)
                    )
                ]
        if s in log:
            i = log.index(s)
            return [
                fail(
                    f"a secret of the provisioning ({s[:4]}…) in the log",
                    excerpt=log[max(0, i - 200) : i + 50],
                )
            ]
    return [ok(f"{len(secrets)} secrets absent from {len(ctx.rec.reports())} reports and the log")]


@check("MS-DEV-28", "MS-VER-5", classes=CORE, role="agent")
async def extensions_in_own_namespace(ctx: AgentContext) -> list[Finding]:
    """Vendor data only inside extensions, in a namespace that is not urn:metersync:."""
    n = 0
    for r in _docs(ctx):
        try:
            root = _root(r)
        except etree.XMLSyntaxError:
            continue
        for el in root.iter():
            if not isinstance(el.tag, str):
                continue
            ns = etree.QName(el).namespace
            if ns != NS:
                parent = el.getparent()
                inside = parent is not None and etree.QName(parent).localname == "extensions"
                if parent is not None and etree.QName(parent).namespace != NS:
                    continue  # deeper inside an extension
                if not inside:
                    return [fail(f"element {el.tag} outside extensions", excerpt=_excerpt(r))]
                if ns is None or ns.startswith("urn:metersync:"):
                    return [
                        fail(f"extension element {el.tag} in namespace {ns}", excerpt=_excerpt(r))
                    ]
                n += 1
    return [ok(f"{n} extension elements, each in the vendor's own namespace")]


@check("MS-SEC-10", classes=CORE, role="agent")
async def every_message_signed(ctx: AgentContext) -> list[Finding]:
    """Every Enrollment and Report carries a parseable signature (header, or report.xml.sig
    by mail). Whether it verifies over the exact bytes is MS-HTTP-7 and MS-SMTP-3."""
    items = [r for r in ctx.rec.received if r.kind in ("Enrollment", "Report")]
    if not items:
        return [fail("the agent sent no readable document", excerpt=ctx.agent_log())]
    unsigned = [
        r
        for r in items
        if getattr(r, "mail", None) is None and not r.headers.get("metersync-signature")
    ]
    missing = [r for r in items if (r.signature_problem or "").startswith("2001")]
    return [_sig_finding("MS-SEC-10", items, unsigned + missing, [])]
