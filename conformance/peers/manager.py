"""The manager the harness plays against an agent under test: a small Quart app on loopback.

It implements the HTTP binding's two endpoints (`POST /v1/enroll`, `POST /v1/reports`) well
enough for an agent to run, and the channel endpoints (peers/channel.py); it records every
request exactly as received (time, path, headers, body) with what it concluded, and can be
told to be unavailable: answer 503 (or 429), with or without `Retry-After`, for the next N
report posts or until told otherwise, or play a script of answers (peers/answers.py: receipts for
another report, hostile XML, redirects, vendor codes…), one per report post. It is served under
a base path (MS-HTTP-1); requests anywhere else are recorded as strays. The checks judge the
agent from these records afterwards.

With `ServerTls` it serves HTTPS (Hypercorn's TLS, the harness's throw-away certificates,
optionally requiring a client certificate, or offering only TLS 1.0 and 1.1) behind a TLS tap
(peers/tls_tap.py) that records each connection's handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import socket
import ssl
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, Response, request

import metersync_generated.v1 as model
from metersync import signing, xml_edge
from metersync.errors import ProtocolError
from metersync_conformance.peers.channel import ChannelPeer, wait_until
from metersync_conformance.peers.channel import register as register_channel
from metersync_conformance.wire import CONTENT_TYPE, now, xml_time

BASE_PATH = "/metersync-base"  # the manager URL's path: every endpoint must be under it


@dataclass
class Received:
    """One request the agent made, and what the harness answered."""

    t: float  # time.monotonic() at arrival
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes  # after Content-Encoding was undone
    kind: str | None = None
    obj: Any = None
    problem: str | None = None  # why the document is not a valid MeterSync message
    signature_problem: str | None = None
    answer: int = 0
    answer_kind: str = ""  # "accepted" / "duplicate" / "unavailable" / "Error <code>"
    mail: bytes | None = None  # the whole mail, when the report came by SMTP
    script: str | None = None  # the scripted answer played, if any (peers/answers.py)
    encoding: str = ""  # the request's Content-Encoding

    @property
    def report_id(self) -> str | None:
        return self.obj.report_id if self.kind == "Report" else None

    @property
    def sequence(self) -> int | None:
        return int(self.obj.sequence) if self.kind == "Report" else None

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass
class Outage:
    status: int = 503  # 503 or 429
    retry_after: int | None = None
    remaining: int | None = None  # report posts to refuse; None: until cleared


@dataclass
class Recorder:
    received: list[Received] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # agentId -> public key (base64)
    stored: dict[str, str] = field(default_factory=dict)  # reportId -> digest
    outages: deque[Outage] = field(default_factory=deque)
    scripts: deque[str] = field(default_factory=deque)
    strays: list[tuple[float, str, str]] = field(default_factory=list)  # (t, method, path)
    base_url: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    peer: ChannelPeer | None = None  # the channel endpoints' state (fake_channel)

    def reports(self) -> list[Received]:
        return [r for r in self.received if r.kind == "Report"]

    def accepted_reports(self) -> list[Received]:
        return [r for r in self.received if r.kind == "Report" and r.answer_kind == "accepted"]

    def unavailable(
        self, status: int = 503, retry_after: int | None = None, count: int | None = None
    ) -> None:
        self.outages.append(Outage(status, retry_after, count))

    def available(self) -> None:
        self.outages.clear()

    def play(self, scripts: list[str]) -> None:
        """Answer the next report posts with these scripted answers (answers.ANSWERS), in order."""
        self.scripts.extend(scripts)

    async def wait_for(self, pred: Any, timeout: float, poll: float = 1.0) -> bool:
        """Wait until pred() is true (re-evaluated after every request) or the timeout."""
        return await wait_until(self.changed, pred, timeout, poll)


def _xml(obj: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    body = xml_edge.to_bytes(obj)
    return Response(body, status=status, content_type=CONTENT_TYPE, headers=headers or {})


def _error(exc: ProtocolError, headers: dict[str, str] | None = None) -> Response:
    return _xml(xml_edge.error_message(exc), exc.http_status, headers)


def create_app(rec: Recorder) -> Quart:
    app = Quart("metersync-conformance-manager")
    if rec.peer is None:
        rec.peer = ChannelPeer(rec.keys)
    register_channel(
        app, rec.peer, BASE_PATH
    )  # records channel attempts even when the agent has it off

    async def _receive() -> Received:
        raw = await request.get_data()
        body = raw
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(raw)
            except OSError:
                body = raw
        headers = {k.lower(): v for k, v in request.headers.items()}
        item = Received(time.monotonic(), request.path, headers, body)
        item.encoding = headers.get("content-encoding", "")
        rec.received.append(item)
        try:
            msg = xml_edge.parse_message(body)
            item.kind, item.obj = msg.kind, msg.obj
        except ProtocolError as exc:
            item.problem = str(exc)
        return item

    def _done(item: Received, resp: Response, kind: str) -> Response:
        item.answer, item.answer_kind = resp.status_code, kind
        rec.changed.set()
        return resp

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "DELETE", "HEAD"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE", "HEAD"])
    async def anywhere(path: str) -> Response:
        full = "/" + path
        if request.method == "POST" and full == BASE_PATH + "/v1/enroll":
            return await enroll()
        if request.method == "POST" and full == BASE_PATH + "/v1/reports":
            return await reports()
        rec.strays.append((time.monotonic(), request.method, full))
        if request.method == "POST":  # a MeterSync document posted to the wrong place: kept
            item = await _receive()
            return _done(item, Response("", status=404), "Error 404")
        rec.changed.set()
        return Response("", status=404)

    async def enroll() -> Response:
        item = await _receive()
        if item.kind != "Enrollment":
            exc = ProtocolError(
                "UNKNOWN_MESSAGE", item.problem or f"not an Enrollment: {item.kind}"
            )
            return _done(item, _error(exc), f"Error {exc.code}")
        enr: model.Enrollment = item.obj
        import base64

        key = base64.b64encode(enr.public_key.value).decode("ascii")
        header = item.headers.get(signing.HEADER.lower())
        if header:
            try:
                signing.verify(key, item.body, signing.parse(header))
            except ProtocolError as exc:
                item.signature_problem = str(exc)
        dup = rec.keys.get(enr.agent_id) == key
        rec.keys[enr.agent_id] = key
        receipt = model.Receipt(
            version=xml_edge.PROTOCOL_VERSION,
            message_id=enr.message_id,
            agent_id=enr.agent_id,
            status=model.ReceiptStatus.DUPLICATE if dup else model.ReceiptStatus.ACCEPTED,
            received_at=xml_time(now()),
        )
        return _done(item, _xml(receipt, 200), "duplicate" if dup else "accepted")

    async def reports() -> Response:
        item = await _receive()
        if rec.scripts and item.kind == "Report":
            from metersync_conformance.peers.answers import play

            name = rec.scripts.popleft()
            item.script = name
            answer = await play(name, item, rec)
            if answer is not None:
                return _done(item, *answer)
        if rec.outages:
            out = rec.outages[0]
            if out.remaining is not None:
                out.remaining -= 1
                if out.remaining <= 0:
                    rec.outages.popleft()
            name = "RATE_LIMITED" if out.status == 429 else "SERVICE_UNAVAILABLE"
            exc = ProtocolError(
                name, "the conformance harness plays an outage", retry_after=out.retry_after
            )
            headers = {"Retry-After": str(out.retry_after)} if out.retry_after is not None else {}
            return _done(item, _error(exc, headers), "unavailable")
        header = item.headers.get(signing.HEADER.lower())
        try:
            sig = signing.parse(header)
            key = rec.keys.get(sig.agent_id)
            if key is None:
                raise ProtocolError("UNKNOWN_AGENT", f"agent {sig.agent_id} never enrolled")
            signing.verify(key, item.body, sig)
        except ProtocolError as exc:
            item.signature_problem = str(exc)
            return _done(item, _error(exc), f"Error {exc.code}")
        if item.kind != "Report":
            exc = ProtocolError("SCHEMA_VIOLATION", item.problem or f"not a Report: {item.kind}")
            return _done(item, _error(exc), f"Error {exc.code}")
        rep: model.Report = item.obj
        seen = rec.stored.get(rep.report_id)
        if seen is not None and seen != item.digest:
            exc = ProtocolError(
                "REPLAYED_MESSAGE", "same reportId, different bytes", message_id=rep.report_id
            )
            return _done(item, _error(exc), f"Error {exc.code}")
        rec.stored[rep.report_id] = item.digest
        receipt = model.Receipt(
            version=xml_edge.PROTOCOL_VERSION,
            message_id=rep.report_id,
            agent_id=rep.agent_id,
            status=model.ReceiptStatus.DUPLICATE if seen else model.ReceiptStatus.ACCEPTED,
            received_at=xml_time(now()),
            devices_stored=0 if seen else len(rep.device),
        )
        return _done(item, _xml(receipt, 200), "duplicate" if seen else "accepted")

    return app


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class ServerTls:
    """How the harness manager serves HTTPS."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None  # require a client certificate issued by this CA
    old_only: bool = False  # offer only TLS 1.0 and 1.1 (a conforming agent refuses)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        ctx.set_alpn_protocols(["http/1.1"])
        if self.client_ca_file is not None:
            ctx.load_verify_locations(str(self.client_ca_file))
            ctx.verify_mode = ssl.CERT_REQUIRED
        if self.old_only:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 allows TLS < 1.2 only here
                ctx.minimum_version = ssl.TLSVersion.TLSv1
                ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        return ctx


