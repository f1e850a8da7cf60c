"""Checks of the SMTP binding (spec chapter 9), both roles.

Manager (Manager-SMTP, with `--smtp HOST:PORT`): the harness mails reports to the manager's
SMTP server and judges the replies (MS-SMTP-11) and what was stored, which it learns through
the HTTP binding: a report stored by mail is a `duplicate` when posted afterwards, and one that
was refused by mail is `accepted` when posted properly signed (MS-SMTP-4).

Agent (Agent-SMTP without Agent-HTTP): the harness relay recorded every mail; the checks judge
their MIME structure, Subject, encoding and signature, and the resend after a 451.
"""

from __future__ import annotations

import asyncio
import base64
import smtplib
from datetime import timedelta
from email import policy
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesParser
from email.utils import format_datetime
from typing import Any

from metersync import signing
from metersync.errors import BY_CODE
from metersync_conformance.registry import Finding, check, excerpt_of, fail, not_tested, ok
from metersync_conformance.wire import REPORTS_PATH, SimAgent, now, post

MANAGER = ("Manager-SMTP",)
AGENT = ("Agent-SMTP",)
SPEC_MAIL_LIMIT = 24 * 1024 * 1024  # MS-SMTP-12
MIB16 = 16 * 1024 * 1024


# --- building mails (manager mode) ---------------------------------------------------------


