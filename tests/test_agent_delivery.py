"""The agent's HTTP(S) delivery against a real HTTP server on loopback.

A tiny test-only manager (Quart, served by Hypercorn in a thread) answers from a script:
503 with Retry-After, 429, a 400 refusal, receipts, duplicates. TLS uses a CA generated here
with `cryptography`; a small CONNECT proxy carries HTTPS. The agent side is the real transport,
the real outbox and the real service loop; nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gzip
import ipaddress
import os
import random
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, Response, request

import metersync_generated.v1 as model
from metersync import signing, xml_edge
from metersync.errors import ProtocolError
from metersync_agent import enrollment
from metersync_agent.backoff import Delivered, Refused, RetryLater
from metersync_agent.config import ConfigError, load_config, settings_from_toml_text
from metersync_agent.outbox import Outbox
from metersync_agent.service import OUTBOX_FILE, AgentService
from metersync_agent.transport_http import HttpTransport, ssl_context

CT = "application/vnd.metersync+xml"
TOKEN = "test-token-0123456789abcdef"


# --- a scripted manager -------------------------------------------------------------------


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    raw: bytes  # as received on the wire
    body: bytes  # after Content-Encoding
    at: float


@dataclass
class ScriptedManager:
    """Answers /v1/enroll and /v1/reports; `plan` holds canned answers used first, in order."""

    plan: dict[str, deque[tuple[int, bytes, dict[str, str]]]] = field(
        default_factory=lambda: {"enroll": deque(), "report": deque()}
    )
    seen: list[Seen] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # agentId → public key (base64)
    stored: dict[str, bytes] = field(default_factory=dict)  # reportId → body

    def error(
        self,
        name: str,
        status: int | None = None,
        retry_after: int | None = None,
        path: str = "report",
    ) -> None:
        exc = ProtocolError(name, f"scripted {name}", retry_after=retry_after)
        body = xml_edge.to_bytes(xml_edge.error_message(exc))
        headers = {"Content-Type": CT}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        self.plan[path].append((status or exc.http_status, body, headers))

    def app(self) -> Quart:
        app = Quart("scripted-manager")

        async def handle(kind: str) -> Response:
            raw = await request.get_data()
            body = gzip.decompress(raw) if request.headers.get("Content-Encoding") else raw
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.seen.append(Seen(kind, headers, raw, body, time.time()))
            if self.plan[kind]:
                status, answer, headers = self.plan[kind].popleft()
                return Response(answer, status=status, headers=headers)
            msg = xml_edge.parse_message(body).obj
            if kind == "enroll":  # signed with the key it carries (proof of possession)
                key = base64.b64encode(msg.public_key.value).decode()
                sig = signing.parse(request.headers.get(signing.HEADER))
                assert sig.agent_id == msg.agent_id
                signing.verify(key, body, sig)
                self.keys[msg.agent_id] = key
                mid = msg.message_id
            duplicate = False
            if kind == "report":
                sig = signing.parse(request.headers.get(signing.HEADER))
                signing.verify(self.keys[sig.agent_id], body, sig)  # over the uncompressed bytes
                mid = msg.report_id
                duplicate = mid in self.stored
                assert self.stored.setdefault(mid, body) == body  # a resend is byte-identical
            status = model.ReceiptStatus.DUPLICATE if duplicate else model.ReceiptStatus.ACCEPTED
            receipt = model.Receipt(
                version="1.0",
                message_id=mid,
                agent_id=msg.agent_id,
                status=status,
                received_at=enrollment.now_xml(),
            )
            return Response(xml_edge.to_bytes(receipt), status=200, content_type=CT)

        @app.post("/v1/enroll")
        async def enroll() -> Response:
            return await handle("enroll")

        @app.post("/v1/reports")
        async def reports() -> Response:
            return await handle("report")

        return app

    def reports(self) -> list[Seen]:
        return [s for s in self.seen if s.path == "report"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """Hypercorn serving an ASGI app on 127.0.0.1 in its own thread and event loop."""

    def __init__(self, app: Any, port: int | None = None, **tls: Any) -> None:
        self.app, self.port, self.tls = app, port or free_port(), tls
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ServerThread:
        cfg = Config()
        cfg.bind = [f"127.0.0.1:{self.port}"]
        cfg.accesslog = None
        cfg.errorlog = None
        cfg.graceful_timeout = 0.5
        for k, v in self.tls.items():
            setattr(cfg, k, v)
        ready = threading.Event()

        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await serve(self.app, cfg, shutdown_trigger=self._stop.wait)

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        ready.wait(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("test server did not start")

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls.get("certfile") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"


# --- PKI and proxy ------------------------------------------------------------------------


@dataclass
class Pki:
    ca_pem: str
    server_cert: Path
    server_key: Path
    client_pem: str  # certificate + key
    ca_file: Path


def _cert(subject: str, key: Any, issuer: x509.Name, issuer_key: Any, *, ca: bool, san: bool):
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    if san:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path) -> Pki:
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MeterSync test CA")])
    ca = _cert("MeterSync test CA", ca_key, ca_name, ca_key, ca=True, san=False)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _cert("127.0.0.1", srv_key, ca_name, ca_key, ca=False, san=True)
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _cert("agent", cli_key, ca_name, ca_key, ca=False, san=False)
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(srv.public_bytes(pem))
    (folder / "server.key").write_bytes(srv_key.private_bytes(pem, pkcs8, none))
    client = cli.public_bytes(pem) + cli_key.private_bytes(pem, pkcs8, none)
    return Pki(
        ca.public_bytes(pem).decode(),
        folder / "server.pem",
        folder / "server.key",
        client.decode(),
        folder / "ca.pem",
    )


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on loopback that records the tunnels it opened."""

    def __init__(self) -> None:
        self.port = free_port()
        self.tunnels: list[str] = []
        self._ready = threading.Event()

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        finally:
            w.close()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        line = (await r.readline()).decode()
        while (await r.readline()) not in (b"\r\n", b""):
            pass
        method, target, _ = line.split(" ", 2)
        if method != "CONNECT":
            w.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            w.close()
            return
        self.tunnels.append(target)
        host, port = target.rsplit(":", 1)
        ur, uw = await asyncio.open_connection(host, int(port))
        w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await w.drain()
        await asyncio.gather(self._pipe(r, uw), self._pipe(ur, w), return_exceptions=True)

    def __enter__(self) -> ConnectProxy:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            self._ready.set()
            async with server:
                await self._stop.wait()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


