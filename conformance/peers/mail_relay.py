"""The mail relay the harness plays for an agent under test that claims Agent-SMTP.

An aiosmtpd server on loopback. Every mail is recorded in the harness Recorder like an HTTP
request: the `report.xml` part, transfer-decoded, is the body; the `report.xml.sig` line is the
`metersync-signature` header; the whole mail is kept for the structure checks. Like a relay it
answers 250 to any mail (its checks judge afterwards), except while told to be unavailable:
then 451, so the agent must send the same mail again later; or while it plays a script of
refusals (SCRIPT, MS-SMTP-13): each entry refuses the next MAIL, RCPT or end of DATA with a 5xx
reply, with or without a MeterSync code, and "accept" lets the next mail through. The harness
manager's recorder knows the agent's key from its Enrollment (enrollment is always over HTTP).

For MS-SMTP-8 it can play a relay with TLS (`RelayTls`): STARTTLS required before anything
(RFC 3207) with AUTH required and offered only over TLS, implicit TLS, or a relay that offers
no STARTTLS but advertises AUTH in plain text. Every session is recorded (`RelayLog`): the
commands in order, each with whether TLS was up, and every login it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, TLSSetupException

from metersync import signing, xml_edge
from metersync.errors import ProtocolError
from metersync_conformance.peers.manager import Received, Recorder, free_tcp_port


def split_mail(mail: bytes) -> tuple[bytes | None, str | None, str | None]:
    """(decoded report.xml, signature line, why not) of a mail, leniently."""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(mail)
        reports = [p for p in msg.walk() if p.get_filename() == "report.xml"]
        sigs = [p for p in msg.walk() if p.get_filename() == "report.xml.sig"]
        body = reports[0].get_payload(decode=True) if reports else None
        sig = sigs[0].get_payload(decode=True) if sigs else None
        line = sig.decode("ascii", "replace").strip() if isinstance(sig, bytes) else None
        why = None if reports else "no report.xml part"
        return (body if isinstance(body, bytes) else None), line, why
    except Exception as exc:  # a mail the parser cannot read is evidence, not a crash
        return None, None, f"unreadable mail: {exc!r}"


# name: (the command refused, the reply, what a conforming agent does with the report:
# "retry" = the same mail again later, "refused" = the rejected area, never mailed again)
SCRIPT: dict[str, tuple[str, str, str]] = {
    "data-coded-refusal": (
        "data", "554 5.6.0 MeterSync 1008 SCHEMA_VIOLATION: the harness refuses it", "refused",
    ),
    "data-uncoded": ("data", "554 5.6.0 message content rejected", "refused"),
    "data-coded-retry": (
        "data", "554 5.6.0 MeterSync 2003 BAD_SIGNATURE: the harness doubts it", "retry",
    ),
    "mail": ("mail", "550 5.7.1 sender address not allowed on this relay", "retry"),
    "rcpt": ("rcpt", "550 5.1.1 recipient unknown on this relay", "retry"),
}  # fmt: skip
# Refusals first, then the retried ones (each followed by "accept" for its resend): a report
# wrongly retried after a refusal comes again before the phase is over.
PLAYED = ("data-coded-refusal", "data-uncoded", "data-coded-retry", "accept", "mail", "accept",
          "rcpt", "accept")  # fmt: skip


@dataclass
class Script:
    """The refusals to play, and the MAIL/RCPT ones played (no report is seen there)."""

    pending: deque[str] = field(default_factory=deque)
    before_data: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, name)

    def take(self, stage: str) -> tuple[str, str] | None:
        """(name, reply) when the next entry refuses at `stage`; "accept" is taken at data."""
        if not self.pending:
            return None
        name = self.pending[0]
        if name == "accept" and stage == "data":
            self.pending.popleft()
            return None
        if name != "accept" and SCRIPT[name][0] == stage:
            self.pending.popleft()
            return name, SCRIPT[name][1]
        return None


class RelayHandler:
    def __init__(self, rec: Recorder, script: Script) -> None:
        self.rec, self.script = rec, script

    async def handle_MAIL(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if (got := self.script.take("mail")) is not None:
            return self._before_data(*got)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if (got := self.script.take("rcpt")) is not None:
            return self._before_data(*got)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    def _before_data(self, name: str, reply: str) -> str:
        self.script.before_data.append((time.monotonic(), name))
        self.rec.changed.set()
        return reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        rec = self.rec
        mail = envelope.original_content or b""
        body, sig, why = split_mail(mail)
        headers = {"metersync-signature": sig} if sig else {}
        item = Received(time.monotonic(), "smtp", headers, body or b"", mail=mail)
        item.problem = why
        rec.received.append(item)
        if body is not None:
            try:
                msg = xml_edge.parse_message(body)
                item.kind, item.obj = msg.kind, msg.obj
            except ProtocolError as exc:
                item.problem = str(exc)
        try:
            parsed = signing.parse(sig)
            key = rec.keys.get(parsed.agent_id)
            if key is None:
                raise ProtocolError("UNKNOWN_AGENT", f"agent {parsed.agent_id} never enrolled")
            signing.verify(key, item.body, parsed)
        except ProtocolError as exc:
            item.signature_problem = str(exc)
        if rec.outages:
            out = rec.outages[0]
            if out.remaining is not None:
                out.remaining -= 1
                if out.remaining <= 0:
                    rec.outages.popleft()
            return self._done(item, 451, "unavailable", "451 4.3.0 the harness plays a busy relay")
        if (got := self.script.take("data")) is not None:
            item.script = got[0]
            return self._done(item, int(got[1][:3]), f"smtp {got[1][:3]}", got[1])
        if item.kind != "Report":
            return self._done(item, 250, "accepted", "250 OK")
        digest = hashlib.sha256(item.body).hexdigest()
        seen = rec.stored.get(item.obj.report_id)
        rec.stored.setdefault(item.obj.report_id, digest)
        kind = "duplicate" if seen is not None else "accepted"
        return self._done(item, 250, kind, "250 OK")

    def _done(self, item: Received, code: int, kind: str, reply: str) -> str:
        item.answer, item.answer_kind = code, kind
        self.rec.changed.set()
        return reply


@dataclass(frozen=True)
class RelayTls:
    """How the relay uses TLS: mode `starttls`, `implicit` or `plain-auth` (no STARTTLS, AUTH
    advertised in plain text); `context` is the server context (not needed for plain-auth)."""

    mode: str
    context: ssl.SSLContext | None = None


@dataclass
class RelaySession:
    t: float
    commands: list[tuple[str, bool]] = field(default_factory=list)  # (verb, TLS up)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user name, TLS up)
    versions: set[str] = field(default_factory=set)  # TLS versions seen in this session
    closed: bool = False


@dataclass
class RelayLog:
    sessions: list[RelaySession] = field(default_factory=list)

    def settled(self) -> bool:
        """At least one session, and every one of them over."""
        return bool(self.sessions) and all(s.closed for s in self.sessions)

    def before_tls(self, *verbs: str) -> list[str]:
        return [v for s in self.sessions for v, tls in s.commands if v in verbs and not tls]


class _Quiet(logging.Filter):
    """aiosmtpd's noise about what the harness relay does on purpose (AUTH without TLS, the
    agent refusing a handshake, its own deprecated login_data)."""

    NOISE = ("login_data is deprecated", "auth_require_tls == False")

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, TLSSetupException):
            return False
        return not any(n in str(record.msg) for n in self.NOISE)


logging.getLogger("mail.log").addFilter(_Quiet())


class _RecordingSMTP(SMTP):
    """aiosmtpd's server, noting each command and whether TLS was up when it came."""

    def __init__(self, handler: Any, log: RelayLog, **kw: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # AUTH without TLS: on purpose
            super().__init__(handler, authenticator=self._login, **kw)
        self._log = log
        self._session: RelaySession | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None and self._session is None:  # not the TLS upgrade
            self._session = RelaySession(time.monotonic())
            self._log.sessions.append(self._session)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._session is not None:
            self._session.closed = True
        super().connection_lost(error)

    def _tls(self) -> bool:
        obj = self.transport.get_extra_info("ssl_object") if self.transport else None
        if obj is not None and self._session is not None and obj.version():
            self._session.versions.add(obj.version())
        return obj is not None

    def _note(self, verb: str) -> None:
        if self._session is not None:
            self._session.commands.append((verb, self._tls()))

    def _login(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        if self._session is not None and isinstance(data, LoginPassword):
            self._session.logins.append((data.login.decode("utf-8", "replace"), self._tls()))
        return AuthResult(success=True)

    async def smtp_EHLO(self, arg: str) -> None:  # noqa: N802
        self._note("EHLO")
        await super().smtp_EHLO(arg)

    async def smtp_STARTTLS(self, arg: str) -> None:  # noqa: N802
        self._note("STARTTLS")
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:  # noqa: N802
        self._note("AUTH")
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg: str) -> None:  # noqa: N802
        self._note("MAIL")
        await super().smtp_MAIL(arg)

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802
        self._note("DATA")
        await super().smtp_DATA(arg)


class FakeRelay:
    def __init__(self, rec: Recorder, host: str = "127.0.0.1", tls: RelayTls | None = None) -> None:
        self.rec, self.host, self.tls = rec, host, tls
        self.port = free_tcp_port(host)
        self.script = Script()
        self.log = RelayLog()
        self._server: asyncio.AbstractServer | None = None

    def play(self, names: tuple[str, ...] = PLAYED) -> None:
        self.script.pending.extend(names)

    def _smtp(self, handler: RelayHandler) -> SMTP:
        kw: dict[str, Any] = {"data_size_limit": 32 * 1024 * 1024, "hostname": "conformance-relay"}
        if self.tls is None:
            return SMTP(handler, **kw)
        mode = self.tls.mode
        if mode == "starttls":
            kw.update(tls_context=self.tls.context, require_starttls=True, auth_required=True)
        elif mode == "implicit":
            kw.update(auth_require_tls=False, auth_required=True)  # the socket is TLS already
        elif mode == "plain-auth":
            kw.update(auth_require_tls=False)
        else:
            raise ValueError(f"unknown relay TLS mode {mode!r}")
        return _RecordingSMTP(handler, self.log, **kw)

    async def start(self) -> FakeRelay:
        handler = RelayHandler(self.rec, self.script)
        loop = asyncio.get_running_loop()
        implicit = self.tls is not None and self.tls.mode == "implicit"
        self._server = await loop.create_server(
            lambda: self._smtp(handler),
            self.host,
            self.port,
            ssl=self.tls.context if implicit and self.tls else None,
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