def mail(
    body: bytes,
    signature: str | None,
    report_id: str,
    *,
    sender: str = "agent@conformance.invalid",
    extra_parts: int = 0,
    report_parts: int = 1,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A chapter-9 mail; the variations make the hostile and incomplete ones."""
    msg = MIMEMultipart("mixed")
    msg["From"] = sender
    msg["To"] = "reports@conformance.invalid"
    msg["Subject"] = f"MeterSync report {report_id}"
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.attach(MIMEText(f"MeterSync report {report_id}\n", "plain", "us-ascii"))
    for _ in range(report_parts):
        part = MIMEApplication(body, "vnd.metersync+xml", name="report.xml")
        part.add_header("Content-Disposition", "attachment", filename="report.xml")
        msg.attach(part)
    if signature is not None:
        sig = MIMEText(signature + "\n", "plain", "us-ascii")
        sig.add_header("Content-Disposition", "attachment", filename="report.xml.sig")
        msg.attach(sig)
    for i in range(extra_parts):
        msg.attach(MIMEText(f"<p>ignore me {i}</p>", "html", "us-ascii"))
        png = MIMEApplication(b"\x89PNG\r\n\x1a\n" + bytes(64), "octet-stream", name="logo.png")
        msg.attach(png)
    return msg.as_bytes(policy=policy.SMTP)


def smtp_send(
    host: str, port: int, data: bytes, sender: str = "agent@conformance.invalid"
) -> tuple[int, str]:
    """Blocking: one mail; the reply to the end of the data (or to the command refusing it)."""
    with smtplib.SMTP(host, port, timeout=120) as c:
        c.ehlo()
        code, text = c.mail(sender)
        if code == 250:
            code, text = c.rcpt("reports@conformance.invalid")
        if code in (250, 251):
            try:
                code, text = c.data(data)
            except smtplib.SMTPDataError as exc:
                code, text = exc.smtp_code, exc.smtp_error
    return code, text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def _target(ctx: Any) -> tuple[str, int] | None:
    if not getattr(ctx, "smtp", None):
        return None
    host, _, port = ctx.smtp.rpartition(":")
    return host.strip("[]"), int(port)


async def _send(ctx: Any, data: bytes, sender: str | None = None) -> tuple[int, str]:
    target = _target(ctx)
    assert target is not None
    if sender is None:
        return await asyncio.to_thread(smtp_send, *target, data)
    return await asyncio.to_thread(smtp_send, *target, data, sender)


def wrapped(inner: bytes, kind: str) -> bytes:
    """`inner` as the message/rfc822 part of a forward (mixed) or a bounce (report)."""
    head = (
        f"Subject: {'Undelivered Mail' if kind == 'report' else 'Fwd: a report'}\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/{kind}; boundary="w"\r\n\r\n'
        "--w\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
        "--w\r\nContent-Type: message/rfc822\r\n\r\n"
    )
    return head.encode() + inner + b"\r\n--w--\r\n"


def _no_smtp() -> list[Finding]:
    return [not_tested("no --smtp HOST:PORT given: the manager's SMTP server was not tested")]


def _stored(req: str, what: str, code: int, text: str) -> Finding:
    if 200 <= code < 300:
        return ok(f"{what}: {code}", req)
    return fail(f"{what}: refused with {code} {text}", req, expected="250", actual=f"{code} {text}")


def _refused(req: str, what: str, code: int, text: str, mcode: int) -> Finding:
    name = BY_CODE[mcode].name
    if 500 <= code < 600 and f"MeterSync {mcode}" in text:
        return ok(f"{what}: {code} naming {mcode} {name}", req)
    return fail(
        f"{what}: expected a 5xx reply naming MeterSync {mcode}, got {code} {text}",
        req,
        expected=f"5xx MeterSync {mcode} {name}",
        actual=f"{code} {text}",
    )


async def _http_status(ctx: Any, agent: SimAgent, body: bytes) -> str:
    ans = await post(ctx.client, ctx.url, REPORTS_PATH, body, signature=agent.sign(body))
    ctx._log("report", body, ans)
    return ans.receipt_status or ans.brief()


def _judge_http(req: str, what: str, got: str, want: str) -> Finding:
    if got == want:
        return ok(f"{what}: the HTTP binding answers {want}", req)
    return fail(f"{what}: the HTTP binding answers {got}", req, expected=want, actual=got)


# --- manager checks ------------------------------------------------------------------------


@check("MS-SMTP-4", "MS-SMTP-11", classes=MANAGER, role="manager")
async def smtp_report_stored_once_across_bindings(ctx: Any) -> list[Finding]:
    """A mailed report is stored once, whether it comes again by mail or over HTTP."""
    if _target(ctx) is None:
        return _no_smtp()
    agent = await ctx.main_agent()
    rid, body = agent.report()
    out = []
    code, text = await _send(ctx, mail(body, agent.sign(body), rid))
    out.append(_stored("MS-SMTP-11", "a valid mailed report", code, text))
    code, text = await _send(ctx, mail(body, agent.sign(body), rid))
    out.append(_stored("MS-SMTP-11", "the same mail again (duplicate)", code, text))
    got = await _http_status(ctx, agent, body)
    out.append(_judge_http("MS-SMTP-4", "the mailed report posted afterwards", got, "duplicate"))
    rid2, body2 = agent.report()
    first = await _http_status(ctx, agent, body2)
    code, text = await _send(ctx, mail(body2, agent.sign(body2), rid2))
    out.append(_stored("MS-SMTP-4", f"a report posted first ({first}), then mailed", code, text))
    # Same id, other bytes, by mail: a replay (2005), nothing changed.
    _, other = agent.report(report_id=rid, total=99999)
    code, text = await _send(ctx, mail(other, agent.sign(other), rid))
    out.append(_refused("MS-SMTP-4", "a mailed report reusing a stored id", code, text, 2005))
    return out


@check("MS-SMTP-4", "MS-SMTP-11", classes=MANAGER, role="manager")
async def smtp_forged_and_hostile_refused(ctx: Any) -> list[Finding]:
    """Signature over the base64 text, a DOCTYPE: refused with their codes, nothing stored."""
    if _target(ctx) is None:
        return _no_smtp()
    agent = await ctx.main_agent()
    rid, body = agent.report()
    forged = agent.sign(base64.encodebytes(body))
    code, text = await _send(ctx, mail(body, forged, rid))
    out = [_refused("MS-SMTP-4", "signature over the base64 text, not the bytes", code, text, 2003)]
    got = await _http_status(ctx, agent, body)
    out.append(
        _judge_http("MS-SMTP-4", "the forged mail's report posted properly", got, "accepted")
    )
    rid2, clean = agent.report()
    hostile = clean.replace(b"?>", b'?>\n<!DOCTYPE Report [<!ENTITY x "y">]>', 1)
    code, text = await _send(ctx, mail(hostile, agent.sign(hostile), rid2))
    out.append(_refused("MS-SMTP-4", "a signed report with a DOCTYPE", code, text, 1002))
    code, text = await _send(ctx, mail(clean, agent.sign(clean), rid2))
    out.append(_stored("MS-SMTP-11", "the clean report after the hostile one", code, text))
    code, text = await _unknown(ctx)
    out.append(_refused("MS-SMTP-11", "a report of an unknown agent", code, text, 2002))
    return out


async def _unknown(ctx: Any) -> tuple[int, str]:
    stranger = SimAgent()
    rid, body = stranger.report()
    return await _send(ctx, mail(body, stranger.sign(body), rid))


@check("MS-SMTP-7", classes=MANAGER, role="manager")
async def smtp_parts_counted(ctx: Any) -> list[Finding]:
    """No signature part: 2001; two report parts: 1007; other parts are ignored."""
    if _target(ctx) is None:
        return _no_smtp()
    agent = await ctx.main_agent()
    rid, body = agent.report()
    code, text = await _send(ctx, mail(body, None, rid))
    out = [_refused("MS-SMTP-7", "a mail without report.xml.sig", code, text, 2001)]
    code, text = await _send(ctx, mail(body, agent.sign(body), rid, report_parts=2))
    out.append(_refused("MS-SMTP-7", "a mail with two report.xml parts", code, text, 1007))
    code, text = await _send(ctx, mail(body, agent.sign(body), rid, report_parts=0))
    out.append(_refused("MS-SMTP-7", "a mail without report.xml", code, text, 1007))
    code, text = await _send(ctx, mail(body, agent.sign(body), rid, extra_parts=2))
    out.append(_stored("MS-SMTP-7", "a valid mail with extra HTML and image parts", code, text))
    got = await _http_status(ctx, agent, body)
    out.append(_judge_http("MS-SMTP-7", "that report posted afterwards", got, "duplicate"))
    return out


@check("MS-SMTP-14", classes=MANAGER, role="manager")
async def smtp_only_top_level_reports(ctx: Any) -> list[Finding]:
    """A report inside a forward or a bounce, and a report mail from <>: 1007, none stored."""
    if _target(ctx) is None:
        return _no_smtp()
    agent = await ctx.main_agent()
    rid, body = agent.report()
    inner = mail(body, agent.sign(body), rid)
    out = []
    for kind, what in (("mixed", "a forwarded mail"), ("report", "a bounce")):
        code, text = await _send(ctx, wrapped(inner, kind))
        out.append(_refused("MS-SMTP-14", f"{what} holding a report mail", code, text, 1007))
    code, text = await _send(ctx, inner, sender="<>")
    out.append(_refused("MS-SMTP-14", "a report mail from the null sender", code, text, 1007))
    got = await _http_status(ctx, agent, body)
    out.append(_judge_http("MS-SMTP-14", "that report posted afterwards", got, "accepted"))
    return out


@check("MS-SMTP-6", "MS-SMTP-10", classes=MANAGER, role="manager")
async def smtp_headers_not_trusted(ctx: Any) -> list[Finding]:
    """A report created 8 days ago, mail dated 10 days ago, foreign From: stored all the same."""
    if _target(ctx) is None:
        return _no_smtp()
    agent = await ctx.main_agent()
    old = now() - timedelta(days=8)
    rid, body = agent.report(created_at=old)
    stale = format_datetime(now() - timedelta(days=10))
    hdrs = {
        "Date": stale,
        "Received": f"from relay.invalid by mx.invalid; {stale}",
        "Message-ID": "<forged@other-agent.invalid>",
    }
    data = mail(body, agent.sign(body), rid, sender="someone-else@elsewhere.invalid", headers=hdrs)
    code, text = await _send(ctx, data)
    out = [_stored("MS-SMTP-10", "a report delayed 8 days, Date 10 days old", code, text)]
    out.append(_stored("MS-SMTP-6", "a report whose From is another address", code, text))
    got = await _http_status(ctx, agent, body)
    out.append(_judge_http("MS-SMTP-6", "that report posted afterwards", got, "duplicate"))
    return out


@check("MS-SMTP-12", classes=MANAGER, role="manager", timeout=180)
async def smtp_size_limits(ctx: Any) -> list[Finding]:
    """SIZE ≥ 24 MiB advertised, a bigger mail refused (552), a report > 16 MiB refused (1003)."""
    target = _target(ctx)
    if target is None:
        return _no_smtp()

    def ehlo_and_big_mail() -> tuple[int | None, int]:
        with smtplib.SMTP(*target, timeout=60) as c:
            c.ehlo()
            size = c.esmtp_features.get("size")
            code, _ = c.mail("a@conformance.invalid", [f"SIZE={SPEC_MAIL_LIMIT * 2}"])
            return (int(size) if size and size.strip().isdigit() else None), code

    size, code = await asyncio.to_thread(ehlo_and_big_mail)
    out = []
    if size is not None and size >= SPEC_MAIL_LIMIT:
        out.append(ok(f"SIZE {size} advertised"))
    else:
        out.append(fail("SIZE not advertised or below 24 MiB", expected=f">= {SPEC_MAIL_LIMIT}",
                        actual=str(size)))  # fmt: skip
    if code == 552:
        out.append(ok("a mail declared at 48 MiB refused with 552"))
    else:
        out.append(fail("a mail declared at 48 MiB was not refused with 552", actual=str(code)))
    agent = await ctx.main_agent()
    rid, body = agent.report()
    pad = b"<!--" + b"x" * (MIB16 - len(body)) + b"-->"
    big = body.replace(b"?>", b"?>" + pad, 1)
    code, text = await _send(ctx, mail(big, agent.sign(big), rid))
    out.append(_refused("MS-SMTP-12", "a report.xml of 16 MiB + a few bytes", code, text, 1003))
    return out


# --- agent checks --------------------------------------------------------------------------


def _mails(ctx: Any) -> list[Any]:
    return [r for r in ctx.rec.received if r.mail is not None]


def _parse(raw: bytes) -> Any:
    return BytesParser(policy=policy.default).parsebytes(raw)


def _structure(raw: bytes) -> list[str]:
    """What breaks MS-SMTP-1/2 in one mail (empty: nothing)."""
    msg = _parse(raw)
    bad = []
    if msg.get_content_type() != "multipart/mixed":
        bad.append(f"the mail is {msg.get_content_type()}, not multipart/mixed")
    leaves = [p for p in msg.walk() if not p.is_multipart()]
    reports = [p for p in leaves if p.get_filename() == "report.xml"]
    sigs = [p for p in leaves if p.get_filename() == "report.xml.sig"]
    if len(reports) != 1:
        bad.append(f"{len(reports)} report.xml parts, not one")
    else:
        r = reports[0]
        if r.get_content_type() != "application/vnd.metersync+xml":
            bad.append(f"report.xml is {r.get_content_type()}")
        if r.get_content_disposition() != "attachment":
            bad.append("report.xml is not an attachment")
    if len(sigs) != 1:
        bad.append(f"{len(sigs)} report.xml.sig parts, not one")
    else:
        s = sigs[0]
        line = s.get_payload(decode=True) or b""
        if s.get_content_type() != "text/plain":
            bad.append(f"report.xml.sig is {s.get_content_type()}")
        if len(line.strip().splitlines()) != 1:
            bad.append("report.xml.sig is not one line")
        else:
            try:
                signing.parse(line.decode("ascii").strip())
            except Exception as exc:
                bad.append(f"report.xml.sig does not parse: {exc}")
    return bad


@check("MS-SMTP-1", "MS-SMTP-2", classes=AGENT, role="agent")
async def smtp_mail_structure(ctx: Any) -> list[Finding]:
    """One report per mail, multipart/mixed with report.xml and report.xml.sig, the Subject."""
    mails = _mails(ctx)
    if not mails:
        return [fail("the agent mailed nothing", excerpt=ctx.agent_log())]
    out = []
    broken = [(m, _structure(m.mail)) for m in mails]
    broken = [(m, b) for m, b in broken if b]
    if broken:
        m, why = broken[0]
        out.append(fail(f"{len(broken)} of {len(mails)} mails: {'; '.join(why)}", "MS-SMTP-1",
                        excerpt=excerpt_of(m.mail, 1500)))  # fmt: skip
    else:
        not_reports = [m for m in mails if m.kind != "Report"]
        if not_reports:
            out.append(fail(f"a report.xml is not a Report: {not_reports[0].problem}",
                            "MS-SMTP-1", excerpt=excerpt_of(not_reports[0].body, 800)))  # fmt: skip
        else:
            out.append(ok(f"{len(mails)} mails, one Report each, as chapter 9", "MS-SMTP-1"))
    wrong = [
        m
        for m in mails
        if m.kind == "Report" and _parse(m.mail)["Subject"] != f"MeterSync report {m.report_id}"
    ]
    if wrong:
        out.append(fail("a Subject does not name the report", "MS-SMTP-2",
                        expected=f"MeterSync report {wrong[0].report_id}",
                        actual=str(_parse(wrong[0].mail)["Subject"])))  # fmt: skip
    else:
        out.append(ok("every Subject is MeterSync report <reportId>", "MS-SMTP-2"))
    return out


@check("MS-SMTP-3", classes=AGENT, role="agent")
async def smtp_exact_signed_bytes(ctx: Any) -> list[Finding]:
    """report.xml is base64, uncompressed, and the signature verifies over its decoded bytes."""
    mails = [m for m in _mails(ctx) if m.kind == "Report"]
    if not mails:
        return [fail("the agent mailed no readable report", excerpt=ctx.agent_log())]
    for m in mails:
        part = [p for p in _parse(m.mail).walk() if p.get_filename() == "report.xml"][0]
        cte = (part.get("Content-Transfer-Encoding") or "").strip().lower()
        if cte != "base64":
            return [fail(f"report.xml has Content-Transfer-Encoding {cte or 'none'}",
                         expected="base64", actual=cte)]  # fmt: skip
        if m.signature_problem:
            return [fail(f"report {m.report_id}: {m.signature_problem}",
                         expected="a signature over the decoded report.xml bytes",
                         excerpt=excerpt_of(m.mail, 1500))]  # fmt: skip
    return [ok(f"{len(mails)} reports base64-encoded, signed over their exact bytes")]


@check("MS-SMTP-9", classes=AGENT, role="agent")
async def smtp_relay_acceptance(ctx: Any) -> list[Finding]:
    """After a 451 the same mail comes again; after a 250 a report is never mailed again."""
    if "smtp_transient" not in ctx.planned:
        return [not_tested("the smtp_transient phase was not part of this run")]
    if not ctx.reached.get("smtp_transient"):
        return [fail("reports refused with 451 were not mailed again and accepted",
                     excerpt=ctx.agent_log())]  # fmt: skip
    reports = [m for m in _mails(ctx) if m.kind == "Report"]
    digests: dict[str, set[str]] = {}
    for m in reports:
        digests.setdefault(m.report_id, set()).add(m.digest)
    changed = [rid for rid, d in digests.items() if len(d) > 1]
    again = [m for m in reports if m.answer_kind == "duplicate"]
    out = []
    if changed:
        out.append(fail(f"report {changed[0]} was resent with other bytes"))
    if again:
        out.append(fail(f"report {again[0].report_id} was mailed again after the relay's 250",
                        expected="the 250 is the receipt (SMTP only)"))  # fmt: skip
    return out or [ok("451 → the same mail again; 250 → removed, never mailed again")]


def _resent_after(mails: list[Any], first: Any) -> list[Any]:
    return [m for m in mails if m.t > first.t and m.report_id == first.report_id]


def _judge_data_reply(mails: list[Any], name: str) -> Finding:
    from metersync_conformance.peers.mail_relay import SCRIPT

    _, reply, expect = SCRIPT[name]
    hit = [m for m in mails if m.script == name]
    if not hit:
        return fail(f"{reply!r} was never played (the agent mailed too little)")
    first = hit[0]
    again = _resent_after(mails, first)
    label = f"after {reply.split(':')[0]!r} to the data of report {first.sequence}"
    if expect == "retry" and not again:
        want = "a failed attempt: the same mail again after backoff"
        return fail(f"{label}: never mailed again (taken as a refusal)", expected=want)
    if expect == "retry" and again[0].body != first.body:
        return fail(f"{label}: mailed again with other bytes")
    if expect == "refused" and again:
        return fail(
            f"{label}: mailed again {again[0].t - first.t:.1f} s later",
            expected="rejected area, never mailed again",
            actual=f"{len(again)} more mails",
        )
    return ok(f"{label}: {expect}")


@check("MS-SMTP-13", classes=AGENT, role="agent")
async def smtp_relay_replies(ctx: Any) -> list[Finding]:
    """4xx: the same mail again; 5xx to the data naming a code: that code's Table 11-1 outcome;
    5xx to the data without a code: rejected area (never mailed again); 5xx to MAIL or RCPT: a
    failed attempt, so the report comes again (no sequence number is lost). The operator alert
    of the last case has no protocol element, so it is not judged."""
    from metersync_conformance.agent.harness import sequence_gaps
    from metersync_conformance.peers.mail_relay import SCRIPT

    out: list[Finding] = []
    mails = [m for m in _mails(ctx) if m.kind == "Report"]
    delivered = ("accepted", "duplicate")
    if "smtp_transient" in ctx.planned:
        busy = [m for m in mails if m.answer_kind == "unavailable"]
        lost = [
            m for m in busy if not any(n.answer_kind in delivered for n in _resent_after(mails, m))
        ]
        if not busy or lost:
            what = f"report {lost[0].sequence} refused with 451" if lost else "no 451 was played"
            out.append(fail(f"{what}: not mailed again and accepted", excerpt=ctx.agent_log()))
        else:
            out.append(ok(f"451 to {len(busy)} mails: each mailed again and accepted"))
    if "smtp_refusals" not in ctx.planned:
        return [*out, not_tested("the smtp_refusals phase was not part of this run")]
    if "smtp_refusals" not in ctx.phases:
        return [*out, fail("the scenario never reached the smtp_refusals phase")]
    out += [_judge_data_reply(mails, n) for n, (stage, _, _) in SCRIPT.items() if stage == "data"]
    before = ctx.mail_relay.script.before_data if ctx.mail_relay else []
    gaps = sequence_gaps(mails)
    if not before:
        out.append(fail("no MAIL or RCPT was refused (the agent mailed too little)"))
    elif gaps:
        out.append(
            fail(
                f"after {len(before)} MAIL/RCPT refusals, reports {gaps[:5]} were never mailed",
                expected="a failed attempt: the report mailed again later",
                actual=f"sequence numbers {gaps[:5]} missing",
            )
        )
    else:
        names = ", ".join(n.upper() for _, n in before)
        out.append(ok(f"5xx to {names}: a failed attempt, every report mailed later"))
    return out