# --- helpers ------------------------------------------------------------------------------


def toml_config(url: str, **extra: str) -> str:
    manager = "\n".join(f'{k} = """{v}"""' for k, v in extra.items())
    return f"""
[manager]
url = "{url}"
enrollment_token = "{TOKEN}"
{manager}
[http]
timeout = 5
[targets]
include = ["127.0.0.254:9"]
[[credentials]]
version = "2c"
community = "public"
[schedule]
poll_interval = 3600
discovery_interval = 3600
jitter = 0
start_delay_max = 0
[snmp]
timeout = 0.2
retries = 0
"""


def signed_example(identity: enrollment.AgentIdentity) -> tuple[bytes, str, str]:
    """The spec's example report as this agent's, with a fresh reportId: (body, sig, id)."""
    from metersync_spec import EXAMPLES_DIR

    msg = xml_edge.parse_message((EXAMPLES_DIR / "valid" / "report.xml").read_bytes()).obj
    msg.agent_id = identity.agent_id
    msg.report_id = str(__import__("uuid").uuid4())
    body = xml_edge.to_bytes(msg)
    return body, identity.sign(body), msg.report_id


@pytest.fixture
def identity(tmp_path: Path) -> enrollment.AgentIdentity:
    return enrollment.load_or_create_identity(tmp_path / "state")


def transport_for(url: str, identity: enrollment.AgentIdentity, **kw: Any) -> HttpTransport:
    return HttpTransport(
        reports_url=url + "/v1/reports",
        enroll_url=url + "/v1/enroll",
        agent_id=identity.agent_id,
        **kw,
    )


# --- transport: one request, one outcome --------------------------------------------------


