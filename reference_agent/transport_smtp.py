"""The SMTP binding, agent side (spec chapter 9): mail a stored, signed report to a relay.

One report per mail: `multipart/mixed` with a short text part, the report as `report.xml`
(`application/vnd.metersync+xml`, base64, the exact stored bytes: MS-SMTP-1, MS-SMTP-3) and
the signature header value as `report.xml.sig`; Subject `MeterSync report <reportId>`
(MS-SMTP-2). The mail is built by a pure function; the standard library's `smtplib` sends it
in a worker thread (one short connection per report, so no session state to go stale).

TLS per `transports/smtp/security`: `starttls` (RFC 3207, required: never falls back to
plain text), `tls` (implicit) or `none` (loopback only, checked by config.py); the relay's
certificate chain and host name are verified against `transports/smtp/caBundle` when given,
else the system's trust store; a login only over TLS (MS-SMTP-8).

Replies map to the same outcomes as HTTP answers (MS-SMTP-13): a 250 to the data is
Delivered; 4xx, network errors and timeouts RetryLater; a 5xx naming a MeterSync code is
that code (Table 11-1); a 5xx to the data without a code is Refused; a 5xx to the
connection, STARTTLS, AUTH, MAIL or RCPT concerns the relay's configuration: RetryLater with
an operator alert.

    t = SmtpTransport.from_settings(settings, agent_id)
    outcome = await t.post_report(stored.body, stored.signature, stored.report_id)
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from email import policy
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid

from metersync.errors import BY_CODE
from metersync_agent.backoff import (
    AGENT_LEVEL_CODES,
    Delivered,
    Outcome,
    Refused,
    RetryLater,
    is_retryable_code,
)
from metersync_agent.config import Settings

MEDIA_SUBTYPE = "vnd.metersync+xml"
REPORT_PART = "report.xml"
SIGNATURE_PART = "report.xml.sig"
SUBJECT = "MeterSync report {report_id}"
DEFAULT_TIMEOUT = 60.0
_CODE = re.compile(r"\bMeterSync (\d{4})\b")
RELAY_ACTION = "check the relay and transports/smtp (host, port, security, login, from, to)"


def build_mail(
    body: bytes, signature: str, report_id: str, agent_id: str, sender: str, recipient: str
) -> bytes:
    """The mail for one report, CRLF line ends, ready for the DATA command."""
    msg = MIMEMultipart("mixed")
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = SUBJECT.format(report_id=report_id)
    msg["Date"] = formatdate(usegmt=True)
    domain = sender.rpartition("@")[2] or None
    msg["Message-ID"] = make_msgid(domain=domain)
    intro = f"MeterSync report {report_id} from agent {agent_id}\n"
    msg.attach(MIMEText(intro, "plain", "us-ascii"))
    report = MIMEApplication(body, MEDIA_SUBTYPE, name=REPORT_PART)  # base64 by default
    report.add_header("Content-Disposition", "attachment", filename=REPORT_PART)
    msg.attach(report)
    sig = MIMEText(signature + "\n", "plain", "us-ascii")
    sig.set_param("name", SIGNATURE_PART)
    sig.add_header("Content-Disposition", "attachment", filename=SIGNATURE_PART)
    msg.attach(sig)
    return msg.as_bytes(policy=policy.SMTP)


def classify_reply(code: int, text: str, stage: str) -> Outcome:
    """One refusing SMTP reply → RetryLater / Refused (MS-SMTP-13). stage: connect, starttls,
    auth, mail, rcpt or data."""
    reason = f"SMTP {code} at {stage}: {text}".strip()
    if 400 <= code < 500:
        return RetryLater(reason)
    found = _CODE.search(text)
    if found:
        mcode = int(found.group(1))
        spec = BY_CODE.get(mcode)
        if is_retryable_code(mcode, 500):
            return RetryLater(reason, alert=mcode in AGENT_LEVEL_CODES)
        return Refused(mcode, spec.name if spec else "VENDOR", text)
    if stage == "data":
        return Refused(code, f"SMTP_{code}", text)
    return RetryLater(reason, alert=True, action=RELAY_ACTION)


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


class SmtpTransport:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str,
        sender: str,
        recipient: str,
        agent_id: str,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        context: ssl.SSLContext | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.sender, self.recipient, self.agent_id = sender, recipient, agent_id
        self._username, self._password = username, password
        self.timeout = timeout
        self._context = context
        self._ca_bundle = ca_bundle

    @classmethod
    def from_settings(cls, settings: Settings, agent_id: str) -> SmtpTransport:
        assert settings.smtp_host and settings.smtp_from and settings.smtp_to
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            sender=settings.smtp_from,
            recipient=settings.smtp_to,
            agent_id=agent_id,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout=settings.http_timeout,
            ca_bundle=settings.smtp_ca_bundle,
        )

    def context(self) -> ssl.SSLContext:
        if self._context is None:
            # verifies the chain (the provisioned CAs only, when given) and the host name
            ctx = ssl.create_default_context(cadata=self._ca_bundle or None)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._context = ctx
        return self._context

    async def post_report(self, body: bytes, signature: str, report_id: str) -> Outcome:
        """Mail one report; Delivered when the relay accepted the data (MS-SMTP-9)."""
        mail = build_mail(body, signature, report_id, self.agent_id, self.sender, self.recipient)
        return await asyncio.to_thread(self.send_mail, mail)

    async def aclose(self) -> None:  # one connection per mail: nothing held open
        return None

    def send_mail(self, mail: bytes) -> Outcome:
        """Blocking: one SMTP session for one mail."""
        stage = "connect"
        try:
            if self.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self.context()
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                client.ehlo_or_helo_if_needed()
                if self.security == "starttls":
                    stage = "starttls"
                    if not client.has_extn("starttls"):
                        return RetryLater(
                            f"the relay {self.host}:{self.port} does not offer STARTTLS; "
                            "reports are never mailed in plain text (MS-SMTP-8)",
                            alert=True,
                            action=RELAY_ACTION,
                        )
                    client.starttls(context=self.context())
                    client.ehlo()
                if self._username:
                    stage = "auth"
                    client.login(self._username, self._password or "")
                return self._transaction(client, mail)
        except smtplib.SMTPAuthenticationError as exc:
            return classify_reply(exc.smtp_code, _text(exc.smtp_error), "auth")
        except smtplib.SMTPResponseException as exc:
            return classify_reply(exc.smtp_code, _text(exc.smtp_error), stage)
        except ssl.SSLCertVerificationError as exc:
            reason = f"the relay's certificate is not trusted: {exc}"
            return RetryLater(reason, alert=True, action=RELAY_ACTION)
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            return RetryLater(f"cannot mail through {self.host}:{self.port}: {exc!r}")

    def _transaction(self, client: smtplib.SMTP, mail: bytes) -> Outcome:
        options = [f"SIZE={len(mail)}"] if client.has_extn("size") else []
        code, text = client.mail(self.sender, options)
        if code != 250:
            return classify_reply(code, _text(text), "mail")
        code, text = client.rcpt(self.recipient)
        if code not in (250, 251):
            return classify_reply(code, _text(text), "rcpt")
        try:
            code, text = client.data(mail)  # raises SMTPDataError when DATA itself is refused
        except smtplib.SMTPDataError as exc:
            return classify_reply(exc.smtp_code, _text(exc.smtp_error), "data")
        if code != 250:
            return classify_reply(code, _text(text), "data")
        return Delivered()