class _TlsConfig(Config):
    """Hypercorn's config with the harness's own SSL context (Hypercorn's forces TLS >= 1.2)."""

    def __init__(self, tls: ServerTls) -> None:
        super().__init__()
        self._tls = tls
        self.certfile, self.keyfile = str(tls.cert_file), str(tls.key_file)

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return self._tls.context()


class FakeManager:
    """The app served by Hypercorn on loopback, inside the running event loop."""

    def __init__(self, host: str = "127.0.0.1", tls: ServerTls | None = None) -> None:
        self.rec = Recorder()
        self.host = host
        self.port = free_tcp_port(host)
        self.tls = tls
        self.tap: Any = None  # tls_tap.TlsTap in front of an HTTPS manager
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        if self.tap is not None:
            return f"https://{self.host}:{self.tap.port}{BASE_PATH}"
        return f"http://{self.host}:{self.port}{BASE_PATH}"

    async def start(self) -> FakeManager:
        config = Config() if self.tls is None else _TlsConfig(self.tls)
        config.bind = [f"{self.host}:{self.port}"]
        config.accesslog = None
        config.errorlog = None
        config.loglevel = "WARNING"
        self.rec.base_url = self.url
        app = create_app(self.rec)
        self._task = asyncio.create_task(
            serve(app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _, w = await asyncio.open_connection(self.host, self.port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the harness manager did not start")
        if self.tls is not None:
            from metersync_conformance.peers.tls_tap import TlsTap

            self.tap = await TlsTap((self.host, self.port), self.host).start()
            self.rec.base_url = self.url
        return self

    async def stop(self) -> None:
        if self.tap is not None:
            await self.tap.close()
        self._stop.set()
        if self._task:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
