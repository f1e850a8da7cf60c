"""Shared parts of the manager tests: report builders, signing agents, databases, a real server.

Imported by tests/test_manager_*.py; it holds fixtures and helpers, and one self-check.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from xsdata.models.datatype import XmlDateTime

import metersync_generated.v1 as model
from metersync import signing, xml_edge
from metersync.xml_edge import MEDIA_TYPE as MEDIA
from metersync_manager import ingest
from metersync_manager.app import create_app
from metersync_manager.store import Store, sqlite_url

NS = "urn:metersync:v1"


def ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Dev:
    """One device snapshot of a report, written as XML."""

    key: str
    ip: str = "192.0.2.10"
    polled_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    counters: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    supplies: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    serial: str | None = None

    def xml(self) -> str:
        parts = [f'<device polledAt="{ts(self.polled_at)}" durationMs="40" snmpVersion="2c">']
        parts.append(f"<identity><deviceKey>{escape(self.key)}</deviceKey><vendor>HP</vendor>")
        parts.append("<model>LaserJet M404</model>")
        if self.serial:
            parts.append(f"<serialNumber>{escape(self.serial)}</serialNumber>")
        parts.append(f"<ipAddress>{self.ip}</ipAddress></identity>")
        parts.append(
            '<status><deviceStatus raw="2">running</deviceStatus>'
            '<printerStatus raw="3">idle</printerStatus></status>'
        )
        for i, (kind, value, extra) in enumerate(self.counters):
            oid = extra.get("oid") or f"1.3.6.1.2.1.43.10.2.1.4.1.{i + 1}"
            source = extra.get("source", "standard")
            attrs = "".join(
                f' {k}="{escape(str(v))}"' for k, v in extra.items() if k not in ("oid", "source")
            )
            parts.append(
                f'<counter kind="{kind}" unit="impressions" oid="{oid}" source="{source}"'
                f"{attrs}>{value}</counter>"
            )
        for s in self.supplies:
            pct = f"<percent>{s['percent']}</percent>" if s.get("percent") is not None else ""
            parts.append(
                f'<supply index="{s["index"]}" source="standard">'
                f'<type raw="21">tonerCartridge</type><colour>{s.get("colour", "black")}</colour>'
                f'<level raw="{s["level"]}" meaning="{s.get("meaning", "exact")}"/>'
                f'<maxCapacity raw="{s.get("max", 100)}" meaning="exact"/>{pct}</supply>'
            )
        for a in self.alerts:
            parts.append(
                f'<alert index="{a["index"]}"><severity raw="4">warning</severity>'
                f'<code raw="{a.get("raw", 1104)}">{a.get("code", "markerTonerAlmostEmpty")}</code>'
                f"<description>{escape(a.get('description', 'low'))}</description></alert>"
            )
        if self.error:
            parts.append(
                f"<collectionError><code>timeout</code><message>{escape(self.error)}</message>"
                "</collectionError>"
            )
        parts.append("</device>")
        return "".join(parts)


def report_xml(
    agent_id: str,
    devices: list[Dev],
    *,
    report_id: str | None = None,
    created_at: datetime | None = None,
    sequence: int = 1,
    queue_depth: int = 0,
    cycle_started_at: datetime | None = None,
) -> bytes:
    created = created_at or datetime.now(UTC)
    body = "".join(d.xml() for d in devices)
    cycle = (
        ""
        if cycle_started_at is None
        else f"<lastCycle><startedAt>{ts(cycle_started_at)}</startedAt><finishedAt>{ts(created)}"
        f"</finishedAt><devicesPolled>{len(devices)}</devicesPolled><devicesFailed>0"
        "</devicesFailed><devicesPartial>0</devicesPartial></lastCycle>"
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Report xmlns="{NS}" version="1.0">'
        f"<reportId>{report_id or str(uuid.uuid4())}</reportId><agentId>{agent_id}</agentId>"
        f"<sequence>{sequence}</sequence><createdAt>{ts(created)}</createdAt>"
        "<agentStatus><software><vendor>MeterSync</vendor><product>reference-agent</product>"
        f"<version>0.1.0</version></software><startedAt>{ts(created)}</startedAt>"
        f"<queueDepth>{queue_depth}</queueDepth><droppedReports>0</droppedReports>{cycle}"
        "<licence><state>valid</state></licence><channelEnabled>false</channelEnabled>"
        f"<updateMode>manual</updateMode></agentStatus>{body}</Report>"
    ).encode()


class TestAgent:
    """An agent identity: id, Ed25519 key, enrollment document and signatures."""

    __test__ = False  # not a test class

    def __init__(self, agent_id: str | None = None, key: Ed25519PrivateKey | None = None):
        self.agent_id = agent_id or str(uuid.uuid4())
        self.key = key or signing.generate_key()

    def enrollment(self, token: str, message_id: str | None = None) -> bytes:
        import base64

        enr = model.Enrollment(
            version="1.0",
            message_id=message_id or str(uuid.uuid4()),
            agent_id=self.agent_id,
            created_at=XmlDateTime.from_datetime(datetime.now(UTC).replace(microsecond=0)),
            token=token,
            software=model.SoftwareInfo(
                vendor="MeterSync", product="reference-agent", version="0.1.0"
            ),
            hostname="agent.example",
            capability=[model.Capability.HTTP],
            public_key=model.PublicKey(
                value=base64.b64decode(signing.public_key_b64(self.key)),
                algorithm=model.SignatureAlgorithm.ED25519,
            ),
        )
        return xml_edge.to_bytes(enr)

    def sign(self, data: bytes) -> str:
        return signing.sign(self.key, data, self.agent_id)

    def headers(self, data: bytes) -> dict[str, str]:
        return {"Content-Type": MEDIA, signing.HEADER: self.sign(data)}

    def report(self, devices: list[Dev], **kw: Any) -> bytes:
        return report_xml(self.agent_id, devices, **kw)


def new_token(
    store: Store,
    expires: timedelta = timedelta(hours=1),
    customer: str = "default",
    site: str | None = None,
) -> str:
    token = ingest.new_token()
    now = ingest.utcnow()
    store.add_token(ingest.hash_token(token), now + expires, now, customer_id=customer, site=site)
    return token


def enrolled(store: Store, customer: str = "default", site: str | None = None) -> TestAgent:
    """A TestAgent enrolled directly in the store, for `customer` and `site`."""
    a = TestAgent()
    enr = ingest.read_enrollment(a.enrollment(new_token(store, customer=customer, site=site)))
    values = {
        "agent_id": a.agent_id,
        "public_key": signing.public_key_b64(a.key),
        "algorithm": "ed25519",
        "software_vendor": "v",
        "software_product": "p",
        "software_version": "1",
    }
    decision = store.enroll(
        ingest.hash_token(enr.token),
        values,
        lambda tok, ag: ingest.decide_enrollment(enr, tok, ag, ingest.utcnow()),
        ingest.utcnow(),
    )
    assert decision is ingest.Decision.REGISTER
    return a


# --- databases ------------------------------------------------------------------------------


def _pg_base() -> str | None:
    try:
        import psycopg
    except ImportError:
        return None
    for user in ("postgres", "root"):
        try:
            with psycopg.connect(
                host="127.0.0.1", port=5432, user=user, dbname="test", connect_timeout=3
            ):
                return f"postgresql+psycopg://{user}@127.0.0.1:5432/test"
        except Exception:
            continue
    return None


_PG: list[str | None] = []
PG_HOWTO = (
    "PostgreSQL on 127.0.0.1:5432 is unreachable (or psycopg is missing: pip install "
    "'.[test,postgres]'); start one with trust auth and a database `test`, e.g. on Debian: "
    "apt-get install -y postgresql && pg_ctlcluster 15 main start && "
    "su postgres -c 'createdb test' (trust for 127.0.0.1 in pg_hba.conf)"
)


def pg_base() -> str | None:
    if not _PG:
        _PG.append(_pg_base())
    return _PG[0]


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test; dropped afterwards."""
    import psycopg

    base = pg_base()
    if base is None:
        if os.environ.get("CI") == "true":  # CI provides PostgreSQL: nothing it provides skips
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is unreachable under CI=true")
        pytest.skip(PG_HOWTO)
    schema = f"ms_test_{uuid.uuid4().hex[:12]}"
    conninfo = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Store]:
    """A migrated store over a fresh SQLite file or a fresh PostgreSQL schema."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = sqlite_url(tmp_path / "data")
        else:
            url = stack.enter_context(pg_schema())
        s = Store(url)
        s.migrate()
        stack.callback(s.close)
        yield s


# --- a real server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """Hypercorn serving the manager on 127.0.0.1 in a thread of this process."""

    def __init__(self, store: Store, **app_kwargs: Any) -> None:
        self.store = store
        self.app = create_app(store, **app_kwargs)
        token = ingest.new_token()  # an operator token for the /api/v1 API (MS-HTTP-18)
        store.add_operator_token(ingest.hash_token(token), "tests", ingest.utcnow())
        self.api_headers = {"Authorization": f"Bearer {token}"}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.errorlog = None

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(self.app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        asyncio.run(main())

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the manager did not start")

    def __exit__(self, *exc: object) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


def parse_xml(data: bytes) -> Any:
    return xml_edge.parse_message(data).obj


def test_builder_makes_valid_reports() -> None:
    """The builder's reports pass the XSD, so the tests below fail for the manager's reasons."""
    dev = Dev(
        "sn:hp:abc",
        counters=[("total", 5, {}), ("mono", 3, {"anomaly": "decreased", "previous": "9"})],
        supplies=[{"index": 1, "level": 50, "percent": "50"}],
        alerts=[{"index": 1}],
        error="boom",
    )
    msg = xml_edge.parse_message(report_xml(str(uuid.uuid4()), [dev]))
    assert msg.kind == "Report"
    assert msg.obj.device[0].counter[1].previous == 9