def test_503_with_retry_after_then_receipt(identity) -> None:
    mgr = ScriptedManager(keys={identity.agent_id: identity.public_key})
    mgr.error("SERVICE_UNAVAILABLE", retry_after=7)
    body, sig, rid = signed_example(identity)

    async def go() -> list[Any]:
        async with transport_for(srv.url, identity) as t:
            return [await t.post_report(body, sig, rid) for _ in range(3)]

    with ServerThread(mgr.app()) as srv:
        first, second, third = asyncio.run(go())
    assert isinstance(first, RetryLater) and first.retry_after == 7.0
    assert "4002" in first.reason
    assert second == Delivered(duplicate=False)
    assert third == Delivered(duplicate=True)  # the manager had it: still delivered
    assert len({s.body for s in mgr.reports()}) == 1


def test_429_is_retried_and_400_is_refused(identity) -> None:
    mgr = ScriptedManager(keys={identity.agent_id: identity.public_key})
    mgr.error("RATE_LIMITED", retry_after=2)
    mgr.error("SCHEMA_VIOLATION")
    mgr.error("UNKNOWN_AGENT")
    mgr.plan["report"].append((502, b"<html>bad gateway</html>", {"Content-Type": "text/html"}))
    body, sig, rid = signed_example(identity)

    async def go() -> list[Any]:
        async with transport_for(srv.url, identity) as t:
            return [await t.post_report(body, sig, rid) for _ in range(4)]

    with ServerThread(mgr.app()) as srv:
        limited, schema, unknown, gateway = asyncio.run(go())
    assert isinstance(limited, RetryLater) and limited.retry_after == 2.0
    assert isinstance(schema, Refused) and schema.code == 1008
    assert isinstance(unknown, RetryLater) and unknown.alert and "2002" in unknown.reason
    assert isinstance(gateway, RetryLater) and "502" in gateway.reason


def test_receipt_for_another_message_is_not_delivery(identity) -> None:
    mgr = ScriptedManager()
    other = model.Receipt(
        version="1.0",
        message_id="00000000-0000-4000-8000-000000000000",
        agent_id=identity.agent_id,
        status=model.ReceiptStatus.ACCEPTED,
        received_at=enrollment.now_xml(),
    )
    mgr.plan["report"].append((200, xml_edge.to_bytes(other), {"Content-Type": CT}))
    body, sig, rid = signed_example(identity)

    async def go() -> Any:
        async with transport_for(srv.url, identity) as t:
            return await t.post_report(body, sig, rid)

    with ServerThread(mgr.app()) as srv:
        out = asyncio.run(go())
    assert isinstance(out, RetryLater) and "not for" in out.reason


def test_connection_refused_is_retry(identity) -> None:
    body, sig, rid = signed_example(identity)

    async def go() -> Any:
        async with transport_for(f"http://127.0.0.1:{free_port()}", identity) as t:
            return await t.post_report(body, sig, rid)

    out = asyncio.run(go())
    assert isinstance(out, RetryLater) and "cannot reach" in out.reason


def test_gzip_on_the_wire_signature_over_plain_bytes(identity) -> None:
    mgr = ScriptedManager(keys={identity.agent_id: identity.public_key})
    body, sig, rid = signed_example(identity)

    async def go(use_gzip: bool) -> Any:
        async with transport_for(srv.url, identity, use_gzip=use_gzip) as t:
            return await t.post_report(body, sig, rid)

    with ServerThread(mgr.app()) as srv:
        assert asyncio.run(go(True)) == Delivered()
        assert asyncio.run(go(False)) == Delivered(duplicate=True)
    zipped, plain = mgr.reports()
    assert zipped.headers.get("content-encoding") == "gzip"
    assert zipped.raw != body and gzip.decompress(zipped.raw) == body
    assert len(zipped.raw) < len(body) / 2
    assert "content-encoding" not in plain.headers and plain.raw == body
    assert zipped.headers["content-type"] == CT
    assert zipped.headers[signing.HEADER.lower()] == sig


