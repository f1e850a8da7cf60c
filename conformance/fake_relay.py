"""The mail relay the harness plays for an agent under test that claims Agent-SMTP.

An aiosmtpd server on loopback. Every mail is recorded in the harness Recorder like an HTTP
request: the `report.xml` part, transfer-decoded, is the body; the `report.xml.sig` line is the
`metersync-signature` header; the whole mail is kept for the structure checks. Like a relay it
answers 250 to any mail (its checks judge afterwards), except while told to be unavailable:
then 451, so the agent must send the same mail again later; or while it plays a script of
refusals (SCRIPT, MS-SMTP-13): each entry refuses the next MAIL, RCPT or end of DATA with a 5xx
reply, with or without a MeterSync code, and "accept" lets the next mail through. The harness
manager's recorder knows the agent's key from its Enrollment (enrollment is always over HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import deque
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from typing import Any

from aiosmtpd.smtp import SMTP

from metersync import signing, xml_edge
from metersync.errors import ProtocolError
from metersync_conformance.fake_manager import Received, Recorder, free_tcp_port


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


class FakeRelay:
    def __init__(self, rec: Recorder, host: str = "127.0.0.1") -> None:
        self.rec, self.host = rec, host
        self.port = free_tcp_port(host)
        self.script = Script()
        self._server: asyncio.AbstractServer | None = None

    def play(self, names: tuple[str, ...] = PLAYED) -> None:
        self.script.pending.extend(names)

    async def start(self) -> FakeRelay:
        handler = RelayHandler(self.rec, self.script)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(handler, data_size_limit=32 * 1024 * 1024), self.host, self.port
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
