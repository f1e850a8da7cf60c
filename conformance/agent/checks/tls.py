"""Checks of the TLS run (agent/tls_run.py): certificates, versions and logins, agent side.

MS-HTTP-11 (manager and channel URLs), MS-SEC-18 (client certificates) and MS-SMTP-8 (the
relay). Each stage's records say what the agent did; a stage that must send nothing is judged
only when the agent was seen trying (otherwise NOT TESTED: silence proves nothing).
"""

from __future__ import annotations

from metersync_conformance.agent.tls_run import REFUSE_WAIT, Stage, TlsRun
from metersync_conformance.registry import Finding, check, fail, not_tested, ok

HTTP = ("Agent-HTTP",)
CHANNEL = ("Agent-Channel",)
SMTP = ("Agent-SMTP",)
MODERN = ("TLSv1.2", "TLSv1.3")
REFUSED_SERVERS = {
    "https-untrusted": "a certificate from a CA not in manager/caBundle",
    "https-wrong-host": "a certificate from the right CA naming another host",
    "https-tls1.1": "only TLS 1.0 and 1.1",
}


def _versions(stage: Stage) -> list[str | None]:
    tap = stage.manager.tap
    return [c.version for c in tap.log.connections] if tap is not None else []


def _plain(stage: Stage) -> int:
    tap = stage.manager.tap
    return sum(c.plain_text for c in tap.log.connections) if tap is not None else 0


def _refusal(stage: Stage | None, what: str) -> Finding:
    if stage is None:
        return not_tested(f"{what}: not run")
    sent = stage.requests() + (len(stage.relay.log.sessions) if stage.relay else 0)
    if not stage.reached:
        return fail(f"{what}: the agent still ran after {REFUSE_WAIT:.0f} s", excerpt=stage.log)
    if stage.exit_code in (None, 0) or "3001" not in stage.log or sent:
        return fail(
            f"{what}: not refused with 3001 (exit {stage.exit_code}, {sent} requests)",
            expected="a non-zero exit naming 3001, nothing sent",
            excerpt=stage.log,
        )
    return ok(f"{what}: refused with 3001 before any connection")


def _nothing_sent(stage: Stage | None, what: str) -> Finding:
    if stage is None:
        return not_tested(f"{what}: not run")
    if _plain(stage):
        return fail(f"{what}: the agent spoke plain text to an https URL", excerpt=stage.log)
    if stage.requests():
        rec = stage.manager.rec
        kinds = sorted({r.kind or r.path for r in rec.received})
        return fail(
            f"{what}: the agent accepted the server and sent {stage.requests()} requests "
            f"({', '.join(kinds) or 'channel or stray'})",
            expected="no request: the handshake refused",
            excerpt=stage.log,
        )
    if not _versions(stage):
        return not_tested(f"{what}: the agent never connected", excerpt=stage.log)
    return ok(f"{what}: {len(_versions(stage))} connection(s), handshake refused, nothing sent")


def _delivered(stage: Stage | None, what: str) -> Finding:
    if stage is None:
        return not_tested(f"{what}: not run")
    accepted = stage.manager.rec.accepted_reports()
    if not stage.reached or not accepted:
        return fail(
            f"{what}: no report accepted within the stage",
            expected="the agent trusts the provisioned CA and delivers",
            actual=f"{len(accepted)} reports accepted, TLS connections {_versions(stage)}",
            excerpt=stage.log,
        )
    versions = _versions(stage)
    old = [v for v in versions if v is not None and v not in MODERN]
    if old:
        return fail(f"{what}: negotiated {old[0]}", expected="TLS 1.2 or later")
    if _plain(stage):
        return fail(f"{what}: plain-text connections to an https URL", excerpt=stage.log)
    seen = sorted({v for v in versions if v})
    return ok(f"{what}: {len(accepted)} reports accepted over {', '.join(seen)}")


@check("MS-HTTP-11", classes=HTTP, role="agent")
async def tls_manager_certificate_verified(run: TlsRun) -> list[Finding]:
    """HTTPS to a manager whose certificate chains to manager/caBundle; nothing to one with an
    unknown CA, another host name or TLS < 1.2; http:// to a remote host refused."""
    out = [_delivered(run.stage("https-trusted"), "trusted manager")]
    for name, what in REFUSED_SERVERS.items():
        out.append(_nothing_sent(run.stage(name), f"manager with {what}"))
    out.append(_refusal(run.stage("http-remote"), "http:// manager URL to a .invalid host"))
    return out


