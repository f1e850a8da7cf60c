"""The SMTP binding end to end: the agent's SmtpTransport → the manager's aiosmtpd server →
the same verification and storage as HTTP, over real SQLite and PostgreSQL; and an agent whose
relay answers 451 before 250."""

from __future__ import annotations

import asyncio
import base64
import random
import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP
from test_manager_support import Dev, Server, TestAgent, enrolled, free_port, new_token, store  # noqa: F401

from metersync import signing
from metersync_agent import enrollment
from metersync_agent.backoff import Delivered, Refused, RetryLater
from metersync_agent.config import ConfigError, settings_from_toml_text
from metersync_agent.service import AgentService
from metersync_agent.transport_smtp import SmtpTransport, build_mail, classify_reply
from metersync_manager.smtp_ingest import MAX_MAIL_BYTES, start_smtp
from metersync_manager.store import Store


class LoopThread:
    """An asyncio loop in a thread, running `setup(loop)` (which starts a server)."""

    def __init__(self, setup: Any) -> None:
        self._setup = setup
        self.loop = asyncio.new_event_loop()
        self.server: Any = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LoopThread:
        self._thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._setup(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def manager_smtp(s: Store) -> tuple[LoopThread, int]:
    port = free_port()
    return LoopThread(lambda: start_smtp(s, "127.0.0.1", port)), port


def transport(port: int, agent_id: str) -> SmtpTransport:
    return SmtpTransport(
        host="127.0.0.1",
        port=port,
        security="none",
        sender="agent@customer.example",
        recipient="reports@mps.example",
        agent_id=agent_id,
        timeout=10,
    )


def raw_reply(port: int, mail: bytes) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        c.ehlo()
        c.mail("x@example.org")
        c.rcpt("reports@mps.example")
        try:
            code, text = c.data(mail)
        except smtplib.SMTPDataError as exc:
            code, text = exc.smtp_code, exc.smtp_error
    return code, text.decode(errors="replace")


def test_mail_structure_is_chapter_9() -> None:
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n<Report/>\n'
    mail = build_mail(body, 'agent="a", alg="ed25519", sig="x"', "rid-1", "a", "f@x.org", "t@y.org")
    msg = message_from_bytes(mail, policy=policy.default)
    assert msg["Subject"] == "MeterSync report rid-1"
    assert msg.get_content_type() == "multipart/mixed"
    parts = list(msg.iter_parts())
    report = [p for p in parts if p.get_filename() == "report.xml"]
    sig = [p for p in parts if p.get_filename() == "report.xml.sig"]
    assert len(report) == 1 and len(sig) == 1
    assert report[0].get_content_type() == "application/vnd.metersync+xml"
    assert report[0]["Content-Transfer-Encoding"] == "base64"
    assert report[0].get_content_disposition() == "attachment"
    assert report[0].get_payload(decode=True) == body  # the exact bytes
    assert sig[0].get_content_type() == "text/plain"
    assert sig[0].get_payload(decode=True).decode().strip() == 'agent="a", alg="ed25519", sig="x"'
    assert b"\r\n" in mail and b"\n" not in mail.replace(b"\r\n", b"")


def test_reply_mapping() -> None:
    assert isinstance(classify_reply(451, "try later", "data"), RetryLater)
    refused = classify_reply(554, "5.6.0 MeterSync 1002 FORBIDDEN_XML_CONSTRUCT: doctype", "data")
    assert isinstance(refused, Refused) and refused.code == 1002
    bad_key = classify_reply(554, "MeterSync 2003 BAD_SIGNATURE: no", "data")
    assert isinstance(bad_key, RetryLater) and bad_key.alert
    assert isinstance(classify_reply(554, "content rejected", "data"), Refused)
    relay = classify_reply(550, "no such mailbox", "rcpt")
    assert isinstance(relay, RetryLater) and relay.alert
    # The alert names the relay's settings, not the manager's enrollment.
    assert "transports/smtp" in relay.action and "re-enroll" in bad_key.action


# An SMTP-only agent's settings without the [smtp] table (each test adds its own).
SMTP_ONLY_BASE = """
[manager]
url = "http://127.0.0.1:1"
enrollment_token = "tokentokentokentoken"
[http]
enabled = false
[targets]
include = ["127.0.0.254:9"]
[schedule]
poll_interval = 60
discovery_interval = 60
"""


def test_config_smtp_rules() -> None:
    base = SMTP_ONLY_BASE
    ok = settings_from_toml_text(
        base + '[smtp]\nhost = "127.0.0.1"\nport = 2525\nsecurity = "none"\n'
        'from = "a@x.org"\nto = "m@y.org"\n'
    )
    assert ok.smtp_enabled and not ok.http_enabled and ok.smtp_fallback_after == 3600
    with pytest.raises(ConfigError, match="MS-SMTP-8"):
        settings_from_toml_text(
            base + '[smtp]\nhost = "mail.example.com"\nport = 25\nsecurity = "none"\n'
            'from = "a@x.org"\nto = "m@y.org"\n'
        )
    with pytest.raises(ConfigError, match="MS-SMTP-8"):
        settings_from_toml_text(
            base + '[smtp]\nhost = "127.0.0.1"\nport = 25\nsecurity = "none"\n'
            'username = "u"\npassword = "p"\nfrom = "a@x.org"\nto = "m@y.org"\n'
        )
    with pytest.raises(ConfigError, match="MS-PRV-7"):
        settings_from_toml_text(base)


def test_config_smtp_ca_bundle(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """transports/smtp/caBundle (TOML: ca_bundle or ca_bundle_file) reaches the transport; a
    bundle without a certificate is refused with 3001."""
    from metersync_conformance.peers.pki import Pki

    mail_ca = Pki.create(tmp_path / "pki").mail
    base = (
        SMTP_ONLY_BASE
        + f"""[smtp]
host = "127.0.0.1"
port = 2525
security = "starttls"
from = "a@x.org"
to = "m@y.org"
ca_bundle_file = "{mail_ca.cert_file.name}"
"""
    )
    settings = settings_from_toml_text(base, mail_ca.cert_file.parent)
    assert settings.smtp_ca_bundle == mail_ca.cert_pem
    ctx = SmtpTransport.from_settings(settings, "agent").context()
    assert [c["subject"] for c in ctx.get_ca_certs()] == [
        c["subject"] for c in ssl.create_default_context(cadata=mail_ca.cert_pem).get_ca_certs()
    ]
    (mail_ca.cert_file.parent / "junk.pem").write_text("not a certificate", encoding="ascii")
    with pytest.raises(ConfigError, match="3001"):
        settings_from_toml_text(
            base.replace(mail_ca.cert_file.name, "junk.pem"), mail_ca.cert_file.parent
        )


def test_mailed_report_stored_once_with_http_and_refusals_coded(store: Store) -> None:  # noqa: F811
    agent = enrolled(store)
    body = agent.report([Dev("sn:hp:smtp1", counters=[("total", 100, {})])])
    rid = body.split(b"<reportId>")[1].split(b"</reportId>")[0].decode()
    srv, port = manager_smtp(store)
    with srv, Server(store) as http:
        t = transport(port, agent.agent_id)
        assert asyncio.run(t.post_report(body, agent.sign(body), rid)) == Delivered()
        assert asyncio.run(t.post_report(body, agent.sign(body), rid)) == Delivered()
        r = httpx.post(http.url + "/v1/reports", content=body, headers=agent.headers(body))
        assert b"<status>duplicate</status>" in r.content
        # Readable through the JSON read API, stored once.
        latest = httpx.get(
            http.url + "/api/v1/devices/sn:hp:smtp1/latest", headers=http.api_headers
        ).json()
        assert latest["reportId"] == rid
        assert store.count("reports") == 1 and store.count("readings") == 1
        # HTTP first, then by mail: 250 (duplicate), still one report.
        body2 = agent.report([Dev("sn:hp:smtp2")], sequence=2)
        httpx.post(http.url + "/v1/reports", content=body2, headers=agent.headers(body2))
        code, text = raw_reply(port, build_mail(body2, agent.sign(body2), "x", "a", "a@b", "c@d"))
        assert code == 250 and "duplicate" in text, (code, text)
        # Forged: signed over the base64 text instead of the bytes.
        body3 = agent.report([Dev("sn:hp:smtp3")], sequence=3)
        forged = agent.sign(base64.encodebytes(body3))
        code, text = raw_reply(port, build_mail(body3, forged, "x", "a", "a@b", "c@d"))
        assert code == 554 and "MeterSync 2003 BAD_SIGNATURE" in text
        out = asyncio.run(t.post_report(body3, forged, "x"))
        assert isinstance(out, RetryLater) and out.alert and "2003" in out.reason, out
        # A mail without a signature part: 2001; with two report parts: 1007.
        nosig = build_mail(body3, agent.sign(body3), "x", "a", "a@b", "c@d").replace(
            b'filename="report.xml.sig"', b'filename="notes.txt"'
        )
        assert "MeterSync 2001" in raw_reply(port, nosig)[1]
        assert store.count("reports") == 2  # nothing of the refused mails was stored
        codes = [r["code"] for r in store.mail_refusals()]
        assert 2003 in codes and 2001 in codes
        # SIZE is advertised at the spec's limit; a bigger declared size is refused with 552.
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            c.ehlo()
            assert int(c.esmtp_features["size"]) == MAX_MAIL_BYTES
            assert c.mail("a@b", [f"SIZE={MAX_MAIL_BYTES + 1}"])[0] == 552


# --- the agent against a relay that answers 451 before 250 ---------------------------------


class FlakyRelay:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.replies: list[int] = []
        self.mails: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.mails.append(envelope.original_content)
        if self.failures > 0:
            self.failures -= 1
            self.replies.append(451)
            return "451 4.3.0 try again later"
        self.replies.append(250)
        return "250 OK"


class LowRandom(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return min(b, 0.2)


@pytest.fixture
def relay() -> Iterator[tuple[FlakyRelay, int]]:
    handler = FlakyRelay(failures=1)
    port = free_port()

    async def setup() -> Any:
        return await asyncio.get_running_loop().create_server(
            lambda: SMTP(handler), "127.0.0.1", port
        )

    with LoopThread(setup):
        yield handler, port


def test_smtp_only_agent_retries_451_and_delivers_once(
    relay: tuple[FlakyRelay, int], tmp_path: Path
) -> None:
    handler, port = relay
    settings = settings_from_toml_text(f"""
[manager]
url = "http://127.0.0.1:9"
enrollment_token = "tokentokentokentoken"
[http]
enabled = false
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
from = "agent@customer.example"
to = "reports@mps.example"
[targets]
include = ["127.0.0.254:9"]
[schedule]
poll_interval = 3600
discovery_interval = 3600
""")
    state = tmp_path / "state"
    identity = enrollment.load_or_create_identity(state)
    # Enrollment is HTTP's business (tested elsewhere): mark this agent enrolled.
    marker = enrollment._marker(settings.manager_url, settings.enrollment_token)
    enrollment.write_atomic(state / enrollment.ENROLLED_FILE, marker.encode())

    async def go() -> tuple[int, int]:
        service = AgentService(settings, state, rng=LowRandom())

        async def discover_nothing(*a: Any, **k: Any) -> list[Any]:
            return []

        import metersync_agent.discovery as discovery

        real = discovery.discover
        discovery.discover = discover_nothing  # type: ignore[assignment]
        try:
            task = asyncio.create_task(service.run())
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and 250 not in handler.replies:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # nothing is mailed again after the 250
            service.stop.set()
            await task
        finally:
            discovery.discover = real  # type: ignore[assignment]
        return len(handler.mails), handler.replies.count(250)

    mails, accepted = asyncio.run(go())
    assert handler.replies[:2] == [451, 250]
    assert mails == 2 and accepted == 1
    first, second = (message_from_bytes(m, policy=policy.default) for m in handler.mails)
    assert first["Subject"] == second["Subject"]  # the same report, resent
    parts = [
        [p.get_payload(decode=True) for p in m.iter_parts() if p.get_filename() == "report.xml"]
        for m in (first, second)
    ]
    assert parts[0] == parts[1]  # byte for byte (MS-DEL-7)
    body = parts[0][0]
    sig_part = [p for p in first.iter_parts() if p.get_filename() == "report.xml.sig"][0]
    sig = signing.parse(sig_part.get_payload(decode=True).decode().strip())
    signing.verify(identity.public_key, body, sig)  # over the exact decoded bytes
    from metersync_agent.outbox import Outbox

    with Outbox(state / "outbox.sqlite3") as ob:
        assert ob.status().queued == 0 and ob.status().delivered_reports == 1


def test_bounces_and_forwarded_reports_are_not_reports(store: Store) -> None:  # noqa: F811
    """MS-SMTP-14: only a top-level report.xml part is a report; a bounce is never one."""
    agent = enrolled(store)
    body = agent.report([Dev("sn:hp:bounce1")])
    mail = build_mail(body, agent.sign(body), "x", "a", "a@b", "c@d")

    def wrapping(kind: str, subject: str) -> bytes:  # the report mail as a message/rfc822 part
        return (
            (
                f'Subject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: {kind}; boundary="w"\r\n'
                "\r\n--w\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
                "--w\r\nContent-Type: message/rfc822\r\n\r\n"
            ).encode()
            + mail
            + b"\r\n--w--\r\n"
        )

    forward = wrapping("multipart/mixed", "Fwd: MeterSync report")
    bounce = wrapping("multipart/report; report-type=delivery-status", "Undelivered Mail")
    srv, port = manager_smtp(store)
    with srv:
        code, text = raw_reply(port, forward)
        assert code == 554 and "MeterSync 1007" in text, (code, text)
        code, text = raw_reply(port, bounce)
        assert code == 554 and "MeterSync 1007" in text, (code, text)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:  # the report itself, null sender
            c.ehlo()
            c.mail("<>")
            c.rcpt("reports@mps.example")
            code, text = c.data(mail)  # smtplib returns the reply to the end of data
        assert code == 554 and b"null sender" in text, (code, text)
        assert store.count("reports") == 0  # nothing ingested
        assert [r["code"] for r in store.mail_refusals()] == [1007, 1007, 1007]
        assert raw_reply(port, mail)[0] == 250  # the same mail, sent by the agent: a report
    assert store.count("reports") == 1
