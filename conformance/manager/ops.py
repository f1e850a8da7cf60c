"""Checks of a manager's operator actions, limits, transport and answers.

Revocation and key rotation use the vendor's own commands (`--revoke-command`,
`--reenroll-command`, with `{agent_id}` replaced); rate limits are found by sending requests
until the manager says 429; TLS versions are tried when the URL is https.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import shlex
import ssl
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
from lxml import etree

import metersync_generated.v1 as model
import metersync_spec
from metersync.errors import BY_CODE
from metersync_conformance.manager.core import (
    CORE,
    ENROLL_PATH,
    HTTP,
    ManagerContext,
    evidence,
    expect_code,
    expect_receipt,
)
from metersync_conformance.registry import Finding, check, fail, not_tested, ok
from metersync_conformance.wire import (
    EXAMPLE_AGENT_ID,
    REPORTS_PATH,
    Answer,
    SimAgent,
    now,
    post,
    xml_time,
)

NS = "{" + metersync_spec.NAMESPACE + "}"
PER_MINUTE = 60  # MS-LIM-5: requests per agent per minute a manager accepts at least
ENROLL_FAILURES_MIN = 3  # MS-LIM-6: failed enrollments per address per minute allowed at least


def _cmd(template: str, agent_id: str) -> str:
    return template.replace("{agent_id}", shlex.quote(agent_id))


def retry_after_problem(ans: Answer) -> str | None:
    """MS-HTTP-9: None when a 429/503 answer has Retry-After seconds equal to retryAfter."""
    header = ans.headers.get("retry-after", "")
    if not re.fullmatch(r"\d+", header.strip()):
        return f"Retry-After header {header!r} is not delta-seconds"
    body = getattr(ans.obj, "retry_after", None) if ans.kind == "Error" else None
    if body is None or int(body) != int(header):
        return f"Retry-After {header} but Error/retryAfter {body}"
    return None


# --- enrollment, revocation, rotation ------------------------------------------------------


@check("MS-SEC-7", classes=CORE, role="manager")
async def other_key_same_agent_refused(ctx: ManagerContext) -> list[Finding]:
    """An enrolled agentId enrolling again with another key and a plain token: 2010."""
    agent = await ctx.main_agent()
    twin = SimAgent(agent_id=agent.agent_id)
    body = twin.enrollment(await ctx.token())
    ans = await post(ctx.client, ctx.url, ENROLL_PATH, body, signature=twin.sign(body))
    ctx._log("enroll with another key", body, ans)
    return [expect_code("MS-SEC-7", "the same agentId with another key", body, ans, 2010)]


@check("MS-SEC-9", classes=CORE, role="manager")
async def revoked_agent_refused(ctx: ManagerContext) -> list[Finding]:
    """After the operator revokes an agent, its reports (even older ones) and a new Enrollment
    with its key and a fresh token get 2008."""
    if not ctx.revoke_command:
        return [not_tested("no --revoke-command given: the harness cannot revoke an agent")]
    agent = await ctx.enrolled_agent()
    rid, before = agent.report(created_at=now() - timedelta(seconds=30))
    await ctx.run_command(_cmd(ctx.revoke_command, agent.agent_id), "revoke command")
    ans = await ctx.send(agent, before, what="report after revocation")
    out = [expect_code("MS-SEC-9", "a report created before the revocation", before, ans, 2008)]
    _, fresh = agent.report()
    ans2 = await ctx.send(agent, fresh, what="new report after revocation")
    out.append(expect_code("MS-SEC-9", "a report created after the revocation", fresh, ans2, 2008))
    ans3 = await ctx.enroll(agent)  # the revoked key again, with a fresh token
    what = "an Enrollment with the revoked key and a fresh token"
    out.append(expect_code("MS-SEC-9", what, b"", ans3, 2008))
    return out


@check("MS-SEC-8", "MS-SEC-20", classes=CORE, role="manager")
async def key_rotation(ctx: ManagerContext) -> list[Finding]:
    """Re-enrollment with a bound token: new key works, old key only for older reports."""
    if not ctx.reenroll_command:
        return [not_tested("no --reenroll-command given: no re-enrollment token to rotate with")]
    old = await ctx.enrolled_agent()
    old_rid, older = old.report(created_at=now() - timedelta(seconds=20))
    token = await ctx.token(_cmd(ctx.reenroll_command, old.agent_id))
    new = SimAgent(agent_id=old.agent_id, sequence=old.sequence)
    ans = await ctx.enroll(new, token)
    out = [expect_receipt("MS-SEC-8", "re-enrollment with a new key", b"", ans, "accepted")]
    if ans.receipt_status != "accepted":
        return out
    rid, body = new.report()
    ans1 = await ctx.send(new, body, what="signed with the new key")
    out.append(expect_receipt("MS-SEC-8", "signed with the new key", body, ans1, "accepted", rid))
    ans2 = await ctx.send(old, older, what="old key, created before the rotation")
    out.append(
        expect_receipt(
            "MS-SEC-8",
            "old key, report created before the rotation",
            older,
            ans2,
            "accepted",
            old_rid,
        )
    )

    def polled(delta: float) -> Callable[[model.Report], None]:
        def mutate(rep: model.Report) -> None:
            for dev in rep.device:
                dev.polled_at = xml_time(now() + timedelta(seconds=delta))

        return mutate

    # Polled before the rotation, so only the createdAt rule (not MS-SEC-20) refuses it.
    _, later = old.report(created_at=now() + timedelta(seconds=5), mutate=polled(-20))
    ans3 = await ctx.send(old, later, what="old key, created after the rotation")
    out.append(
        expect_code("MS-SEC-8", "old key, report created after the rotation", later, ans3, 2003)
    )
    poll_now = polled(1)  # created before the rotation, polled after it

    _, stale = old.report(created_at=now() - timedelta(seconds=20), mutate=poll_now)
    ans5 = await ctx.send(old, stale, what="old key, polled after the rotation")
    what = "old key, createdAt before the rotation but polledAt after it"
    out.append(expect_code("MS-SEC-20", what, stale, ans5, 2003))
    # A re-enrollment token is bound to its agent: another agent cannot enroll with it.
    bound = await ctx.token(_cmd(ctx.reenroll_command, old.agent_id))
    stranger = SimAgent()
    ans4 = await ctx.enroll(stranger, bound)
    what = "another agent enrolling with this agent's re-enrollment token"
    out.append(expect_code("MS-SEC-8", what, b"", ans4, 2006))
    return out


# --- message rules a manager checks --------------------------------------------------------


def _percent(supply_index: int, value: int | str) -> object:
    def mutate(rep: model.Report) -> None:
        for d in rep.device:
            for s in d.supply:
                if s.index == supply_index:
                    s.percent = Decimal(value)

    return mutate


@check("MS-DEV-17", classes=CORE, role="manager")
async def percent_rules(ctx: ManagerContext) -> list[Finding]:
    """percent 50 or 64.02 for level 64 of 100 (the tolerance is 0.01), or 3 for a level of
    -3: 3001 each; 64.01 for level 64 of 100 is accepted."""
    agent = await ctx.main_agent()
    out = []
    for what, idx, value in (
        ("percent 50 for level 64 of 100", 1, 50),
        ("percent 64.02 for level 64 of 100", 1, "64.02"),
        ("percent 3 for level -3 (someRemaining)", 2, 3),
    ):
        _, body = agent.report(mutate=_percent(idx, value))  # type: ignore[arg-type]
        ans = await ctx.send(agent, body, what=what)
        out.append(expect_code("MS-DEV-17", what, body, ans, 3001))
    what = "percent 64.01 for level 64 of 100"
    rid, body = agent.report(mutate=_percent(1, "64.01"))  # type: ignore[arg-type]
    ans = await ctx.send(agent, body, what=what)
    out.append(expect_receipt("MS-DEV-17", what, body, ans, "accepted", rid))
    return out


def _max_devices(limit: int, devices: int) -> object:
    def mutate(rep: model.Report) -> None:
        import copy

        rep.agent_status.licence.max_devices = limit
        base = rep.device[0]
        rep.device = []
        for n in range(devices):
            d = copy.deepcopy(base)
            d.identity.device_key = f"sn:hp:lic{n}{rep.report_id[:8]}"
            rep.device.append(d)

    return mutate


@check("MS-UPD-22", classes=CORE, role="manager")
async def licence_max_devices(ctx: ManagerContext) -> list[Finding]:
    """A report with 3 snapshots from an agent licensed for 2 devices: 3002; 2 are accepted."""
    agent = await ctx.main_agent()
    _, body = agent.report(mutate=_max_devices(2, 3))  # type: ignore[arg-type]
    ans = await ctx.send(agent, body, what="3 devices, maxDevices 2")
    out = [expect_code("MS-UPD-22", "3 devices, maxDevices 2", body, ans, 3002)]
    rid, body2 = agent.report(mutate=_max_devices(2, 2))  # type: ignore[arg-type]
    ans2 = await ctx.send(agent, body2, what="2 devices, maxDevices 2")
    out.append(expect_receipt("MS-UPD-22", "2 devices, maxDevices 2", body2, ans2, "accepted", rid))
    return out


@check("MS-UPD-20", classes=CORE, role="manager")
async def licence_not_taken_from_agents(ctx: ManagerContext) -> list[Finding]:
    """A Licence posted to the report or enrollment endpoint is refused with 1007."""
    agent = await ctx.main_agent()
    lic = (metersync_spec.EXAMPLES_DIR / "valid" / "licence.xml").read_bytes()
    lic = lic.replace(EXAMPLE_AGENT_ID.encode(), agent.agent_id.encode())
    out = []
    for path in (REPORTS_PATH, ENROLL_PATH):
        ans = await post(ctx.client, ctx.url, path, lic, signature=agent.sign(lic))
        ctx._log(f"a Licence posted to {path}", lic, ans)
        out.append(expect_code("MS-UPD-20", f"a Licence posted to {path}", lic, ans, 1007))
    return out


# --- limits --------------------------------------------------------------------------------


@check("MS-LIM-5", "MS-HTTP-9", classes=CORE + HTTP, role="manager", timeout=180)
async def rate_limit(ctx: ManagerContext) -> list[Finding]:
    """An agent's enrollment and 59 reports at once (60 requests in a minute, the least a
    manager accepts) are accepted; beyond the manager's limit: 429, 4001, Retry-After. One
    client of its own: not paced, one address, no retry."""
    async with ctx.raw_client() as client:
        agent = SimAgent()
        ans = await ctx.enroll(agent, client=client)
        if not agent.enrolled:
            return [
                fail(
                    "the enrollment, request 1 of 60 in a minute, was refused",
                    "MS-LIM-5",
                    expected="a Receipt",
                    actual=ans.brief(),
                )
            ]
        return await _beyond_the_rate(ctx, client, agent)


async def _beyond_the_rate(
    ctx: ManagerContext, client: httpx.AsyncClient, agent: SimAgent
) -> list[Finding]:
    first_id, template = agent.report()
    sent = [(first_id, template)]
    for n in range(PER_MINUTE - 2):  # the same report under new ids: cheap to build
        rid = str(uuid.uuid4())
        sent.append(
            (
                rid,
                template.replace(first_id.encode(), rid.encode()).replace(
                    b"<sequence>1<", f"<sequence>{n + 2}<".encode()
                ),
            )
        )
    answers = await asyncio.gather(
        *(ctx.send(agent, b, what="rate", client=client) for _, b in sent)
    )
    refused = [
        (b, a) for (_, b), a in zip(sent, answers, strict=True) if a.receipt_status != "accepted"
    ]
    out: list[Finding] = []
    if refused:
        b, a = refused[0]
        out.append(
            fail(
                f"{len(refused)} of {len(sent)} reports after the enrollment (60 requests in "
                "one minute) were not accepted",
                "MS-LIM-5",
                expected=f"{len(sent)} Receipts accepted",
                actual=a.brief(),
                excerpt=evidence(b, a),
            )
        )
        return out
    # Cheap requests (refused for their media type after the rate check) until 429.
    probe = b"<probe/>"
    sig = agent.sign(probe)
    limited: Answer | None = None
    count = 0
    while limited is None and count < ctx.rate_probe:
        batch = await asyncio.gather(
            *(
                post(client, ctx.url, REPORTS_PATH, probe, signature=sig, content_type="text/plain")
                for _ in range(20)
            )
        )
        count += len(batch)
        limited = next((a for a in batch if a.status == 429), None)
    total = count + PER_MINUTE
    if limited is None:
        out.append(ok(f"60 requests accepted; no limit within {total} requests (MAY)", "MS-LIM-5"))
        out.append(not_tested("the manager never answered 429 or 503", "MS-HTTP-9"))
        return out
    ctx._log("beyond the rate limit", probe, limited)
    out.append(expect_code("MS-LIM-5", f"request {total} in a burst", probe, limited, 4001))
    problem = retry_after_problem(limited)
    for req in ("MS-LIM-5", "MS-HTTP-9"):
        if problem:
            out.append(fail(f"a 429: {problem}", req, excerpt=evidence(probe, limited)))
        else:
            out.append(
                ok(
                    f"429 after {total} requests with Retry-After "
                    f"{limited.headers.get('retry-after')} s",
                    req,
                )
            )
    return out


@check("MS-LIM-6", "MS-HTTP-9", classes=HTTP, role="manager", timeout=120)
async def failed_enrollments_limited(ctx: ManagerContext) -> list[Finding]:
    """Enrollments with unknown tokens from one address (of its own): the first
    ENROLL_FAILURES_MIN get their own refusal, not 4001; then 4001 with Retry-After within 40."""
    limited: Answer | None = None
    body = b""
    out: list[Finding] = []
    async with ctx.raw_client() as client:
        for n in range(40):
            agent = SimAgent()
            body = agent.enrollment("Q" * 20 + f"{n:04d}" + "x" * 8)
            ans = await post(client, ctx.url, ENROLL_PATH, body, signature=agent.sign(body))
            if ans.status == 429:
                limited = ans
                ctx._log("failed enrollments beyond the limit", body, ans)
                break
    if limited is None:
        return [
            fail(
                "40 failed enrollments from one address were never limited",
                "MS-LIM-6",
                expected="Error 4001 after about 10",
                actual=ans.brief(),
            )
        ]
    if n < ENROLL_FAILURES_MIN:
        out.append(
            fail(
                f"limited after {n} failed enrollments, fewer than {ENROLL_FAILURES_MIN}",
                "MS-LIM-6",
                expected=f"at least {ENROLL_FAILURES_MIN} failed attempts answered as such",
                actual=limited.brief(),
                excerpt=evidence(body, limited),
            )
        )
    out.append(expect_code("MS-LIM-6", f"failed enrollment {n + 1}", body, limited, 4001))
    problem = retry_after_problem(limited)
    out.append(
        fail(problem, "MS-HTTP-9", excerpt=evidence(body, limited))
        if problem
        else ok("429 with matching Retry-After", "MS-HTTP-9")
    )
    return out


# --- transport -----------------------------------------------------------------------------


@check("MS-HTTP-1", classes=HTTP, role="manager")
async def paths_under_base_url(ctx: ManagerContext) -> list[Finding]:
    """/v1/reports answers under the base URL given, also when it ends with '/'."""
    agent = await ctx.main_agent()  # enrolled with POST <base>/v1/enroll
    rid, rep = agent.report()
    ans = await post(
        ctx.client, ctx.url.rstrip("/") + "/", REPORTS_PATH, rep, signature=agent.sign(rep)
    )
    ctx._log("report under the base URL", rep, ans)
    return [expect_receipt("MS-HTTP-1", "POST <base>/v1/reports", rep, ans, "accepted", rid)]


def _loopback_host(url: str) -> str | None:
    host = urlsplit(url).hostname or ""
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


@check("MS-HTTP-16", "MS-CONF-9", classes=HTTP, role="manager")
async def signature_not_address(ctx: ManagerContext) -> list[Finding]:
    """Reports of one agent from another source address or proxy header are accepted."""
    agent = await ctx.main_agent()
    out = []
    rid, body = agent.report()
    ans = await ctx.send(agent, body, extra={"X-Forwarded-For": "203.0.113.50"})
    out.append(expect_receipt("MS-HTTP-16", "with X-Forwarded-For", body, ans, "accepted", rid))
    host = _loopback_host(ctx.url)
    if host and host.startswith("127."):
        other = "127.0.0.2" if host != "127.0.0.2" else "127.0.0.3"
        async with ctx.new_client(local_address=other) as client:
            rid2, body2 = agent.report()
            ans2 = await post(client, ctx.url, REPORTS_PATH, body2, signature=agent.sign(body2))
        ctx._log(f"from {other}", body2, ans2)
        for req in ("MS-HTTP-16", "MS-CONF-9"):
            out.append(expect_receipt(req, f"sent from {other}", body2, ans2, "accepted", rid2))
    else:
        out.append(not_tested("the manager is not on a loopback address", "MS-CONF-9"))
    return out


def _handshake(host: str, port: int, version: ssl.TLSVersion) -> str:
    """'ok', or the reason the handshake at exactly `version` failed."""
    import socket

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ctx.maximum_version = version
    try:
        with (
            socket.create_connection((host, port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=host),
        ):
            return "ok"
    except (ssl.SSLError, OSError) as exc:
        return str(exc)


@check("MS-HTTP-12", classes=HTTP, role="manager")
async def tls_versions(ctx: ManagerContext) -> list[Finding]:
    """Over https: TLS 1.2 is accepted, TLS 1.1 is refused; plain http only on loopback."""
    parts = urlsplit(ctx.url)
    host = parts.hostname or ""
    if parts.scheme != "https":
        if _loopback_host(ctx.url) or host == "localhost":
            return [not_tested("the URL is plain http on loopback (allowed): give an https URL")]
        return [
            fail(
                f"the manager offers {ctx.url}: plain HTTP on a non-loopback address",
                expected="https",
                actual=parts.scheme,
            )
        ]
    port = parts.port or 443
    v12 = await asyncio.to_thread(_handshake, host, port, ssl.TLSVersion.TLSv1_2)
    v11 = await asyncio.to_thread(_handshake, host, port, ssl.TLSVersion.TLSv1_1)
    if "NO_PROTOCOLS_AVAILABLE" in v11.upper() or "no protocols" in v11:
        return [not_tested(f"this machine's TLS library cannot offer TLS 1.1: {v11}")]
    if v12 == "ok" and v11 != "ok":
        return [ok(f"TLS 1.2 accepted; TLS 1.1 refused ({v11[:80]})")]
    return [
        fail(
            "TLS versions wrong",
            expected="TLS 1.2 ok, TLS 1.1 refused",
            actual=f"TLS 1.2: {v12[:80]}; TLS 1.1: {v11[:80]}",
        )
    ]


@check("MS-SEC-18", classes=HTTP, role="manager")
async def client_certificate_optional(ctx: ManagerContext) -> list[Finding]:
    """Without a client certificate the harness is served; signatures still decide (2001)."""
    agent = await ctx.main_agent()
    _, body = agent.report()
    ans = await ctx.send(agent, body, signature=None, what="no certificate, no signature")
    return [
        expect_code("MS-SEC-18", "an unsigned report over the same connection", body, ans, 2001)
    ]


# --- every answer --------------------------------------------------------------------------

AUDIT = (
    "MS-MSG-1",
    "MS-MSG-2",
    "MS-MSG-7",
    "MS-XML-1",
    "MS-XML-9",
    "MS-XML-11",
    "MS-VER-1",
    "MS-VER-3",
    "MS-VER-5",
    "MS-LIM-4",
    "MS-ERR-4",
    "MS-SEC-14",
    "MS-HTTP-9",
)


def _foreign_outside_extensions(body: bytes) -> str | None:
    root = etree.fromstring(body)
    for el in root.iter():
        if not isinstance(el.tag, str) or el.tag.startswith(NS):
            continue
        ns = el.tag[1:].split("}")[0] if el.tag.startswith("{") else ""
        if ns.startswith("urn:metersync:") or not any(
            a.tag == NS + "extensions" for a in el.iterancestors()
        ):
            return el.tag
    return None


@check(*AUDIT, classes=CORE + HTTP, role="manager")
async def answers_audit(ctx: ManagerContext) -> list[Finding]:
    """Every answer so far: schema-valid v1.0, complete Errors, Retry-After, no secrets."""
    problems: dict[str, list[tuple[str, bytes, Answer, str]]] = {r: [] for r in AUDIT}
    for what, sent, a in ctx.answers:
        if a.kind is None:
            for r in ("MS-MSG-1", "MS-XML-1", "MS-XML-9", "MS-LIM-4", "MS-VER-3"):
                problems[r].append((what, sent, a, f"not a valid MeterSync document: {a.problem}"))
            continue
        if getattr(a.obj, "version", None) != "1.0":
            for r in ("MS-MSG-2", "MS-VER-1"):
                problems[r].append((what, sent, a, f"version {a.obj.version!r}"))
        tag = _foreign_outside_extensions(a.body)
        if tag:
            problems["MS-VER-5"].append((what, sent, a, f"element {tag} outside extensions"))
        for token in ctx.tokens:
            if token.encode() in a.body:
                problems["MS-SEC-14"].append((what, sent, a, "the answer holds a token"))
        if a.status in (429, 503):
            p = retry_after_problem(a)
            if p:
                problems["MS-HTTP-9"].append((what, sent, a, p))
        if a.kind != "Error":
            continue
        code, spec = a.code, BY_CODE.get(a.code or 0)
        if spec and (a.obj.name != spec.name or not (a.obj.message or "").strip()):
            problems["MS-MSG-7"].append((what, sent, a, f"name {a.obj.name} for {code}"))
        if spec and spec.retry and a.obj.retry_after is None:
            problems["MS-MSG-7"].append((what, sent, a, f"no retryAfter for {code}"))
        if code and 9000 <= code <= 9999 and not re.fullmatch(r"[A-Z][A-Z0-9_]+", a.obj.name):
            problems["MS-ERR-4"].append((what, sent, a, f"vendor name {a.obj.name}"))
        loc = a.obj.location
        if code in (1001, 1002, 1004, 1008) and (loc is None or loc.line is None):
            problems["MS-XML-11"].append((what, sent, a, f"{code} without a line"))
    out: list[Finding] = []
    for req, found in problems.items():
        if found:
            what, sent, a, why = found[0]
            out.append(
                fail(f"{len(found)} answers: first ({what}): {why}", req, excerpt=evidence(sent, a))
            )
        else:
            out.append(ok(f"all {len(ctx.answers)} answers", req))
    return out
