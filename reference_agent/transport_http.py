"""The HTTP(S) binding, agent side: POST a stored message, map the answer to an outcome.

A thin adapter around `backoff.decide`: it sends exactly the bytes it is given (the outbox's),
with the signature header and optionally gzip (the signature covers the uncompressed bytes),
and reads the manager's Receipt or Error through the safe XML edge. TLS uses the system's trust
store or the provisioned CA bundle, with an optional client certificate; an HTTP proxy carries
HTTPS with CONNECT. The agent only ever connects out: nothing here listens.

    async with HttpTransport.from_settings(settings, state_dir) as t:
        outcome = await t.post_report(stored.body, stored.signature, stored.report_id)
"""

from __future__ import annotations

import gzip
import logging
import os
import ssl
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

import metersync
from metersync import signing, xml_edge
from metersync.errors import ProtocolError
from metersync.xml_edge import MEDIA_TYPE as CONTENT_TYPE
from metersync_agent.backoff import Delivered, Outcome, RetryLater, decide, parse_retry_after
from metersync_agent.config import Settings

log = logging.getLogger("metersync.agent.http")

MAX_ANSWER_BYTES = 1024 * 1024  # a Receipt or an Error is small; never read more than this
GZIP_MIN_BYTES = 1024  # below this, compression is not worth a header
USER_AGENT = f"metersync-reference-agent/{metersync.__version__}"


def ssl_context(
    ca_bundle: str | None, client_certificate: str | None, state_dir: Path | None = None
) -> ssl.SSLContext:
    """The system's trust store, or only `ca_bundle` (PEM); a client certificate+key if given."""
    if ca_bundle:
        ctx = ssl.create_default_context(cadata=ca_bundle)
    else:
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # MS-HTTP-11
    if client_certificate:
        # ssl loads a chain only from a file: write it where only the agent can read it.
        folder = state_dir if state_dir is not None else Path(tempfile.gettempdir())
        path = folder / "client-certificate.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(client_certificate)
        os.chmod(path, 0o600)
        ctx.load_cert_chain(str(path))
    return ctx


class HttpTransport:
    def __init__(
        self,
        *,
        reports_url: str,
        enroll_url: str,
        agent_id: str,
        timeout: float = 30.0,
        use_gzip: bool = True,
        verify: ssl.SSLContext | None = None,
        proxy: str | None = None,
    ) -> None:
        self.reports_url = reports_url
        self.enroll_url = enroll_url
        self.agent_id = agent_id
        self.use_gzip = use_gzip
        self._client = httpx.AsyncClient(
            verify=verify if verify is not None else ssl_context(None, None),
            proxy=proxy,
            timeout=httpx.Timeout(timeout),
            trust_env=False,  # the provisioning document says which proxy, not the environment
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, agent_id: str, state_dir: Path | None = None
    ) -> HttpTransport:
        return cls(
            reports_url=settings.reports_url,
            enroll_url=settings.enroll_url,
            agent_id=agent_id,
            timeout=settings.http_timeout,
            use_gzip=settings.gzip,
            verify=ssl_context(settings.ca_bundle, settings.client_certificate, state_dir),
            proxy=settings.proxy,
        )

    async def __aenter__(self) -> HttpTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post_report(self, body: bytes, signature: str, report_id: str) -> Outcome:
        """POST a signed Report; delivered only on a Receipt naming this reportId."""
        return await self._post(self.reports_url, body, report_id, {signing.HEADER: signature})

    async def post_enrollment(self, body: bytes, signature: str, message_id: str) -> Outcome:
        """POST an Enrollment, signed with the key it carries (proof of possession, MS-SEC-5)."""
        return await self._post(self.enroll_url, body, message_id, {signing.HEADER: signature})

    async def _post(self, url: str, body: bytes, message_id: str, extra: dict[str, str]) -> Outcome:
        headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE, **extra}
        content = body
        if self.use_gzip and len(body) >= GZIP_MIN_BYTES:
            content = gzip.compress(body, compresslevel=6, mtime=0)
            headers["Content-Encoding"] = "gzip"
        try:
            async with self._client.stream("POST", url, content=content, headers=headers) as r:
                answer = await _read_capped(r)
                status, header_retry = r.status_code, r.headers.get("Retry-After")
        except httpx.TimeoutException as exc:
            return RetryLater(f"timed out talking to {url}: {type(exc).__name__}")
        except httpx.ProxyError as exc:
            return RetryLater(f"the proxy refused the connection to {url}: {exc}")
        except (httpx.TransportError, ssl.SSLError, OSError) as exc:
            return RetryLater(f"cannot reach {url}: {_describe(exc)}")
        return interpret(status, answer, header_retry, message_id, self.agent_id)


def interpret(
    status: int,
    answer: bytes,
    retry_after_header: str | None,
    message_id: str,
    agent_id: str,
    now: float | None = None,
) -> Outcome:
    """One HTTP answer → Delivered / RetryLater / Refused (the rules are in backoff.decide)."""
    retry_after = parse_retry_after(retry_after_header, time.time() if now is None else now)
    kind = obj = None
    problem = ""
    if answer:
        try:
            msg = xml_edge.parse_message(answer, expect=("Receipt", "Error"))
            kind, obj = msg.kind, msg.obj
        except ProtocolError as exc:
            problem = f"; the answer is not a valid MeterSync document: {exc}"
    if kind == "Receipt":
        if obj.message_id != message_id or obj.agent_id != agent_id:
            return RetryLater(
                f"HTTP {status}: a Receipt for message {obj.message_id} of agent "
                f"{obj.agent_id}, not for {message_id} of {agent_id}"
            )
        out = decide(status, receipt_ok=True)
        if isinstance(out, Delivered):
            return Delivered(duplicate=obj.status.value == "duplicate")
        return out
    if kind == "Error":
        if obj.retry_after is not None:
            retry_after = max(retry_after or 0.0, float(obj.retry_after))
        return decide(
            status,
            error_code=obj.code,
            error_name=obj.name,
            error_message=obj.message,
            retry_after=retry_after,
        )
    out = decide(status, retry_after=retry_after)
    if isinstance(out, RetryLater) and problem:
        return RetryLater(out.reason + problem, out.retry_after)
    return out


async def _read_capped(r: httpx.Response) -> bytes:
    chunks, size = [], 0
    async for chunk in r.aiter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    """The innermost cause, which says what went wrong (refused, certificate, DNS…)."""
    parts = [str(exc) or type(exc).__name__]
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(parts) < 4:
        text = str(cause) or type(cause).__name__
        if text not in parts:
            parts.append(text)
        cause = cause.__cause__ or cause.__context__
    return " / ".join(parts)