def test_tls_with_provisioned_ca_client_certificate_and_proxy(tmp_path: Path, identity) -> None:
    pki = make_pki(tmp_path)
    mgr = ScriptedManager(keys={identity.agent_id: identity.public_key})
    body, sig, rid = signed_example(identity)
    tls = {
        "certfile": str(pki.server_cert),
        "keyfile": str(pki.server_key),
        "ca_certs": str(pki.ca_file),
        "verify_mode": ssl.CERT_REQUIRED,
    }

    async def go(ctx: ssl.SSLContext | None, proxy: str | None = None) -> Any:
        async with transport_for(srv.url, identity, verify=ctx, proxy=proxy) as t:
            return await t.post_report(body, sig, rid)

    with ServerThread(mgr.app(), **tls) as srv, ConnectProxy() as proxy:
        # the system trust store does not know our CA
        untrusted = asyncio.run(go(None))
        # our CA, but no client certificate: the server refuses the handshake
        no_client = asyncio.run(go(ssl_context(pki.ca_pem, None)))
        full = ssl_context(pki.ca_pem, pki.client_pem, tmp_path / "state")
        direct = asyncio.run(go(full))
        proxied = asyncio.run(go(full, f"http://127.0.0.1:{proxy.port}"))
    assert isinstance(untrusted, RetryLater) and "CERTIFICATE_VERIFY_FAILED" in untrusted.reason
    assert isinstance(no_client, RetryLater)
    assert direct == Delivered() and proxied == Delivered(duplicate=True)
    assert proxy.tunnels == [f"127.0.0.1:{srv.port}"]
    assert len(mgr.reports()) == 2  # the refused handshake never reached the app
    key_file = tmp_path / "state" / "client-certificate.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600


# --- identity and enrollment --------------------------------------------------------------


def test_identity_is_created_once_with_a_private_key_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    a = enrollment.load_or_create_identity(state)
    b = enrollment.load_or_create_identity(state)
    assert a.agent_id == b.agent_id and a.public_key == b.public_key
    assert (state / "agent-key.pem").stat().st_mode & 0o777 == 0o600
    os.chmod(state / "agent-key.pem", 0o644)
    enrollment.load_or_create_identity(state)
    assert (state / "agent-key.pem").stat().st_mode & 0o777 == 0o600


def test_enrollment_is_signed_retried_then_remembered(tmp_path: Path) -> None:
    state = tmp_path / "state"
    mgr = ScriptedManager()
    mgr.error("SERVICE_UNAVAILABLE", retry_after=1, path="enroll")
    with ServerThread(mgr.app()) as srv:
        settings = settings_from_toml_text(toml_config(srv.url))
        ident = enrollment.load_or_create_identity(state)

        async def go() -> list[enrollment.EnrollResult]:
            async with HttpTransport.from_settings(settings, ident.agent_id, state) as t:
                first = await enrollment.enroll(settings, ident, t, state, max_wait=30)
                again = await enrollment.enroll(settings, ident, t, state, max_wait=30)
                return [first, again]

        t0 = time.time()
        first, again = asyncio.run(go())
    assert first.ok and not first.already and again.already
    sent = [s for s in mgr.seen if s.path == "enroll"]
    assert len(sent) == 2
    first_msg, second_msg = (xml_edge.parse_message(s.body).obj for s in sent)
    # each attempt is a new message (fresh createdAt, never a clock-skew refusal) of the same
    # agent and key
    assert first_msg.message_id != second_msg.message_id
    assert first_msg.agent_id == second_msg.agent_id == ident.agent_id
    assert first_msg.public_key.value == second_msg.public_key.value
    assert sent[1].at - sent[0].at >= 1.0 - 0.05 and time.time() - t0 < 15
    assert mgr.keys[ident.agent_id] == ident.public_key
    assert enrollment.is_enrolled(state, settings.manager_url, TOKEN)
    assert not enrollment.is_enrolled(state, settings.manager_url, TOKEN + "x")  # new token
    assert not enrollment.is_enrolled(state, "http://127.0.0.1:1", TOKEN)  # new manager


def test_refused_enrollment_is_reported(tmp_path: Path) -> None:
    mgr = ScriptedManager()
    mgr.error("ENROLLMENT_TOKEN_USED", path="enroll")
    with ServerThread(mgr.app()) as srv:
        settings = settings_from_toml_text(toml_config(srv.url))
        ident = enrollment.load_or_create_identity(tmp_path)

        async def go() -> enrollment.EnrollResult:
            async with HttpTransport.from_settings(settings, ident.agent_id) as t:
                return await enrollment.enroll(settings, ident, t, tmp_path, max_wait=10)

        result = asyncio.run(go())
    assert not result.ok and "2007" in result.message
    assert not enrollment.is_enrolled(tmp_path, settings.manager_url, TOKEN)


