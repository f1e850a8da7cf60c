"""Messages the harness sends and answers it reads, built from the spec's own examples.

The harness plays a simulated agent against a manager under test: it owns an Ed25519 key,
enrolls, and sends reports derived from `spec/examples/valid/report.xml` with fresh ids, its
own agent id and the current time. Every answer is read through the same XML edge a conforming
implementation uses, so an answer that is not a valid MeterSync document is itself evidence.
"""

from __future__ import annotations

import base64
import copy
import gzip
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import httpx
from xsdata.models.datatype import XmlDateTime

import metersync_generated.v1 as model
import metersync_spec
from metersync import signing, xml_edge
from metersync.errors import BY_CODE, ProtocolError
from metersync.xml_edge import MEDIA_TYPE as CONTENT_TYPE

ENROLL_PATH = "/v1/enroll"
REPORTS_PATH = "/v1/reports"
EXAMPLE_AGENT_ID = "0b7e3f5a-8c21-4d9e-b6a3-2f4c1d8e9a70"


def xml_time(dt: datetime) -> XmlDateTime:
    return XmlDateTime.from_datetime(dt.astimezone(UTC).replace(microsecond=0))


def now() -> datetime:
    return datetime.now(UTC)


@cache
def _example_report() -> model.Report:
    raw = (metersync_spec.EXAMPLES_DIR / "valid" / "report.xml").read_bytes()
    return xml_edge.parse_message(raw, expect=("Report",)).obj


@dataclass
class SimAgent:
    """An agent the harness plays: an id, a key, and its next sequence number."""

    agent_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    key: Any = field(default_factory=signing.generate_key)
    sequence: int = 0
    enrolled: bool = False

    def sign(self, body: bytes, agent_id: str | None = None) -> str:
        return signing.sign(self.key, body, agent_id or self.agent_id)

    def enrollment(self, token: str, created_at: datetime | None = None) -> bytes:
        msg = model.Enrollment(
            version=xml_edge.PROTOCOL_VERSION,
            message_id=str(uuid.uuid4()),
            agent_id=self.agent_id,
            created_at=xml_time(created_at or now()),
            token=token,
            software=model.SoftwareInfo(
                vendor="MeterSync", product="conformance-harness", version="1.0"
            ),
            hostname="conformance.invalid",
            capability=[model.Capability.HTTP],
            public_key=model.PublicKey(
                value=base64.b64decode(signing.public_key_b64(self.key)),
                algorithm=model.SignatureAlgorithm.ED25519,
            ),
        )
        return xml_edge.to_bytes(msg)

    def report(
        self,
        *,
        report_id: str | None = None,
        sequence: int | None = None,
        created_at: datetime | None = None,
        agent_id: str | None = None,
        total: int = 48213,
        serial: str | None = None,
        mutate: Callable[[model.Report], None] | None = None,
    ) -> tuple[str, bytes]:
        """(reportId, bytes) of a valid report; `total` varies the content for the same id;
        `mutate` changes the report object last (its result need not be schema-valid)."""
        if sequence is None:
            self.sequence += 1
            sequence = self.sequence
        rep = copy.deepcopy(_example_report())
        rid = report_id or str(uuid.uuid4())
        rep.report_id = rid
        rep.agent_id = agent_id or self.agent_id
        rep.sequence = sequence
        when = created_at or now()
        rep.created_at = xml_time(when)
        for dev in rep.device:
            dev.polled_at = xml_time(when - timedelta(seconds=2))
            if serial:
                dev.identity.serial_number = serial
                dev.identity.device_key = f"sn:hp:{serial.lower()}"
            for c in dev.counter:
                if c.kind == model.CounterKind.TOTAL:
                    c.value = total
        if mutate is not None:
            mutate(rep)
            return rid, xml_edge.to_bytes(rep, validate=False)
        return rid, xml_edge.to_bytes(rep)


@dataclass
class Answer:
    """What a manager answered: HTTP status, headers, body, and the document in it."""

    status: int
    headers: dict[str, str]
    body: bytes
    kind: str | None = None  # Receipt / Error / None when unreadable
    obj: Any = None
    problem: str | None = None  # why the body is not a valid MeterSync answer

    @property
    def code(self) -> int | None:
        return int(self.obj.code) if self.kind == "Error" else None

    @property
    def receipt_status(self) -> str | None:
        if self.kind != "Receipt":
            return None
        st = self.obj.status
        return st.value if hasattr(st, "value") else str(st)

    def brief(self) -> str:
        """One line: 'HTTP 200 Receipt accepted' / 'HTTP 400 Error 1002 FORBIDDEN_XML_CONSTRUCT'."""
        if self.kind == "Receipt":
            return f"HTTP {self.status} Receipt {self.receipt_status}"
        if self.kind == "Error":
            return f"HTTP {self.status} Error {self.obj.code} {self.obj.name}"
        return f"HTTP {self.status} unreadable answer ({self.problem})"

    def excerpt(self) -> str:
        return self.body.decode("utf-8", "replace")


def read_answer(resp: httpx.Response) -> Answer:
    ans = Answer(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content)
    try:
        msg = xml_edge.parse_message(resp.content, expect=("Receipt", "Error"))
        ans.kind, ans.obj = msg.kind, msg.obj
    except ProtocolError as exc:
        ans.problem = str(exc)
    return ans


def expected_status(code: int) -> int | None:
    spec = BY_CODE.get(code)
    return spec.http_status if spec else None


async def post(
    client: httpx.AsyncClient,
    base: str,
    path: str,
    body: bytes,
    *,
    signature: str | None = None,
    content_type: str = CONTENT_TYPE,
    extra: dict[str, str] | None = None,
    gzipped: bool = False,
) -> Answer:
    headers = {"Content-Type": content_type}
    if signature is not None:
        headers[signing.HEADER] = signature
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    headers.update(extra or {})
    resp = await client.post(base.rstrip("/") + path, content=body, headers=headers)
    return read_answer(resp)
