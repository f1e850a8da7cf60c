"""The SMTP binding, manager side (spec chapter 9): an aiosmtpd server that receives reports.

Each mail's `report.xml` part is transfer-decoded and, with the line of its `report.xml.sig`
part, goes through the SAME path as `POST /v1/reports` (accept.py: signature over the exact
bytes, XML edge, agentId, skew, idempotence on reportId, storage), so a report that arrives
by mail and over HTTP is stored once (MS-SMTP-4). Mail headers are never trusted (MS-SMTP-6).

The answer is the SMTP reply to the end of the data (MS-SMTP-11): 250 after the report is
stored (or was stored before); 5xx naming `MeterSync <code> <NAME>` for a permanent refusal,
recorded in `mail_refusals` and the log (MS-SMTP-5); 451 when it cannot be stored now. The
manager never sends mail. Mails above 24 MiB are refused with 552 (SIZE, MS-SMTP-12).

    server = await start_smtp(store, "127.0.0.1", 8025)   # in the manager's event loop
    ...
    server.close(); await server.wait_closed()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import DBAPIError, OperationalError

from metersync import signing, xml_edge
from metersync.errors import BY_CODE, ProtocolError
from metersync_manager import ingest
from metersync_manager.accept import accept_report
from metersync_manager.store import Store

log = logging.getLogger("metersync.manager.smtp")

MAX_MAIL_BYTES = 24 * 1024 * 1024  # MS-SMTP-12: a 16 MiB report fits after base64
REPORT_PART = "report.xml"
SIGNATURE_PART = "report.xml.sig"
REPORT_TYPE = "application/vnd.metersync+xml"
MAX_REPLY_TEXT = 300


def extract(mail: bytes, max_bytes: int = xml_edge.MAX_BYTES) -> tuple[bytes, str | None]:
    """(decoded report bytes, signature line or None) of a mail; 1007 / 1003 refusals.

    The report part is the one named `report.xml` (or typed application/vnd.metersync+xml)
    among the top-level parts of the mail; exactly one is allowed (MS-SMTP-7). Nothing inside
    a message/* part (a forwarded mail, a bounce's returned message) or a nested multipart
    counts (MS-SMTP-14). Other parts are ignored.
    """
    msg = BytesParser(policy=policy.default).parsebytes(mail)
    reports: list[Message] = []
    sigs: list[Message] = []
    top = list(msg.iter_parts()) if msg.get_content_maintype() == "multipart" else [msg]
    for part in top:
        if part.get_content_maintype() in ("multipart", "message"):
            continue
        name = part.get_filename()
        if name == SIGNATURE_PART:
            sigs.append(part)
        elif name == REPORT_PART or part.get_content_type() == REPORT_TYPE:
            reports.append(part)
    if len(reports) != 1:
        raise ProtocolError(
            "UNKNOWN_MESSAGE",
            f"the mail has {len(reports)} {REPORT_PART} parts; a MeterSync mail has exactly one",
        )
    raw = reports[0].get_payload(decode=True)
    if not isinstance(raw, bytes):
        raise ProtocolError("UNKNOWN_MESSAGE", f"the {REPORT_PART} part has no content")
    if len(raw) > max_bytes:
        raise ProtocolError(
            "DOCUMENT_TOO_LARGE",
            f"the decoded {REPORT_PART} has {len(raw)} bytes; the limit is {max_bytes} bytes",
        )
    if not sigs:
        return raw, None
    sig = sigs[0].get_payload(decode=True)
    if not isinstance(sig, bytes):
        return raw, None
    try:
        return raw, sig.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ProtocolError(
            "SIGNATURE_MISSING", f"the {SIGNATURE_PART} part is not one ASCII line"
        ) from None


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REPLY_TEXT else text[: MAX_REPLY_TEXT - 1] + "…"


def refusal_reply(exc: ProtocolError) -> str:
    """5xx for a permanent refusal, 451 for codes marked retry (4001-4003)."""
    spec = BY_CODE.get(exc.code)
    retry = spec.retry if spec else False
    head = "451 4.3.0" if retry else "554 5.6.0"
    return f"{head} MeterSync {exc.code} {exc.name}: {_one_line(exc.message)}"


class ReportHandler:
    """aiosmtpd handler: every accepted mail is one report through accept.py."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Any = ingest.utcnow,
        skew: timedelta = ingest.SKEW,
        max_bytes: int = xml_edge.MAX_BYTES,
    ) -> None:
        self.store = store
        self.clock = clock
        self.skew = skew
        self.max_bytes = max_bytes

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        mail = envelope.original_content or envelope.content or b""
        if isinstance(mail, str):
            mail = mail.encode("utf-8", "surrogateescape")
        sig_agent = None
        try:
            if not (envelope.mail_from or "").strip("<> "):  # MAIL FROM:<>, MS-SMTP-14
                raise ProtocolError("UNKNOWN_MESSAGE", "a mail with a null sender (a bounce)"
                                    " is not a report")  # fmt: skip
            raw, sig = extract(mail, self.max_bytes)
            if sig:
                with contextlib.suppress(ProtocolError):
                    sig_agent = signing.parse(sig).agent_id
            receipt = await accept_report(
                self.store, raw, sig, run=self._run, clock=self.clock, skew=self.skew
            )
        except ProtocolError as exc:
            await self._record(exc, mail, envelope, sig_agent)
            return refusal_reply(exc)
        except (OperationalError, DBAPIError) as exc:
            log.warning("database unavailable, mail deferred: %s", exc)
            return refusal_reply(
                ProtocolError("SERVICE_UNAVAILABLE", "the database cannot store reports now")
            )
        except Exception:
            log.exception("mail ingest failed")
            return refusal_reply(ProtocolError("INTERNAL_ERROR", "the manager failed"))
        status = receipt.status.value
        log.info("mailed report %s of agent %s: %s", receipt.message_id, receipt.agent_id, status)
        return f"250 2.0.0 MeterSync report {receipt.message_id} {status}"

    async def _record(
        self, exc: ProtocolError, mail: bytes, envelope: Envelope, agent: str | None
    ) -> None:
        """MS-SMTP-5: the operator sees every refusal (never the sender: no mail back)."""
        spec = BY_CODE.get(exc.code)
        if spec is not None and spec.retry:
            return  # nothing refused: the relay tries again
        subject = _subject(mail)
        log.warning(
            "mail refused: %d %s: %s (from %s, subject %r)",
            exc.code,
            exc.name,
            exc.message,
            envelope.mail_from,
            subject,
        )
        values = {
            "code": exc.code,
            "name": exc.name,
            "message": exc.message[:2000],
            "agent_id": (agent or None) and agent[:255],
            "mail_from": (envelope.mail_from or "")[:255] or None,
            "subject": subject[:255] or None,
            "size": len(mail),
        }
        try:
            await asyncio.to_thread(self.store.record_mail_refusal, values, self.clock())
        except Exception as err:  # the refusal stands; only its record failed
            log.error("could not record the mail refusal: %s", err)


def _subject(mail: bytes) -> str:
    try:
        head = BytesParser(policy=policy.default).parsebytes(mail, headersonly=True)
        return str(head.get("Subject", "") or "") if isinstance(head, EmailMessage) else ""
    except Exception:
        return ""


class _SMTP(SMTP):
    """aiosmtpd's server, accepting the null reverse-path `MAIL FROM:<>` that RFC 5321
    (4.5.5) requires: the mail is then refused as a bounce at the end of data (MS-SMTP-14)."""

    _in_mail = False

    async def smtp_MAIL(self, arg: str | None) -> None:  # noqa: N802
        self._in_mail = True
        try:
            await super().smtp_MAIL(arg)
        finally:
            self._in_mail = False

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        if self._in_mail and arg.lstrip().startswith("<>"):
            return "<>", arg.lstrip()[2:].strip()
        return super()._getaddr(arg)


def smtp_factory(handler: ReportHandler, hostname: str | None = None) -> Any:
    def make() -> SMTP:
        return _SMTP(
            handler,
            data_size_limit=MAX_MAIL_BYTES,
            enable_SMTPUTF8=False,
            decode_data=False,
            hostname=hostname,
            ident="MeterSync manager",
            timeout=300,
        )

    return make


async def start_smtp(
    store: Store,
    host: str,
    port: int,
    *,
    clock: Any = ingest.utcnow,
    skew: timedelta = ingest.SKEW,
) -> asyncio.AbstractServer:
    """Serve SMTP on host:port in the running loop; the caller closes the server."""
    handler = ReportHandler(store, clock=clock, skew=skew)
    loop = asyncio.get_running_loop()
    return await loop.create_server(smtp_factory(handler), host, port)


def parse_bind(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)