# --- the service's sender: outbox → transport ---------------------------------------------


async def _run_service(service: AgentService, until: Any, timeout: float) -> None:
    task = asyncio.create_task(service.run())
    deadline = time.monotonic() + timeout
    try:
        while not until():
            assert not task.done(), task.result()
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.05)
    finally:
        service.stop.set()
        assert await asyncio.wait_for(task, 15) == 0


def test_service_backs_off_while_the_manager_is_down_then_delivers(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    settings = settings_from_toml_text(toml_config(f"http://127.0.0.1:{port}"))
    mgr = ScriptedManager()
    with ServerThread(mgr.app(), port=port):  # enroll and deliver the first report
        service = AgentService(settings, state)

        def delivered() -> bool:  # received, and the receipt processed (else it is resent)
            return len(mgr.reports()) >= 1 and service.outbox.status().queued == 0

        asyncio.run(_run_service(service, delivered, 20))
    # the manager is down: the next report meets a refused connection and backs off
    service = AgentService(settings, state, rng=random.Random(5))

    def tried() -> bool:
        row = service.outbox.oldest() if service.outbox else None
        return row is not None and row.attempts >= 1

    asyncio.run(_run_service(service, tried, 20))
    with Outbox(state / OUTBOX_FILE) as ob:
        queued = ob.oldest()
        assert queued is not None and queued.attempts == 1
        wait = queued.next_attempt_at - time.time()
        assert -1.0 < wait <= 5.0  # attempt 0: uniform(0, 5 s), persisted with the row
        assert "cannot reach" in ob._db.execute("SELECT last_error FROM report").fetchone()[0]
    # back up, answering 503 + Retry-After first: the agent restarts and delivers
    mgr.error("SERVICE_UNAVAILABLE", status=503, retry_after=1)
    with ServerThread(mgr.app(), port=port):
        service = AgentService(settings, state, rng=random.Random(5))

        def done() -> bool:
            ids = [s.body for s in mgr.reports()]
            return ids.count(queued.body) >= 2 and service.outbox.status().queued == 0

        asyncio.run(_run_service(service, done, 30))
    tries = [s for s in mgr.reports() if s.body == queued.body]
    # refused with 503, then accepted: byte-identical both times
    assert len(tries) == 2, [(s.at, s.headers.get("content-length")) for s in mgr.reports()]
    assert tries[1].at - tries[0].at >= 1.0 - 0.05  # Retry-After honoured
    assert len([s for s in mgr.seen if s.path == "enroll"]) == 1  # enrollment remembered


def test_service_dead_letters_a_refused_report_and_goes_on(tmp_path: Path) -> None:
    state = tmp_path / "state"
    mgr = ScriptedManager()
    with ServerThread(mgr.app()) as srv:
        settings = settings_from_toml_text(toml_config(srv.url))
        service = AgentService(settings, state)
        mgr.error("SCHEMA_VIOLATION")  # after enrollment, the first report is refused
        asyncio.run(_run_service(service, lambda: len(mgr.reports()) >= 1, 20))
        with Outbox(state / OUTBOX_FILE) as ob:
            st = ob.status()
        assert (st.queued, st.refused) == (0, 1)


# --- configuration ------------------------------------------------------------------------


def test_provisioning_xml_and_toml_mean_the_same(tmp_path: Path) -> None:
    text = toml_config("https://manager.example:8443") + '[[credentials]]\nversion = "3"\n'
    text += 'user = "mps"\nauth_protocol = "SHA"\nauth_key = "authpass1"\n'
    text = text.replace('[[credentials]]\nversion = "2c"', '[[credentials]]\nversion = "1"', 1)
    from_toml = settings_from_toml_text(text)
    xml = tmp_path / "agent.xml"
    assert from_toml.provisioning is not None
    xml.write_bytes(xml_edge.to_bytes(from_toml.provisioning))
    os.chmod(xml, 0o600)
    from_xml = load_config(xml)
    assert from_xml == from_toml
    assert [c.version for c in from_xml.credentials] == ["1", "3"]
    assert from_xml.reports_url == "https://manager.example:8443/v1/reports"
    assert from_xml.retention.max_reports == 100_000  # defaults of the spec's Table 17-1
    assert (from_xml.http_timeout, from_xml.gzip, from_xml.device_budget) == (5.0, False, 30.0)


def test_xml_credentials_keep_document_order(tmp_path: Path) -> None:
    settings = settings_from_toml_text(toml_config("http://127.0.0.1:1"))
    assert settings.provisioning is not None
    data = xml_edge.to_bytes(settings.provisioning).replace(
        b'<v2c community="public"/>', b'<v3 user="first"/><v2c community="public"/>'
    )
    path = tmp_path / "p.xml"
    path.write_bytes(data)
    assert [c.version for c in load_config(path).credentials] == ["3", "2c"]


def test_bad_provisioning_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "p.xml"
    path.write_bytes(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><Provisioning/>')
    with pytest.raises(ConfigError, match="1002"):
        load_config(path)
    bad_token = toml_config("http://127.0.0.1:1").replace(TOKEN, "short")
    with pytest.raises(ConfigError, match="enrollmentToken"):
        settings_from_toml_text(bad_token)
    with pytest.raises(ConfigError, match="MS-HTTP-11"):  # plain http off loopback
        settings_from_toml_text(toml_config("http://manager.example:8080"))
    settings_from_toml_text(toml_config("http://localhost:8080"))  # loopback may be plain
    too_old = toml_config("http://127.0.0.1:1") + "[outbox]\nmax_age_days = 400\n"
    with pytest.raises(ConfigError, match="maxAgeDays"):
        settings_from_toml_text(too_old)


# --- the agent process opens no listening socket ------------------------------------------


def _listening_inodes() -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        if path.exists():
            for line in path.read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A":  # TCP_LISTEN
                    inodes.add(cols[9])
    unix = Path("/proc/net/unix")
    for line in unix.read_text().splitlines()[1:]:
        cols = line.split()
        if int(cols[3], 16) & 0x10000:  # __SO_ACCEPTCON: a listening unix socket
            inodes.add(cols[6])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_agent_process_never_listens(tmp_path: Path) -> None:
    mgr = ScriptedManager()
    with ServerThread(mgr.app()) as srv:
        cfg = tmp_path / "agent.toml"
        cfg.write_text(toml_config(srv.url))
        os.chmod(cfg, 0o600)
        agent = [sys.executable, "-m", "metersync_agent.service"]
        state = ["--state-dir", str(tmp_path / "state")]
        # `provision` stores the document; `run` without --config uses it
        subprocess.run([*agent, "provision", str(cfg), *state], check=True, capture_output=True)
        proc = subprocess.Popen(
            [*agent, "run", *state, "--log-level", "warning"],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            samples = []
            while time.monotonic() < deadline and (len(mgr.reports()) < 1 or len(samples) < 20):
                assert proc.poll() is None, proc.communicate()[1]
                samples.append(_socket_inodes(proc.pid))
                assert not samples[-1] & _listening_inodes()
                time.sleep(0.05)
            assert mgr.reports(), "the agent delivered nothing"
            assert any(samples), "the agent had no socket at all: the check saw nothing"
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "outbox closed" not in err  # quiet at warning level


def test_provision_checks_and_stores_the_document(tmp_path: Path) -> None:
    agent = [sys.executable, "-m", "metersync_agent.service", "provision"]
    state = tmp_path / "state"
    bad = tmp_path / "bad.toml"
    bad.write_text(toml_config("http://manager.example:80"))  # plain http off loopback
    out = subprocess.run([*agent, str(bad), "--state-dir", str(state)], capture_output=True)
    assert out.returncode == 2 and b"MS-HTTP-11" in out.stderr
    assert not (state / "provisioning.xml").exists()  # nothing of a refused document applied
    good = tmp_path / "agent.toml"
    v3_first = '[[credentials]]\nversion = "3"\nuser = "mps"\n'
    good.write_text(v3_first + toml_config("http://127.0.0.1:8470"))
    out = subprocess.run([*agent, str(good), "--state-dir", str(state)], capture_output=True)
    assert out.returncode == 0, out.stderr
    stored = state / "provisioning.xml"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert load_config(stored) == settings_from_toml_text(good.read_text())
    assert [c.version for c in load_config(stored).credentials] == ["3", "2c"]  # TOML order
    assert TOKEN.encode() not in out.stdout + out.stderr  # no secret on the terminal