@check("MS-HTTP-11", classes=CHANNEL, role="agent")
async def tls_channel_certificate_verified(run: TlsRun) -> list[Finding]:
    """The channel goes over wss to the trusted manager, never to one it must not trust."""
    if not any(s.channel for s in run.stages.values()):
        return [not_tested("the channel was not on in the TLS run")]
    out = []
    good = run.stage("https-trusted")
    if good is not None:
        peer = good.manager.rec.peer
        attempts = peer.attempts if peer is not None else []
        if not attempts:
            out.append(
                fail("no channel attempt reached the trusted https manager", excerpt=good.log)
            )
        else:
            kinds = sorted({a.kind for a in attempts})
            out.append(ok(f"channel over TLS to the trusted manager ({', '.join(kinds)})"))
    for name, what in REFUSED_SERVERS.items():
        stage = run.stage(name)
        if stage is None or not stage.channel:
            continue
        bad = stage.manager.rec.peer.attempts if stage.manager.rec.peer else []
        if bad:
            out.append(fail(f"{len(bad)} channel attempts reached a manager with {what}"))
        else:
            out.append(ok(f"no channel attempt reached a manager with {what}"))
    return out or [not_tested("no stage of this run judges the channel")]


@check("MS-SEC-18", classes=HTTP, role="agent")
async def tls_client_certificate_presented(run: TlsRun) -> list[Finding]:
    """A manager requiring a client certificate gets the one of manager/clientCertificate, and
    every message is still signed."""
    stage = run.stage("https-client-cert")
    found = _delivered(stage, "manager requiring a client certificate")
    if stage is None or found.status.value != "PASS":
        return [found]
    rec = stage.manager.rec
    posts = [r for r in rec.received if r.kind in ("Enrollment", "Report")]
    unsigned = [r for r in posts if "metersync-signature" not in r.headers or r.signature_problem]
    if unsigned:
        r = unsigned[0]
        return [
            fail(
                f"{len(unsigned)} of {len(posts)} messages without a valid signature",
                expected="a client certificate never replaces the signature",
                actual=r.signature_problem or "no MeterSync-Signature header",
            )
        ]
    return [ok(f"{found.summary}; all {len(posts)} messages signed and verified")]


def _relay_sessions(stage: Stage) -> str:
    assert stage.relay is not None
    return "; ".join(
        " ".join(f"{v}{'' if tls else '(plain)'}" for v, tls in s.commands)
        for s in stage.relay.log.sessions[:3]
    )


def _mail_over_tls(stage: Stage | None, what: str) -> Finding:
    if stage is None or stage.relay is None:
        return not_tested(f"{what}: not run")
    log = stage.relay.log
    plain = log.before_tls("AUTH", "MAIL", "DATA")
    logins = [(u, tls) for s in log.sessions for u, tls in s.logins]
    if plain or any(not tls for _, tls in logins):
        return fail(
            f"{what}: {', '.join(plain) or 'a login'} before TLS",
            actual=_relay_sessions(stage),
            excerpt=stage.log,
        )
    accepted = stage.manager.rec.accepted_reports()
    if not stage.reached or not accepted:
        return fail(
            f"{what}: no mail accepted within the stage",
            expected="TLS verified against transports/smtp/caBundle, login, mail",
            actual=_relay_sessions(stage) or "no session",
            excerpt=stage.log,
        )
    if not logins:
        return fail(f"{what}: the provisioned login was never used", actual=_relay_sessions(stage))
    versions = sorted({v for s in log.sessions for v in s.versions})
    return ok(f"{what}: {len(accepted)} mails, login and MAIL over {', '.join(versions)}")


def _no_mail(stage: Stage | None, what: str) -> Finding:
    if stage is None or stage.relay is None:
        return not_tested(f"{what}: not run")
    log = stage.relay.log
    logins = [u for s in log.sessions for u, _ in s.logins]
    mails = stage.manager.rec.reports()
    sent = [v for s in log.sessions for v, _ in s.commands if v in ("MAIL", "DATA")]
    if logins or mails or sent:
        return fail(
            f"{what}: {len(logins)} logins, {len(mails)} mails, {len(sent)} MAIL/DATA",
            expected="no login and no mail",
            actual=_relay_sessions(stage),
            excerpt=stage.log,
        )
    if not log.sessions:
        return not_tested(f"{what}: the agent never connected", excerpt=stage.log)
    return ok(f"{what}: {len(log.sessions)} sessions, no login, no mail ({_relay_sessions(stage)})")


@check("MS-SMTP-8", classes=SMTP, role="agent")
async def tls_smtp_relay_verified(run: TlsRun) -> list[Finding]:
    """STARTTLS and implicit TLS verified against transports/smtp/caBundle; nothing to an
    untrusted relay; no login without TLS; `security` `none` to a remote relay refused."""
    return [
        _mail_over_tls(run.stage("smtp-starttls"), "STARTTLS relay"),
        _mail_over_tls(run.stage("smtp-tls"), "implicit-TLS relay"),
        _no_mail(run.stage("smtp-untrusted"), "relay with a certificate from an unknown CA"),
        _no_mail(run.stage("smtp-plain-auth"), "relay offering AUTH without STARTTLS"),
        _refusal(run.stage("smtp-none-remote"), "security none to a .invalid relay"),
    ]
